"""The deep models of ``--model-dir``, written one training run at a time.

A model folder holds ``cnn.safetensors``, ``ae.safetensors`` and ``vae.safetensors``
(:func:`galaxysim.nn.save_model` files) and ``models.json``, its manifest: for each
file, the training run that wrote it. Each file's provenance records its run and the
fingerprint of the catalogue it was trained on (:func:`catalogue_fingerprint`).

Writing (``train``; ``search`` and ``generate`` when they train a missing model): the
run's models are saved into a fresh folder ``.run-<id>.<host>.<pid>.part`` inside the
model folder, and only when all are trained moved into place, then ``models.json`` is
rewritten to list the run. An interrupted run (Ctrl-C, an error) leaves the previous
models as they were and removes its folder; a killed one leaves its folder, which the
next run removes.

Reading: a file whose run ``models.json`` does not list was moved in by a run killed
while it moved its files, beside models of an earlier run: it is refused, and the
message says to train again (without a ``models.json``, as after the first run was
killed so, there are no earlier models to mix with). A model trained on images of another size is refused; one
trained on another catalogue is used with a warning. Files without a run (saved with
``save_model`` and copied in) are used as they are.

Embeddings: ``search`` embeds the catalogue with each deep model once and caches the
result in ``cache/<method>-<key>.npy`` (:meth:`ModelFolder.embeddings`), keyed by the
model file's SHA-256, the model's parameters, the galaxysim version and a hash of
every catalogue image; the next search with the same model and catalogue reads it
instead of encoding the catalogue again. The newest three files per method are kept.
"""

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from galaxysim.utils._io import atomic_write

MANIFEST = "models.json"
_MANIFEST_FORMAT = 1
_CLASS_NAMES = {"cnn": "CNNScorer", "ae": "AEEncoder", "vae": "VAEEncoder"}
_FINGERPRINT_IMAGES = 256
"""Images hashed by :func:`catalogue_fingerprint`, spread evenly over the catalogue."""

CACHE = "cache"
"""Folder of the catalogue embeddings inside a model folder."""
_CACHE_FORMAT = 1
_CACHE_KEEP = 3
"""Embedding files kept per method (the newest used; older ones are removed)."""
_EMBED_BATCH = 512

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"
_STAGING = re.compile(r"^\.run-[\w-]+\.(?P<host>[A-Za-z0-9-]*)\.(?P<pid>\d+)\.part$")


def catalogue_fingerprint(X, y, *, n_images=_FINGERPRINT_IMAGES):
    """A cheap identity of a catalogue: its shape, dtype and a hash of its labels and of
    up to 256 images spread over it (or of every image).

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, n_channels)
        Images.
    y : ndarray of shape (n_samples,) or None
        Labels.
    n_images : int or None, default=256
        Images hashed, spread evenly over the catalogue; ``None``: every image (what
        the embeddings cache is keyed by: one changed image changes the key).

    Returns
    -------
    fingerprint : dict
        ``images`` (count), ``shape`` (of an image), ``dtype``, ``labels`` (whether
        there are labels) and ``hash`` (hex).

    Examples
    --------
    >>> X = np.zeros((10, 8, 8, 3), np.uint8)
    >>> a, b = catalogue_fingerprint(X, np.arange(10)), catalogue_fingerprint(X, None)
    >>> a["shape"], a["hash"] == b["hash"]
    ([8, 8, 3], False)
    >>> catalogue_fingerprint(X, None, n_images=None) == b  # 10 images: all of them either way
    True
    """
    n = len(X)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((X.shape, X.dtype.str)).encode())
    if n_images is None or n_images >= n:
        for s in range(0, n, 1024):  # every image, a block at a time (no copy of X)
            h.update(np.ascontiguousarray(X[s : s + 1024]).data)
    else:
        rows = np.unique(np.linspace(0, n - 1, n_images).round().astype(int))
        h.update(np.ascontiguousarray(X[rows]).data)
    if y is not None:
        y = np.asarray(y)
        if y.dtype.kind in "biuf":
            h.update(y.dtype.str.encode() + np.ascontiguousarray(y).tobytes())
        else:
            h.update("\x1f".join(map(str, y.tolist())).encode())
    return {
        "images": n,
        "shape": [int(s) for s in X.shape[1:]],
        "dtype": str(X.dtype),
        "labels": y is not None,
        "hash": h.hexdigest(),
    }


def _describe(fp):
    shape = "x".join(map(str, fp.get("shape", [])))
    return f"{fp.get('images')} {fp.get('dtype')} images of {shape}"


def _a(name):
    return f"{'an' if str(name)[:1] in 'AEIOU' else 'a'} {name}"


def _warn(text):
    # shown by the command as one line, "galaxysim <command>: warning: ..."
    warnings.warn(text, UserWarning, stacklevel=3)


def file_hash(path):
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def embed(step, X, *, desc, verbose, batch=_EMBED_BATCH):
    """``step.transform(X)`` a block of images at a time, behind a progress bar."""
    from galaxysim.utils._progress import progress

    out = None
    with progress(total=len(X), desc=desc, verbose=verbose, unit="img") as bar:
        for s in range(0, len(X), batch):
            block = np.asarray(step.transform(X[s : s + batch]))
            if out is None:
                out = np.empty((len(X), *block.shape[1:]), dtype=block.dtype)
            out[s : s + len(block)] = block
            bar.update(len(block))
    return out


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


class ModelFolder:
    """The ``--model-dir`` of one command: checks, loading and writing of training runs.

    Parameters
    ----------
    path : path-like
        The model folder.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._loaded = {}
        self._hashes = {}  # method -> SHA-256 of the file its model was loaded from or saved as

    def file(self, method):
        return self.path / f"{method}.safetensors"

    def has(self, method):
        return os.path.lexists(self.file(method))

    def _fix(self, method=None):
        which = f" --method {method}" if method else ""
        return f"train again: `galaxysim train{which} --model-dir {self.path}` (with your catalogue options)"

    # -------------------------------------------------------------- manifest
    def _manifest(self, *, strict=True):
        """``{method: run}`` of models.json, or None when there is none.

        A corrupt one raises, or with ``strict=False`` (a run about to rewrite it) is
        reported and read as empty: the runs of the files it listed are unknown.
        """
        path = self.path / MANIFEST
        if not os.path.lexists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            runs = {m: entry["run"] for m, entry in doc["models"].items()}
            if doc.get("format") != _MANIFEST_FORMAT or not all(
                isinstance(r, str) for r in runs.values()
            ):
                raise ValueError("unknown layout")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            if not strict:
                _warn(f"{path} is unreadable or corrupt ({exc}); it is rewritten.")
                return {}
            raise ValueError(
                f"{path} is unreadable or corrupt ({exc}); {self._fix()}, which rewrites it."
            ) from None
        return runs

    def _write_manifest(self, runs):
        doc = {
            "format": _MANIFEST_FORMAT,
            "about": "the galaxysim training run of each model file here",
            "models": {m: {"file": self.file(m).name, "run": r} for m, r in sorted(runs.items())},
        }
        with atomic_write(self.path / MANIFEST, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")

    # -------------------------------------------------------------- loading
    def preload(self, methods):
        """Load (and check) the saved models of ``methods`` now, before any training.

        Raises ``ValueError`` for a file that is not a model, holds another kind of
        model, or was moved in by an interrupted run.
        """
        from galaxysim.nn import AEEncoder, CNNScorer, VAEEncoder, load_model
        from galaxysim.nn._persistence import read_model_header

        kinds = {"cnn": CNNScorer, "ae": AEEncoder, "vae": VAEEncoder}
        manifest = self._manifest()
        for method in methods:
            path = self.file(method)
            if method in self._loaded or not self.has(method):
                continue
            header = read_model_header(path)
            found = header.get("estimator")
            if found != _CLASS_NAMES[method]:
                other = [m for m, name in _CLASS_NAMES.items() if name == found]
                rename = f"rename it to {other[0]}.safetensors" if other else "move it away"
                raise ValueError(
                    f"{path} holds {_a(found)} model, not the {_CLASS_NAMES[method]} of the "
                    f"{method} method: another model's file under this name. {rename.capitalize()}, "
                    f"or {self._fix(method)}."
                )
            provenance = header.get("provenance")
            provenance = provenance if isinstance(provenance, dict) else {}
            run = provenance.get("run")
            if run is not None and manifest is not None and manifest.get(method) != run:
                raise ValueError(
                    f"{path} is from training run {run}, which {self.path / MANIFEST} does not "
                    "list for it: a `galaxysim train` was stopped while it moved its models "
                    f"into place, and this folder now mixes models of two runs; {self._fix()}."
                )
            before = file_hash(path)
            model = load_model(path, kind=kinds[method])
            self._loaded[method] = (model, provenance)
            # a file replaced while it was read keys no cached embeddings
            self._hashes[method] = before if file_hash(path) == before else None

    def load(self, method, X, y):
        """The saved model of ``method``, checked against the catalogue ``X, y``."""
        self.preload([method])
        model, provenance = self._loaded[method]
        path = self.file(method)
        if tuple(model.image_shape_) != tuple(X.shape[1:]):
            shape = "x".join(map(str, model.image_shape_))
            raise ValueError(
                f"{path} was trained on {shape} images, but the catalogue's are "
                f"{'x'.join(map(str, X.shape[1:]))}; use --image-size {model.image_shape_[0]}, "
                f"or {self._fix(method)}."
            )
        trained_on = provenance.get("catalogue")
        if isinstance(trained_on, dict):
            here = catalogue_fingerprint(X, y)
            if trained_on.get("hash") != here["hash"]:
                _warn(
                    f"{path} was trained on another catalogue ({_describe(trained_on)}) than "
                    f"this one ({_describe(here)}); its search may rank poorly. To use a "
                    f"model of this catalogue, {self._fix(method)}."
                )
        print(f"{method}: loaded {path}", file=sys.stderr)
        return model

    # -------------------------------------------------------------- writing
    def check_writable(self, methods):
        """Before training: the files to replace are files (or absent)."""
        for method in methods:
            path = self.file(method)
            if os.path.lexists(path) and not path.is_file():
                raise ValueError(
                    f"{path} is not a file; the {method} model is saved there. Move it away."
                )

    def _remove_stale_runs(self):
        """Remove the folders of runs killed on this host (their process is gone)."""
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.path):
                m = _STAGING.match(entry.name)
                if m and m["host"] == _HOST and not _pid_alive(int(m["pid"])):
                    shutil.rmtree(entry.path, ignore_errors=True)

    @contextlib.contextmanager
    def run(self, X, y):
        """A training run: ``add`` its models; they are moved into place together at
        the end of the ``with`` block, or not at all if it raises.

        Yields
        ------
        add : callable
            ``add(method, model)`` saves ``model`` into the run's folder.
        """
        from galaxysim.nn import save_model

        run_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"
        provenance = {"run": run_id, "catalogue": catalogue_fingerprint(X, y)}
        self.path.mkdir(parents=True, exist_ok=True)
        self._remove_stale_runs()
        staging = self.path / f".run-{run_id}.{_HOST}.{os.getpid()}.part"
        staging.mkdir()
        saved, hashes = [], {}

        def add(method, model):
            save_model(model, staging / self.file(method).name, provenance=provenance)
            saved.append(method)
            hashes[method] = file_hash(staging / self.file(method).name)

        try:
            yield add
            runs = self._manifest(strict=False) or {}
            for method in saved:  # files first; models.json, listing them, last
                os.replace(staging / self.file(method).name, self.file(method))
                runs[method] = run_id
            self._write_manifest(runs)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for method in saved:
            self._loaded.pop(method, None)
            self._hashes[method] = hashes[method]
            print(f"{method}: saved {self.file(method)}", file=sys.stderr)

    # -------------------------------------------------------------- embeddings
    def _cache_file(self, method, step, X):
        """``cache/<method>-<key>.npy``, keyed by the model file's bytes, the model's
        parameters as the recipe set them, and every image of the catalogue; None
        when the model's file is not known (nothing is cached)."""
        model_hash = self._hashes.get(method)
        if model_hash is None:
            return None
        from galaxysim import __version__

        model = getattr(step, "estimator", step)
        params = sorted((k, v) for k, v in model.get_params().items() if k != "verbose")
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((_CACHE_FORMAT, __version__, method, model_hash, params)).encode())
        h.update(catalogue_fingerprint(X, None, n_images=None)["hash"].encode())
        return self.path / CACHE / f"{method}-{h.hexdigest()}.npy"

    def embeddings(self, method, step, X, *, verbose=True):
        """The catalogue ``X`` embedded by the frozen model step ``step`` of ``method``.

        Read from ``<model-dir>/cache/`` when a search with the same model file and
        catalogue computed them; else computed (behind a progress bar) and written
        there atomically, keeping the newest few files per method. A cache that
        cannot be read is computed again, one that cannot be written is skipped,
        each with a warning.
        """
        path = self._cache_file(method, step, X)
        if path is not None and path.is_file():
            cached = self._read_embeddings(path, len(X))
            if cached is not None:
                with contextlib.suppress(OSError):
                    os.utime(path)  # the newest, kept longest
                print(f"{method}: catalogue embeddings read from {path}", file=sys.stderr)
                return cached
        emb = embed(step, X, desc=f"{method}: embedding the catalogue", verbose=verbose)
        if path is not None:
            try:
                with atomic_write(path) as f:
                    np.save(f, emb, allow_pickle=False)
                self._prune_cache(method)
            except OSError as exc:
                _warn(f"could not cache the {method} embeddings in {path.parent} ({exc}).")
        return emb

    @staticmethod
    def _read_embeddings(path, n):
        try:
            with open(path, "rb") as f:
                emb = np.load(f, allow_pickle=False)
            if emb.ndim != 2 or len(emb) != n or emb.dtype.kind != "f":
                raise ValueError(f"an array of shape {emb.shape} {emb.dtype}")
            if not np.isfinite(emb).all():
                raise ValueError("NaN or infinite values")
        except (OSError, ValueError, EOFError) as exc:
            _warn(f"the cached embeddings {path} are unreadable ({exc}); computing them again.")
            return None
        return emb

    def _prune_cache(self, method):
        """Keep the newest ``_CACHE_KEEP`` embedding files of ``method``."""
        files = []
        for p in (self.path / CACHE).glob(f"{method}-*.npy"):
            with contextlib.suppress(OSError):
                files.append((p.stat().st_mtime_ns, p))
        for _, p in sorted(files, reverse=True)[_CACHE_KEEP:]:
            with contextlib.suppress(OSError):
                p.unlink()
