"""The index folder's format: names, the manifest, file checks and catalogue fingerprints."""

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
from pathlib import Path

import numpy as np

import galaxysim

FORMAT = "galaxysim-search-index"
FORMAT_VERSION = 1
"""Version of the folder's layout; an index of a newer version is refused."""

MARKER = ".galaxysim-index"
"""The staged folder's marker (the files of the index), written last by the swap."""

MANIFEST = "manifest.json"
IDENTIFIERS = "identifiers.parquet"
ROWS_DIR, MODELS_DIR, FAISS_DIR = "rows", "models", "faiss"

_SAMPLE_ROWS = 16  # images hashed for the catalogue's fingerprint
_HASH_CHUNK = 1 << 22


def versions():
    """Versions of what the index's content depends on (``None``: not installed)."""

    def dist(*names):
        for name in names:
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None

    return {
        "galaxysim": galaxysim.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": dist("scikit-learn"),
        "torch": dist("torch"),
        "faiss": dist("faiss-cpu", "faiss-gpu", "faiss"),
        "dask": dist("dask"),
        "pyarrow": dist("pyarrow"),
    }


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def describe_files(folder):
    """``{relative path: {"bytes", "sha256"}}`` of every file under ``folder``."""
    files = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            files[rel] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    return files


def damaged(path, problem):
    """The error of an index whose folder does not hold what its manifest says."""
    return ValueError(
        f"The search index {path} is damaged: {problem}. Rebuild it (galaxysim.index."
        "build_index, or `galaxysim index`)."
    )


def check_files(folder, files, *, verify):
    """Every file of the manifest present with its size (and, with ``verify``, its hash)."""
    for rel, want in files.items():
        path = Path(folder) / rel
        if not path.is_file():
            raise damaged(folder, f"its file {rel} is missing")
        size = path.stat().st_size
        if size != want["bytes"]:
            raise damaged(
                folder, f"its file {rel} has {size} bytes, the manifest says {want['bytes']}"
            )
        if verify and file_sha256(path) != want["sha256"]:
            raise damaged(folder, f"the content of its file {rel} changed since it was written")


def read_manifest(folder):
    """The manifest of the index at ``folder``, checked for its format and version."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Search index not found: {folder} is not a folder.")
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a galaxysim search index (it has no {MANIFEST}). Build one with "
            "galaxysim.index.build_index or `galaxysim index`."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise TypeError("not a JSON object")
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        raise damaged(folder, f"its {MANIFEST} is unreadable ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not the manifest of a galaxysim search index (format "
            f"{manifest.get('format')!r}, expected {FORMAT!r})."
        )
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise damaged(folder, f"its {MANIFEST} has no valid format_version ({version!r})")
    if version > FORMAT_VERSION:
        made_by = manifest.get("versions", {}).get("galaxysim", "?")
        raise ValueError(
            f"The search index {folder} has format version {version}, written by galaxysim "
            f"{made_by}; this galaxysim ({galaxysim.__version__}) reads versions up to "
            f"{FORMAT_VERSION}. Upgrade galaxysim, or rebuild the index with this version."
        )
    for key in ("catalogue", "framing", "labels", "methods", "n_samples", "image_shape", "files"):
        if key not in manifest:
            raise damaged(folder, f"its {MANIFEST} has no {key!r} entry")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise damaged(folder, f"its {MANIFEST} lists no files")
    for rel, want in files.items():
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or not isinstance(want, dict):
            raise damaged(folder, f"its {MANIFEST} lists a file outside the index: {rel!r}")
    for method, entry in manifest["methods"].items():
        if not isinstance(entry, dict) or entry.get("rows") not in files:
            raise damaged(folder, f"its {MANIFEST} names no rows of the {method!r} method")
        for k in ("model", "approximate"):
            rel = (entry.get(k) or {}).get("file")
            if rel is not None and rel not in files:
                raise damaged(folder, f"the {method!r} method's {k} {rel!r} is not listed")
    return manifest


# ---------------------------------------------------------------- the catalogue
def source_size(source, kind, catalogue):
    """Bytes of the catalogue's data: the file, the store's files, or the image files."""
    if kind == "hdf5":
        return os.stat(source).st_size
    if kind == "zarr":
        return sum(p.stat().st_size for p in Path(source).rglob("*") if p.is_file())
    return sum(os.stat(p).st_size for p in catalogue.take.files)


def _identifiers_digest(catalogue):
    h = hashlib.sha256()
    for name in catalogue.identifiers:
        values = np.asarray(catalogue[name])
        h.update(name.encode() + b"\0")
        if values.dtype.kind in "US":
            h.update("\0".join(map(str, values.tolist())).encode())
        else:
            h.update(np.ascontiguousarray(values).tobytes())
    if catalogue.target is not None:
        h.update(b"target\0" + np.ascontiguousarray(catalogue.target, np.int64).tobytes())
        h.update("\0".join(map(str, catalogue.target_names)).encode())
    return h.hexdigest()


def fingerprint(catalogue):
    """What identifies the catalogue's content: path, size, shape, identifiers and a hash
    of the framed pixels of a sample of images spread over it."""
    images = catalogue.images
    n = int(images.shape[0])
    rows = np.unique(np.linspace(0, n - 1, min(n, _SAMPLE_ROWS)).round().astype(np.int64))
    sample = np.ascontiguousarray(catalogue.take(rows))
    return {
        "path": catalogue.source,
        "kind": catalogue.kind,
        "size": int(source_size(catalogue.source, catalogue.kind, catalogue)),
        "shape": [int(s) for s in images.shape],
        "sample_rows": rows.tolist(),
        "sample_sha256": hashlib.sha256(sample.tobytes()).hexdigest(),
        "identifiers_sha256": _identifiers_digest(catalogue),
    }


def fingerprint_mismatch(saved, current):
    """The first difference between two fingerprints, in words (``None``: the same)."""
    words = {
        "path": "its path",
        "kind": "its kind",
        "shape": "its number or shape of images",
        "size": "its size in bytes",
        "identifiers_sha256": "its labels or identifier columns",
        "sample_sha256": "the pixels of its images",
    }
    for key, what in words.items():
        if saved.get(key) != current.get(key):
            if key.endswith("sha256"):
                return f"{what} differ"
            return f"{what}: {saved.get(key)!r} when indexed, {current.get(key)!r} now"
    return None
