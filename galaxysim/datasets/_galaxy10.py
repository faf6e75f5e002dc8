"""Galaxy10 DECaLS / SDSS HDF5 loader: chunked reading, framing and an on-disk cache."""

import contextlib
import dataclasses
import hashlib
import math
import numbers
import os
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
from sklearn.utils import Bunch

from galaxysim import GALAXY10_CLASSES
from galaxysim.utils._image import frame_images
from galaxysim.utils._io import atomic_write, check_regular_file
from galaxysim.utils._memory import check_memory
from galaxysim.utils._progress import progress

__all__ = ["load_galaxy10"]

# Bump when the cached content, its layout or its key changes: older caches are rebuilt.
_CACHE_VERSION = 2
_COLUMNS = ("ra", "dec", "redshift", "pxscale")
_MAX_LINKS = 16  # HDF5's own limit on links followed for one name
# the content key hashes this many blocks of this size, spread over every file read
_SAMPLES, _SAMPLE_BYTES = 64, 64 * 1024
_EXAMPLES = 5  # bad rows quoted in a message
_INT = re.compile(r"\s*[+-]?[0-9]+\s*")

_DESCR = """Galaxy10 {survey} (Leung & Bovy; astroNN), read from {filename}.

{n} galaxy images {classes}, framed as {framing}; images {shape} uint8.
Columns: {target}ra, dec (degrees), redshift and pxscale (arcsec/pixel){missing}.
"""


class _MissingDatasetError(KeyError, ValueError):
    """A file without ``images``/``ans``: catchable as KeyError or ValueError."""

    def __str__(self):  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


def default_cache_dir():
    """Directory of the galaxysim cache.

    ``$GALAXYSIM_CACHE`` when set, else ``$XDG_CACHE_HOME/galaxysim``, else
    ``~/.cache/galaxysim``.

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> import os
    >>> os.environ["GALAXYSIM_CACHE"] = "/tmp/my-cache"
    >>> str(default_cache_dir())
    '/tmp/my-cache'
    >>> del os.environ["GALAXYSIM_CACHE"]
    """
    env = os.environ.get("GALAXYSIM_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "galaxysim"


def _check_size(value, name):
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    raise ValueError(f"{name} must be a positive int or None; got {value!r}.")


def _rows(idx, noun="row"):
    """``rows 3, 7, 9, 10, 11 and 12 more`` for a message."""
    idx = [int(i) for i in idx]
    head = ", ".join(map(str, idx[:_EXAMPLES]))
    more = f" and {len(idx) - _EXAMPLES} more" if len(idx) > _EXAMPLES else ""
    return f"{noun}{'s' if len(idx) > 1 else ''} {head}{more}"


# ------------------------------------------------------------------ files and links
class _Files:
    """The HDF5 files a Galaxy10 file reaches (itself, external links, virtual
    sources), each checked to be a regular file and opened once."""

    def __init__(self, stack):
        self._stack = stack
        self._open = {}
        self.paths = []  # every file whose bytes are read, in the order found

    def open(self, path, what):
        real = os.path.realpath(path)
        if real not in self._open:
            check_regular_file(path, what)
            try:
                h = h5py.File(path, "r", rdcc_nbytes=64 * 1024**2)
            except OSError as exc:
                raise OSError(
                    f"Cannot read {path} as an HDF5 file: it is truncated or corrupt ({exc}). "
                    "If it is a Galaxy10 download, delete it and download it again "
                    "(the DECaLS file is about 2.5 GB)."
                ) from exc
            self._open[real] = self._stack.enter_context(h)
            self.add(real)
        return self._open[real]

    def add(self, path):
        real = os.path.realpath(path)
        if real not in self.paths:
            self.paths.append(real)


def _split(name):
    return [p for p in name.split("/") if p and p != "."]


def _linked_file(name, linking_file, env):
    """The file HDF5 opens for an external link or a virtual dataset's source ``name``
    written in ``linking_file`` (its search order: the absolute name, the folders of
    ``$env``, the linking file's folder, the working directory), or None."""
    name = os.fsdecode(name)
    origin = os.path.dirname(linking_file)
    candidates = []
    if os.path.isabs(name):
        candidates.append(name)
        name = os.path.basename(name)
    for prefix in filter(None, os.environ.get(env, "").split(os.pathsep)):
        candidates.append(os.path.join(prefix.replace("${ORIGIN}", origin), name))
    candidates += [os.path.join(origin, name), os.path.abspath(name)]
    return next((c for c in candidates if os.path.lexists(c)), None), candidates


def _external_file(name, dataset_file):
    """The raw data file HDF5 reads for external storage ``name``: under the folders of
    ``$HDF5_EXTFILE_PREFIX`` when set, else the working directory (HDF5's default)."""
    name = os.fsdecode(name)
    prefixes = [p for p in os.environ.get("HDF5_EXTFILE_PREFIX", "").split(os.pathsep) if p]
    origin = os.path.dirname(dataset_file)
    candidates = [os.path.join(p.replace("${ORIGIN}", origin), name) for p in prefixes]
    candidates = candidates or [os.path.abspath(name)]
    return next((c for c in candidates if os.path.lexists(c)), None), candidates


def _get(files, path, name):
    """The object ``name`` of the HDF5 file ``path``, or None when there is no such name.

    Soft and external links are followed one at a time, so that a link loop, a
    dangling link or a link to something that is not a regular file (a FIFO would
    block HDF5 forever) is a clear error.
    """
    file_path, parts = path, _split(name)
    chain, seen = [f"'{name}'"], set()

    def fail(problem):
        raise ValueError(
            f"{path}: '{name}' {problem} (links followed: {' -> '.join(chain)}). "
            "Repair the file so that it names its datasets directly, e.g. with "
            "`h5repack` or h5py's copy, or download it again."
        )

    while True:
        key = (os.path.realpath(file_path), tuple(parts))
        if key in seen:
            fail("is a loop of HDF5 links that never reaches a dataset")
        if len(seen) > _MAX_LINKS:
            fail(f"is a chain of more than {_MAX_LINKS} HDF5 links")
        seen.add(key)
        h = files.open(file_path, f"The HDF5 file linked from {path} as '{name}',")
        group, done = h["/"], []
        for i, part in enumerate(parts):
            try:
                link = group.get(part, getlink=True)
            except (KeyError, RuntimeError, OSError, TypeError) as exc:
                fail(f"is a link that cannot be read ({exc})")
            if link is None:
                if len(chain) == 1:
                    return None  # simply absent
                fail(f"is a link to /{'/'.join([*done, part])}, which does not exist")
            rest = parts[i + 1 :]
            if isinstance(link, h5py.SoftLink):
                chain.append(link.path)
                parts = (done if not link.path.startswith("/") else []) + _split(link.path)
                parts += rest
                break
            if isinstance(link, h5py.ExternalLink):
                chain.append(f"{link.filename}:{link.path}")
                target, candidates = _linked_file(link.filename, file_path, "HDF5_EXT_PREFIX")
                if target is None:
                    fail(
                        f"is an external link to {link.filename}, which is missing "
                        f"(looked for {', '.join(candidates)})"
                    )
                file_path, parts = target, _split(link.path) + rest
                break
            if not isinstance(link, h5py.HardLink):
                fail(f"is a {type(link).__name__} link, which galaxysim does not follow")
            obj = group[part]  # a hard link: no traversal
            if rest and not isinstance(obj, h5py.Group):
                fail(f"goes through /{'/'.join([*done, part])}, which is not a group")
            group = obj
            done.append(part)
        else:
            return group


# ---------------------------------------------------------- datasets and their data
def _storage_problem(d):
    """Why reading ``d`` would give fill values (zeros) instead of data, or None."""
    n = math.prod(d.shape)
    if n == 0 or d.is_virtual or d.external:
        return None
    if d.chunks is not None:
        expected = math.prod(math.ceil(s / c) for s, c in zip(d.shape, d.chunks, strict=True))
        got = d.id.get_num_chunks()
        if got < expected:
            return f"only {got} of its {expected} HDF5 chunks were ever written"
    elif d.id.get_storage_size() == 0 and d.id.get_offset() is None:
        return "its data were never written"
    return None


def _check_sources(files, d, d_file, path, name, depth=0):
    """Raise when reading ``d`` would silently give zeros for data that is not there:
    a virtual dataset whose source file or dataset is missing or too small, raw
    external storage shorter than declared, chunks never written."""
    problem = _storage_problem(d)
    if problem:
        raise ValueError(
            f"{path}: '{name}' {problem}; HDF5 would return zeros for the rest. "
            "The file is incomplete (an interrupted download or write): "
            "download or write it again."
        )
    for ext_name, offset, size in d.external or ():
        ext, candidates = _external_file(ext_name, d_file)
        if ext is None:
            raise FileNotFoundError(
                f"{path}: '{name}' stores its data in the external file {ext_name}, "
                f"which is missing (looked for {', '.join(candidates)})."
            )
        check_regular_file(ext, f"The external data file of '{name}' in {path},")
        have = os.stat(ext).st_size
        if size != h5py.h5f.UNLIMITED and have < offset + size:
            raise ValueError(
                f"{path}: '{name}' stores its data in the external file {ext}, which holds "
                f"{have} bytes but should hold {offset + size}; HDF5 would return zeros "
                "for the rest. Restore the complete external file."
            )
        files.add(ext)
    if not d.is_virtual:
        return
    if depth > _MAX_LINKS:
        raise ValueError(f"{path}: '{name}' is a virtual dataset nested too deep (a loop?).")
    for src in d.virtual_sources():
        if src.vspace.get_select_type() == h5py.h5s.SEL_ALL:
            rows = "all rows"
        else:
            lo, hi = src.vspace.get_select_bounds()
            rows = f"rows {lo[0]}-{hi[0]}"
        if src.file_name == ".":
            s_file = d_file
        elif "%" in src.file_name:
            continue  # printf-style names of unlimited mappings: HDF5 resolves them
        else:
            s_file, candidates = _linked_file(src.file_name, d_file, "HDF5_VDS_PREFIX")
            if s_file is None:
                raise FileNotFoundError(
                    f"{path}: '{name}' is a virtual dataset whose source file "
                    f"{src.file_name} is missing (looked for {', '.join(candidates)}); "
                    f"HDF5 would return zeros for {rows}. Put the source file back "
                    "(or set HDF5_VDS_PREFIX to its folder)."
                )
        s = _get(files, s_file, src.dset_name)
        where = f"{src.dset_name} in {s_file}"
        if not isinstance(s, h5py.Dataset):
            raise ValueError(
                f"{path}: '{name}' is a virtual dataset whose source {where} "
                f"{'does not exist' if s is None else 'is not a dataset'}; HDF5 would "
                f"return zeros for {rows}. Repair the virtual dataset's sources."
            )
        if src.src_space.get_select_type() == h5py.h5s.SEL_ALL:
            short = s.size < src.vspace.get_select_npoints()
        else:
            _, s_hi = src.src_space.get_select_bounds()
            short = len(s_hi) != s.ndim or any(e >= n for e, n in zip(s_hi, s.shape, strict=True))
        if short:
            raise ValueError(
                f"{path}: '{name}' is a virtual dataset whose source {where} has shape "
                f"{s.shape}, too small for what it maps; HDF5 would return zeros for "
                f"{rows}. Repair the virtual dataset's sources."
            )
        _check_sources(files, s, s.file.filename, path, name, depth + 1)


def _dataset(files, path, name, *, required):
    obj = _get(files, path, name)
    if obj is None:
        return None
    if not isinstance(obj, h5py.Dataset):
        kind = "a group" if isinstance(obj, h5py.Group) else f"a {type(obj).__name__}"
        raise ValueError(
            f"{path}: '{name}' is {kind}, not a dataset. A Galaxy10 file holds "
            f"{'images (n, height, width, 3) and ans (n,)' if required else 'one value per image'}"
            " as HDF5 datasets."
        )
    _check_sources(files, obj, obj.file.filename, path, name)
    return obj


def _read_all(d, path, name):
    try:
        return d[()]
    except OSError as exc:
        raise OSError(f"Cannot read '{name}' of {path}: {_read_problem(d, exc)}") from exc


def _read_problem(d, exc):
    pl = d.id.get_create_plist()
    for i in range(pl.get_nfilters()):
        code, _, _, filter_name = pl.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            return (
                f"it is compressed with the HDF5 filter {filter_name.decode(errors='replace')!r} "
                f"(id {code}), which this h5py cannot decode ({exc}). Install and import "
                "hdf5plugin (`pip install hdf5plugin`), or repack the file with gzip."
            )
    return f"the file is truncated or corrupt ({exc}). Delete it and download it again."


def _missing_error(path, missing, keys, labels="ans"):
    """The error for a file or store without ``images`` or its labels (keys listed)."""
    what = " or ".join(repr(k) for k in missing)
    if labels == "ans":
        hint = (
            "A Galaxy10 file (DECaLS or SDSS) holds 'images' (n, height, width, 3) and 'ans' (n,)."
        )
    else:
        hint = (
            f"A catalogue holds 'images' (n, height, width, 3) and, for labels, {labels!r} "
            "(n,) class codes; pass label_column= the name of the array holding them."
        )
    return _MissingDatasetError(
        f"{path} has no {what} {'dataset' if len(missing) == 1 else 'datasets'}; keys found: "
        f"{sorted(keys)}. {hint}"
    )


def _check_image_array(shape, dtype, path):
    """``images`` must be ``(n, height, width, 3)`` numbers (HDF5 dataset or Zarr array)."""
    if len(shape) != 4 or shape[-1] != 3 or 0 in shape:
        raise ValueError(
            f"{path}: 'images' has shape {tuple(shape)}; expected (n_samples, height, width, 3) "
            "RGB images as in Galaxy10 DECaLS (17736, 256, 256, 3) or SDSS (21785, 69, 69, 3)."
        )
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise ValueError(
            f"{path}: 'images' has dtype {dtype}; expected uint8 (Galaxy10), or "
            "integers 0-255, or floats in [0, 1] or 0-255."
        )


def _check_label_shape(shape, n, path, name="ans"):
    if tuple(shape) != (n,):
        raise ValueError(
            f"{path}: {name!r} has shape {tuple(shape)} but 'images' holds {n} images; "
            "expected one label per image."
        )


def _check_column(shape, dtype, path, name, n):
    """A column (``ra``, ``dec``, ...) must hold one number per image."""
    if tuple(shape) != (n,):
        raise ValueError(
            f"{path}: the column '{name}' has shape {tuple(shape)} but 'images' holds {n} "
            f"images; expected one value per image, shape ({n},). Repair or remove '{name}'."
        )
    if dtype.kind not in "iuf":
        raise ValueError(f"{path}: the column '{name}' has dtype {dtype}; expected numbers.")


def _crop_window(shape, crop, path):
    """(top, left, height, width) of the central ``crop`` pixels of images of ``shape``."""
    h, w = shape[1:3]
    if crop is None:
        return (0, 0, h, w)
    if crop > h or crop > w:
        raise ValueError(
            f"crop={crop} is larger than the {h}x{w} images of {path}. "
            f"Choose crop <= {min(h, w)}, or crop=None to keep the whole frame."
        )
    return ((h - crop) // 2, (w - crop) // 2, crop, crop)


def _datasets(files, path, labels="ans", labels_required=True):
    """The checked ``images`` and labels datasets of an HDF5 file (labels None when
    absent and not required): every link, virtual source and external file leads to
    data that exists, and shapes and dtypes are those of a catalogue."""
    f = files.open(path, "The HDF5 file")
    images = _dataset(files, path, "images", required=True)
    ans = _dataset(files, path, labels, required=True)
    missing = [
        k for k, d, req in (("images", images, True), (labels, ans, labels_required))
        if d is None and req
    ]  # fmt: skip
    if missing:
        raise _missing_error(path, missing, f.keys(), labels)
    _check_image_array(images.shape, images.dtype, path)
    if ans is not None:
        _check_label_shape(ans.shape, images.shape[0], path, labels)
    return f, images, ans


def _declared_names(raw, where, path, attr="class_names"):
    """Class names from an attribute (HDF5 ``class_names``, Zarr ``target_names``),
    checked: a non-empty list of non-empty strings, the name of class k at position k."""
    raw = np.asarray(raw)
    names = [v.decode("utf-8") if isinstance(v, bytes) else v for v in raw.ravel().tolist()]
    if raw.ndim != 1 or not names or not all(isinstance(v, str) and v for v in names):
        raise ValueError(
            f"{path}: the attribute '{attr}' of {where} is {raw.tolist()!r}; expected a "
            "non-empty list of non-empty strings, the name of class k at position k."
        )
    return tuple(names)


def _class_names(f, ans, path, name="ans"):
    """The class names the file declares (attribute ``class_names`` of the labels or
    of the file), else the ten Galaxy10 classes for ``ans`` and None (codes named by
    their value) for labels under another name."""
    for where, attrs in ((f"'{name}'", ans.attrs), ("the file", f.attrs)):
        if "class_names" in attrs:
            return _declared_names(attrs["class_names"], where, path)
    return GALAXY10_CLASSES if name == "ans" else None


def _check_labels(raw, class_names, path, name="ans", declared="the file's class_names"):
    """Labels as int64 class codes 0..K-1 (K = ``len(class_names)``; any code >= 0
    when ``class_names`` is None), or a clear error quoting bad rows.

    Digit strings (``b"3"``, as some tools write labels) are parsed as integers.
    """
    k = None if class_names is None else len(class_names)
    codes = "integer class codes >= 0" if k is None else f"integer class codes 0-{k - 1}"
    if raw.dtype.kind in "SUOT":  # T: NumPy's variable-width strings (Zarr)
        text = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in raw.tolist()]
        bad = [i for i, v in enumerate(text) if not (isinstance(v, str) and _INT.fullmatch(v))]
        if bad:
            raise ValueError(
                f"{path}: '{name}' holds strings, and {len(bad)} of {len(raw)} are not integers "
                f"({_rows(bad)}: {', '.join(repr(text[i]) for i in bad[:_EXAMPLES])}); "
                f"expected {codes}."
            )
        raw = np.array([int(v) for v in text], dtype=object)  # any size, range-checked below
    elif raw.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(raw) | (raw != np.round(raw)))
        if len(bad):
            raise ValueError(
                f"{path}: '{name}' holds {len(bad)} of {len(raw)} labels that are not whole "
                f"numbers ({_rows(bad)}: {', '.join(map(str, raw[bad[:_EXAMPLES]]))}); "
                f"expected {codes}."
            )
    elif raw.dtype.kind not in "iu":
        raise ValueError(f"{path}: '{name}' has dtype {raw.dtype}; expected {codes}.")
    bad = np.flatnonzero((raw < 0) | (raw >= (np.inf if k is None else k)))
    if len(bad):
        values = sorted({int(v) for v in raw[bad]})
        shown = ", ".join(map(str, values[:_EXAMPLES])) + (
            ", ..." if len(values) > _EXAMPLES else ""
        )
        if k is None:
            source = "the codes >= 0"
        elif class_names is GALAXY10_CLASSES:
            source = f"the Galaxy10 codes 0-{k - 1}"
        else:
            source = f"the codes 0-{k - 1} of {declared}"
        raise ValueError(
            f"{path}: '{name}' holds {len(bad)} of {len(raw)} labels outside {source} "
            f"(values {shown}; {_rows(bad)}); expected {codes}."
        )
    return raw.astype(np.int64)


def _target(raw, class_names, path, name="ans", declared="the file's class_names"):
    """``(target, target_names)`` of raw labels: checked by :func:`_check_labels`;
    without declared names, code k is named ``str(k)``."""
    target = _check_labels(np.asarray(raw), class_names, path, name, declared)
    if class_names is None:
        class_names = [str(c) for c in range(int(target.max()) + 1)]
    return target, np.array(class_names)


def _column(files, path, name, n):
    d = _dataset(files, path, name, required=False)
    if d is None:
        return None
    _check_column(d.shape, d.dtype, path, name, n)
    return np.asarray(_read_all(d, path, name), dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class _Galaxy10:
    """A Galaxy10-format HDF5 file opened and checked (its handles live in ``files``)."""

    files: _Files  # every file its data are read from
    images: h5py.Dataset
    window: tuple  # (top, left, height, width) of the crop
    labels: str | None  # name of the labels dataset, None without labels
    raw_labels: np.ndarray | None
    class_names: tuple | None  # as declared (or Galaxy10's), None when unnamed
    target: np.ndarray | None  # int64 codes
    target_names: np.ndarray | None
    columns: dict  # ra, dec, ... -> float64 array, or None when absent


def _open_galaxy10(files, path, *, crop, labels="ans", labels_required=True):
    """Open and check a Galaxy10-format HDF5 file: its datasets (links, virtual and
    external sources, shapes, dtypes), the crop, the labels and the columns; what
    :func:`load_galaxy10` and the lazy catalogues of HDF5 files both trust."""
    f, images, ans = _datasets(files, path, labels, labels_required)
    n = images.shape[0]
    window = _crop_window(images.shape, crop, path)
    raw = class_names = target = target_names = None
    if ans is not None:
        class_names = _class_names(f, ans, path, labels)
        raw = np.asarray(_read_all(ans, path, labels))
        target, target_names = _target(raw, class_names, path, labels)
    columns = {k: _column(files, path, k, n) for k in _COLUMNS}
    return _Galaxy10(
        files=files,
        images=images,
        window=window,
        labels=None if ans is None else labels,
        raw_labels=raw,
        class_names=class_names,
        target=target,
        target_names=target_names,
        columns=columns,
    )


# ------------------------------------------------------------------------ the cache
def _file_sample(path):
    """Hash of a file's size, mtime and ``_SAMPLES`` blocks spread over it (its header,
    its end and every part between): cheap on a 2.5 GB file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        if st.st_size <= _SAMPLES * _SAMPLE_BYTES:
            h.update(fh.read())
        else:
            last = st.st_size - _SAMPLE_BYTES
            for i in range(_SAMPLES):
                fh.seek(last * i // (_SAMPLES - 1))
                h.update(fh.read(_SAMPLE_BYTES))
    return h.digest()


def _content_key(files, images, raw_labels, class_names, columns, crop, image_size):
    """What the cached images depend on: every file read (size, mtime and a sample of
    its bytes), the images' layout, and the labels and columns in full."""
    h = hashlib.sha256(f"galaxy10 v{_CACHE_VERSION} crop={crop} size={image_size}".encode())
    for p in files.paths:
        h.update(_file_sample(p))
    h.update(repr((images.shape, images.dtype.str, images.chunks, images.compression)).encode())
    if raw_labels is None:
        h.update(b"no labels")
    else:
        h.update(repr((raw_labels.dtype.str, class_names)).encode())
        h.update(
            repr(raw_labels.tolist()).encode()
            if raw_labels.dtype.kind == "O"
            else raw_labels.tobytes()
        )
    for k in _COLUMNS:
        h.update(b"-" if columns[k] is None else columns[k].tobytes())
    return h.hexdigest()


def _cache_path(cache_dir, path, crop, image_size):
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    c = "full" if crop is None else crop
    s = "same" if image_size is None else image_size
    return Path(cache_dir) / f"galaxy10_{path.stem}_{digest}_crop{c}_size{s}.npz"


def _read_cache(cache_file, key, shape):
    """Return the cached images, or None when absent or stale; warn when corrupt."""
    if not cache_file.exists():
        return None
    try:
        # our own handle: np.load leaks its file when the zip is truncated
        with open(cache_file, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            if "key" not in npz.files or str(npz["key"]) != key:
                return None  # the source changed (or an older format): rebuild
            images = npz["images"]
        if images.shape != shape or images.dtype != np.uint8:
            raise ValueError(f"images of shape {images.shape} {images.dtype}, expected {shape}")
        return images
    except Exception as exc:  # any unreadable cache (truncated zip, bad header, ...)
        warnings.warn(
            f"The galaxysim cache {cache_file} is corrupt ({type(exc).__name__}: {exc}); "
            "rebuilding it from the HDF5 file.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _write_cache(cache_file, images, key):
    try:
        with atomic_write(cache_file) as f:
            np.savez(f, key=np.array(key), images=images)
    except OSError as exc:
        warnings.warn(
            f"Could not write the galaxysim cache {cache_file} ({exc}); the next call will "
            "read the HDF5 file again. Pass cache_dir= a writable folder, or cache_dir=False.",
            RuntimeWarning,
            stacklevel=3,
        )


# ------------------------------------------------------------------------- reading
def _float_scale(images, path, read=None):
    """255 when float images are in [0, 1], 1 when in 0-255, decided over all of them
    (one pass over whole frames, 64 MB at a time) so that every image is scaled alike.

    ``read(images, path, index)`` reads a block (default: :func:`_read_block`, HDF5).
    """
    read = _read_block if read is None else read
    lo, hi, nan = np.inf, -np.inf, []
    n = images.shape[0]
    step = max(1, 64 * 1024**2 // (math.prod(images.shape[1:]) * images.dtype.itemsize))
    for s in range(0, n, step):
        block = read(images, path, np.s_[s : min(n, s + step)])
        finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        nan.extend(s + np.flatnonzero(~finite))
        if finite.any():
            lo, hi = min(lo, float(np.min(block[finite]))), max(hi, float(np.max(block[finite])))
    if nan:
        raise ValueError(
            f"{path}: 'images' holds NaN or infinite pixels in {len(nan)} of {n} images "
            f"({_rows(nan, 'image')}); Galaxy10 images are uint8 0-255. Repair those images."
        )
    if lo >= 0 and hi <= 1:
        return 255.0
    if lo >= 0 and hi <= 255:
        return 1.0
    raise ValueError(
        f"{path}: 'images' has float pixels from {lo:g} to {hi:g}; expected [0, 1] or 0-255 "
        "(Galaxy10 images are uint8)."
    )


def _read_block(images, path, index):
    """Rows ``index`` (a slice, or a tuple starting with one) of an HDF5 ``images``."""
    try:
        return images[index]
    except OSError as exc:
        rows = index if isinstance(index, slice) else index[0]
        raise OSError(
            f"Cannot read images {rows.start} to {rows.stop - 1} of {path}: "
            f"{_read_problem(images, exc)}"
        ) from exc


def _to_uint8(block, path, scale):
    if scale is not None:
        return np.rint(block * scale).astype(np.uint8)
    if block.dtype != np.uint8:
        if block.min() < 0 or block.max() > 255:
            raise ValueError(
                f"{path}: 'images' has dtype {block.dtype} with values from {block.min()} to "
                f"{block.max()}, outside 0-255; Galaxy10 images are uint8."
            )
        return block.astype(np.uint8)
    return block


def _read_images(images, path, *, window, image_size, chunk_size, verbose):
    n = images.shape[0]
    # Read only the central crop (an HDF5 hyperslab), so a chunk of 256 px frames
    # never sits in memory when a 64 px crop is asked for.
    top, left, ch, cw = window
    out_h, out_w = (ch, cw) if image_size is None else (image_size, image_size)
    # Align chunk boundaries with the file's own chunks so each is decompressed once.
    step = chunk_size
    if images.chunks is not None and images.chunks[0] < step:
        step -= step % images.chunks[0]
    # the output, plus one block as read and its float temporaries while it is framed
    block_bytes = min(n, step) * ch * cw * 3 * (images.dtype.itemsize + 4)
    check_memory(
        n * out_h * out_w * 3 + block_bytes,
        f"load_galaxy10 of {path} ({n} images framed at {out_h}x{out_w})",
        per_item=(out_h * out_w * 3, "images"),
        hint="Choose a smaller image_size (or a smaller crop with image_size=None).",
    )
    scale = _float_scale(images, path) if images.dtype.kind == "f" else None
    out = np.empty((n, out_h, out_w, 3), dtype=np.uint8)
    with progress(total=n, desc="Galaxy10", verbose=verbose, unit="img") as bar:
        for s in range(0, n, step):
            e = min(n, s + step)
            block = _read_block(images, path, np.s_[s:e, top : top + ch, left : left + cw, :])
            out[s:e] = frame_images(_to_uint8(block, path, scale), crop=None, image_size=image_size)
            bar.update(e - s)
    return out


def load_galaxy10(
    path,
    *,
    crop=64,
    image_size=64,
    cache_dir=None,
    return_X_y=False,
    chunk_size=512,
    verbose=1,
):
    """Load a Galaxy10 DECaLS or Galaxy10 SDSS HDF5 file, framed and cached.

    Galaxy10 DECaLS (astroNN's ``Galaxy10_DECals.h5``) holds 17,736 RGB cutouts of
    256x256 pixels with the datasets ``images``, ``ans`` (class 0-9), ``ra``, ``dec``,
    ``redshift`` and ``pxscale``; the older Galaxy10 SDSS file holds 21,785 cutouts of
    69x69 pixels with ``images`` and ``ans`` only. The images are read in chunks of
    ``chunk_size`` (only the central ``crop`` pixels are read), so peak memory stays
    far below the 3.5 GB of the raw DECaLS array, then framed like every galaxysim
    loader: centre-crop ``crop`` pixels, then an anti-aliased resize to
    ``image_size`` (what :class:`~galaxysim.preprocessing.CenterCrop` followed by
    :class:`~galaxysim.preprocessing.Resize` does). The default is the reference
    framing, the central 64x64 pixels of each DECaLS cutout.

    The file is checked before anything is trusted: labels must be whole numbers
    within the class codes (0-9, or those of the file's own ``class_names``
    attribute, on ``ans`` or on the file; digit strings such as ``b"3"`` are read as
    integers), every column present must hold one number per image, and links,
    virtual datasets and external storage must lead to data that exists (HDF5 would
    otherwise return zeros for missing parts). Anything wrong is an error naming what
    and where, never a silently different catalogue.

    The framed images are cached on disk (one ``.npz`` per file and framing), written
    atomically. The cache is keyed by content: the size, modification time and a
    sample of the bytes (header, end and 64 blocks between) of every file read, the
    images' layout, and all labels and columns; so a file replaced by another one,
    even of the same size and time stamp, is read again. An unreadable cache is
    rebuilt with a ``RuntimeWarning``.

    Parameters
    ----------
    path : str or path-like
        The Galaxy10 HDF5 file.
    crop : int or None, default=64
        Side of the central square kept, in source pixels; ``None`` keeps the whole frame.
    image_size : int or None, default=64
        Side of the returned images; ``None`` keeps the cropped size.
    cache_dir : str, path-like, None or False, default=None
        Cache folder. ``None`` uses ``$GALAXYSIM_CACHE`` when set, else
        ``~/.cache/galaxysim`` (``$XDG_CACHE_HOME/galaxysim`` when that is set);
        ``False`` disables the cache.
    return_X_y : bool, default=False
        Return ``(images, target)`` instead of a Bunch.
    chunk_size : int, default=512
        Images read from the file at a time (bounds the memory used while reading).
    verbose : int, default=1
        Show a progress bar while reading the HDF5 file.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``images`` (uint8, ``(n_samples, image_size, image_size, 3)``),
        ``target`` (int64 class codes; ``None`` for a file without ``ans``, as
        ``DESCR`` notes: its images load unlabelled), ``target_names`` (the 10
        Galaxy10 class names, or the file's ``class_names``; ``target_names[target]``
        names each image; ``None`` without labels), ``ra``, ``dec``, ``redshift``,
        ``pxscale`` (float64; all NaN for columns absent from the file, as in
        Galaxy10 SDSS), ``filename`` (absolute path) and ``DESCR``.
    (images, target) : tuple of ndarray
        When ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, or a source file of a virtual dataset, the target of
        an external link or an external data file is missing.
    OSError
        The file is not HDF5, is truncated or corrupt, or needs a compression filter
        that is not installed.
    KeyError
        The file has no ``images`` dataset (the message lists the keys found; the
        exception is also a ``ValueError``). A file without ``ans`` loads unlabelled.
    ValueError
        ``path`` is not a regular file (a FIFO, a device); ``images`` is not
        ``(n, height, width, 3)`` numbers, ``ans`` does not match it or holds labels
        that are not class codes, a column has another length; a link loops or
        dangles; data were never written; or ``crop`` is larger than the images.
    MemoryError
        The framed images would not fit in the memory available (checked before
        reading; also a ``ValueError``).

    See Also
    --------
    load_image_folder : Load a folder of JPEG/PNG cutouts, framed the same way.

    Examples
    --------
    A tiny file in the Galaxy10 DECaLS format:

    >>> import os, tempfile
    >>> import h5py, numpy as np
    >>> from galaxysim.datasets import load_galaxy10
    >>> d = tempfile.mkdtemp()
    >>> fname = os.path.join(d, "Galaxy10_DECals.h5")
    >>> with h5py.File(fname, "w") as f:
    ...     _ = f.create_dataset("images", data=np.zeros((5, 256, 256, 3), np.uint8))
    ...     _ = f.create_dataset("ans", data=np.arange(5, dtype=np.uint8))
    ...     for k in ("ra", "dec", "redshift", "pxscale"):
    ...         _ = f.create_dataset(k, data=np.zeros(5))
    >>> data = load_galaxy10(fname, cache_dir=d, verbose=0)
    >>> data.images.shape, str(data.target_names[data.target[2]])
    ((5, 64, 64, 3), 'Round Smooth')
    >>> X, y = load_galaxy10(fname, crop=128, image_size=32, cache_dir=d,
    ...                      return_X_y=True, verbose=0)
    >>> X.shape, y.tolist()
    ((5, 32, 32, 3), [0, 1, 2, 3, 4])
    >>> import shutil; shutil.rmtree(d)
    """
    crop = _check_size(crop, "crop")
    image_size = _check_size(image_size, "image_size")
    if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise FileNotFoundError(
            f"Galaxy10 file not found: {path}. Download Galaxy10_DECals.h5 "
            "(astroNN) and pass its path."
        )
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder; load_galaxy10 reads one HDF5 file. "
            "For a folder of JPEG/PNG cutouts use load_image_folder."
        )
    with contextlib.ExitStack() as stack:
        g = _open_galaxy10(_Files(stack), path, crop=crop, labels_required=False)
        images, target, class_names, columns = g.images, g.target, g.class_names, g.columns
        n = images.shape[0]
        out_h, out_w = g.window[2:]
        if image_size is not None:
            out_h = out_w = image_size

        X = cache_file = key = None
        if cache_dir is not False:
            cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
            cache_file = _cache_path(cache_dir, path, crop, image_size)
            key = _content_key(
                g.files, images, g.raw_labels, class_names, columns, crop, image_size
            )
            X = _read_cache(cache_file, key, (n, out_h, out_w, 3))
        if X is None:
            X = _read_images(
                images,
                path,
                window=g.window,
                image_size=image_size,
                chunk_size=chunk_size,
                verbose=verbose,
            )
            if cache_file is not None:
                _write_cache(cache_file, X, key)

    if return_X_y:
        return X, target
    missing = [k for k in _COLUMNS if columns[k] is None]
    columns = {k: np.full(n, np.nan) if v is None else v for k, v in columns.items()}
    survey = "SDSS" if len(missing) == len(_COLUMNS) else "DECaLS"
    framing = (
        f"{'the whole frame' if crop is None else f'the central {crop}x{crop} pixels'}"
        f"{'' if image_size in (None, crop) else f' resized to {image_size}x{image_size}'}"
    )
    descr = _DESCR.format(
        survey=survey,
        filename=path,
        n=n,
        classes=(
            "without labels (the file has no 'ans' dataset: target is None)"
            if target is None
            else f"in {len(class_names)} morphological classes (Galaxy Zoo volunteer votes)"
        ),
        target=(
            ""
            if target is None
            else f"target (class 0-{len(class_names) - 1}, names in target_names), "
        ),
        framing=framing,
        shape=X.shape,
        missing=f" ({', '.join(missing)}: NaN, absent from the file)" if missing else "",
    )
    return Bunch(
        images=X,
        target=target,
        target_names=g.target_names,
        **columns,
        filename=str(path),
        DESCR=descr,
    )
