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
from pathlib import Path

import numpy as np

from galaxysim.utils._io import atomic_write

MANIFEST = "models.json"
_MANIFEST_FORMAT = 1
_CLASS_NAMES = {"cnn": "CNNScorer", "ae": "AEEncoder", "vae": "VAEEncoder"}
_FINGERPRINT_IMAGES = 256
"""Images hashed by :func:`catalogue_fingerprint`, spread evenly over the catalogue."""

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"
_STAGING = re.compile(r"^\.run-[\w-]+\.(?P<host>[A-Za-z0-9-]*)\.(?P<pid>\d+)\.part$")


def catalogue_fingerprint(X, y):
    """A cheap identity of a catalogue: its shape, dtype and a hash of its labels and of
    up to 256 images spread over it.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, n_channels)
        Images.
    y : ndarray of shape (n_samples,) or None
        Labels.

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
    """
    n = len(X)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((X.shape, X.dtype.str)).encode())
    rows = np.unique(np.linspace(0, n - 1, min(n, _FINGERPRINT_IMAGES)).round().astype(int))
    h.update(np.ascontiguousarray(X[rows]).tobytes())
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
    print(f"galaxysim: warning: {text}", file=sys.stderr)


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
            model = load_model(path, kind=kinds[method])
            self._loaded[method] = (model, provenance)

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
        saved = []

        def add(method, model):
            save_model(model, staging / self.file(method).name, provenance=provenance)
            saved.append(method)

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
            print(f"{method}: saved {self.file(method)}", file=sys.stderr)
