"""Lazy catalogues: framed images as a Dask array, read and framed block by block.

Each block is one task: it opens its source (an HDF5 file, a Zarr store, or the image
files of the block), reads its rows in chunks and frames them, so memory holds a few
blocks whatever the catalogue's size. Tasks carry only small, picklable readers (paths
and framing), never an open file, so they run on any Dask scheduler, worker processes
of a ``distributed`` cluster included.
"""

import numbers
import os
from pathlib import Path

import h5py
import numpy as np
from sklearn.utils import Bunch

from galaxysim import GALAXY10_CLASSES
from galaxysim.datasets._folder import (
    _encode_labels,
    _find_images,
    _ImageReadError,
    _load_one,
    _name_column,
    _pick_label_column,
    _read_csv,
)
from galaxysim.datasets._galaxy10 import _COLUMNS, _check_size, _open_h5, _to_uint8
from galaxysim.utils._image import frame_images
from galaxysim.utils._optional import import_optional

__all__ = ["open_catalogue"]

_READ_ROWS = 256  # rows read from a file at a time inside a block (bounds its temporaries)
_GALAXY10_LABELS = "ans"


def _is_zarr(path):
    return path.is_dir() and any((path / m).is_file() for m in ("zarr.json", ".zgroup"))


def _signature(path):
    st = os.stat(path)
    return (int(st.st_size), int(st.st_mtime_ns))


def _check_image_array(shape, source, name="images"):
    if len(shape) != 4 or shape[-1] != 3 or shape[0] == 0:
        raise ValueError(
            f"{source}: {name!r} has shape {tuple(shape)}; expected (n_samples, height, "
            "width, 3) RGB images, as in Galaxy10 DECaLS (17736, 256, 256, 3)."
        )


def _window(shape, crop, source):
    """(top, left, height, width) of the central ``crop`` pixels of images of ``shape``."""
    h, w = shape[1:3]
    if crop is None:
        return (0, 0, h, w)
    if crop > h or crop > w:
        raise ValueError(
            f"crop={crop} is larger than the {h}x{w} images of {source}. "
            f"Choose crop <= {min(h, w)}, or crop=None to keep the whole frame."
        )
    return ((h - crop) // 2, (w - crop) // 2, crop, crop)


def _framed_shape(window, image_size):
    h, w = window[2:]
    return (h, w, 3) if image_size is None else (image_size, image_size, 3)


def _aligned(block_size, chunk_rows):
    """Block and read sizes in whole storage chunks, so each chunk is decompressed once."""
    chunk_rows = max(1, int(chunk_rows or 1))
    block = -(-block_size // chunk_rows) * chunk_rows
    read = max(chunk_rows, _READ_ROWS - _READ_ROWS % chunk_rows)
    return block, min(read, block)


class _ArrayReader:
    """Reads and frames rows ``start:stop`` of an ``images`` array in a file or store.

    Subclasses open the source in each task (h5py handles cannot be pickled) and say
    which exceptions of their library mean unreadable data.
    """

    def __init__(self, source, array, window, image_size, read_rows, signature):
        self.source = str(source)
        self.array = array
        self.window = window
        self.image_size = image_size
        self.read_rows = read_rows
        self.signature = signature

    def __dask_tokenize__(self):
        return (type(self).__name__, self.source, self.array, self.window, self.image_size,
                self.read_rows, self.signature)  # fmt: skip

    def __call__(self, rows):
        shape = _framed_shape(self.window, self.image_size)
        out = np.empty((len(rows), *shape), dtype=np.uint8)
        if len(rows) == 0:
            return out
        start, stop = int(rows[0]), int(rows[-1]) + 1  # a block of an arange: contiguous
        top, left, h, w = self.window
        with self._open() as images:
            for s in range(start, stop, self.read_rows):
                e = min(stop, s + self.read_rows)
                try:
                    raw = images[s:e, top : top + h, left : left + w, :]
                except self._errors as exc:
                    raise OSError(
                        f"Cannot read images {s} to {e - 1} of {self.source}: the data is "
                        f"truncated or corrupt ({type(exc).__name__}: {exc}). Replace the "
                        "file, or rewrite those images."
                    ) from exc
                if raw.dtype != np.uint8:
                    raw = _to_uint8(raw, self.source)
                out[s - start : e - start] = frame_images(raw, image_size=self.image_size)
        return out


class _HDF5Reader(_ArrayReader):
    _errors = (OSError, RuntimeError)

    def _open(self):
        if _signature(self.source) != self.signature:
            raise ValueError(
                f"{self.source} changed since the catalogue was opened; open it again."
            )
        return _HDF5Dataset(self.source, self.array)


class _HDF5Dataset:
    """Context manager yielding one dataset of an HDF5 file opened read-only."""

    def __init__(self, path, name):
        self.path, self.name = path, name

    def __enter__(self):
        self.file = _open_h5(self.path)
        return self.file[self.name]

    def __exit__(self, *exc):
        self.file.close()


class _ZarrReader(_ArrayReader):
    # codecs and stores raise many types on damaged chunks; all mean unreadable data
    _errors = (Exception,)

    def _open(self):
        zarr = import_optional("zarr", "Reading a Zarr catalogue")
        return _Opened(zarr.open_group(self.source, mode="r")[self.array])


class _Opened:
    def __init__(self, obj):
        self.obj = obj

    def __enter__(self):
        return self.obj

    def __exit__(self, *exc):
        pass


class _FolderReader:
    """Decodes and frames the image files of one block."""

    def __init__(self, folder, crop, image_size, shape):
        self.folder = str(folder)
        self.crop = crop
        self.image_size = image_size
        self.shape = tuple(shape)

    def __dask_tokenize__(self):
        return (type(self).__name__, self.folder, self.crop, self.image_size, self.shape)

    def __call__(self, rows, paths):
        out = np.empty((len(rows), *self.shape), dtype=np.uint8)
        where = f"block of catalogue images {rows[0]} to {rows[-1]}" if len(rows) else ""
        for i, (row, path) in enumerate(zip(rows.tolist(), paths.tolist(), strict=True)):
            try:
                img = _load_one(Path(path), self.crop, self.image_size)
            except _ImageReadError as exc:
                cause = exc.__cause__ or exc
                raise ValueError(
                    f"Cannot read image {path} (catalogue image {row}, in the {where}): "
                    f"the file is missing, corrupt, truncated or not an image "
                    f"({type(cause).__name__}: {cause}). Replace or delete it (and its row "
                    "of the labels CSV)."
                ) from exc.__cause__
            except ValueError as exc:  # a crop larger than this image
                raise ValueError(f"{exc} (catalogue image {row}, in the {where})") from None
            if img.shape != self.shape:
                raise ValueError(
                    f"Image {path} (catalogue image {row}, in the {where}) is "
                    f"{'x'.join(map(str, img.shape[:2]))} pixels after framing, the "
                    f"catalogue's are {'x'.join(map(str, self.shape[:2]))}. Pass crop= and/or "
                    "image_size= to bring all images to one size."
                )
            out[i] = img
        return out


def _labels_from_array(values, name, source, galaxy10):
    """``target`` and ``target_names`` of a label array (Galaxy10 names for ``ans``)."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{source}: labels {name!r} have shape {values.shape}; expected (n,).")
    if values.dtype.kind in "iu" and len(values) and values.min() >= 0:
        target = values.astype(np.int64)
        if galaxy10 and target.max() < len(GALAXY10_CLASSES):
            return target, np.array(GALAXY10_CLASSES)
        return target, np.array([str(k) for k in range(int(target.max()) + 1)])
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8")
    return _encode_labels([str(v) for v in values.tolist()], None, name, source)


def _array_source(path, kind, crop, image_size, block_size, label_column):
    """Reader, sizes, labels and identifier columns of an HDF5 file or a Zarr store."""
    if kind == "hdf5":
        handle = _open_h5(path)
    else:
        zarr = import_optional("zarr", "Reading a Zarr catalogue")
        try:
            handle = zarr.open_group(str(path), mode="r")
        except Exception as exc:
            raise ValueError(f"Cannot open {path} as a Zarr group ({exc}).") from exc
    try:
        keys = sorted(handle.keys())
        if "images" not in keys:
            raise ValueError(
                f"{path} has no 'images' array; keys found: {keys}. A catalogue holds "
                "'images' (n_samples, height, width, 3) and optionally labels and "
                "ra/dec/redshift columns."
            )
        images = handle["images"]
        _check_image_array(images.shape, path)
        n = images.shape[0]
        window = _window(images.shape, crop, path)
        if kind == "hdf5":
            chunk_rows = images.chunks[0] if images.chunks else 1
        else:
            chunk_rows = (getattr(images, "shards", None) or images.chunks)[0]
        block, read = _aligned(block_size, chunk_rows)

        default = _GALAXY10_LABELS if kind == "hdf5" else "labels"
        if label_column is None:
            label_column = default if default in keys else None
        elif label_column not in keys:
            raise ValueError(
                f"{path} has no array {label_column!r} to take labels from; keys found: {keys}."
            )
        target = target_names = None
        if label_column is not None:
            values = np.asarray(handle[label_column][()])
            if values.shape != (n,):
                raise ValueError(
                    f"{path}: labels {label_column!r} have shape {values.shape} but 'images' "
                    f"holds {n} images; expected one label per image."
                )
            target, target_names = _labels_from_array(
                values, label_column, path, galaxy10=label_column == _GALAXY10_LABELS
            )
            names = None if kind == "hdf5" else handle.attrs.get("target_names")
            if names is not None and len(names) > target.max():
                target_names = np.array([str(v) for v in names])
        columns = {}
        for k in _COLUMNS:
            if k in keys and handle[k].shape == (n,):
                columns[k] = np.asarray(handle[k][()], dtype=np.float64)
    finally:
        if kind == "hdf5":
            handle.close()
    if kind == "hdf5":
        reader = _HDF5Reader(path, "images", window, image_size, read, _signature(path))
    else:
        reader = _ZarrReader(path, "images", window, image_size, read, None)
    shape = _framed_shape(window, image_size)
    return reader, n, shape, block, label_column, target, target_names, columns


def _folder_source(folder, labels_csv, label_column, crop, image_size):
    """Files, names relative to the folder, labels and the framed shape of a folder."""
    if labels_csv is None and (folder / "labels.csv").is_file():
        labels_csv = folder / "labels.csv"
    target = target_names = None
    if labels_csv is not None and labels_csv is not False:
        csv_path = Path(labels_csv).expanduser().absolute()
        if not csv_path.is_file():
            raise FileNotFoundError(f"Labels CSV not found: {csv_path}.")
        columns, rows = _read_csv(csv_path)
        if label_column is None:
            label_column = _pick_label_column(columns, csv_path)
        elif label_column not in columns:
            raise ValueError(
                f"The labels CSV {csv_path} has no column {label_column!r}; columns found: "
                f"{columns}."
            )
        names = [r["file"] for r in rows]
        files = [csv_path.parent / f for f in names]
        if label_column is not None:
            values = [r.get(label_column, "") for r in rows]
            name_col = _name_column(columns, label_column)
            class_names = [r.get(name_col, "") for r in rows] if name_col else None
            target, target_names = _encode_labels(values, class_names, label_column, csv_path)
        missing = [p for p in files if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of the {len(files)} files named in {csv_path} do not exist, "
                f"for example {', '.join(map(str, missing[:3]))}. Paths in the 'file' column "
                "are relative to the CSV's folder; fix them or drop their rows."
            )
    else:
        label_column = None
        files = _find_images(folder)
        if not files:
            raise ValueError(f"No images found in {folder} (subfolders searched too).")
        names = [p.relative_to(folder).as_posix() for p in files]
    if image_size is not None:
        shape = (image_size, image_size, 3)
    elif crop is not None:
        shape = (crop, crop, 3)
    else:  # the whole frame, unresized: the first image sets the catalogue's size
        try:
            shape = _load_one(files[0], None, None).shape
        except _ImageReadError as exc:
            raise ValueError(str(exc)) from exc.__cause__
    return files, names, label_column, target, target_names, shape


def _check_block_size(block_size):
    if (
        not isinstance(block_size, numbers.Integral)
        or isinstance(block_size, bool)
        or block_size < 1
    ):
        raise ValueError(f"block_size must be a positive int; got {block_size!r}.")
    return int(block_size)


def open_catalogue(
    path,
    *,
    crop="auto",
    image_size=64,
    block_size=1024,
    labels_csv=None,
    label_column=None,
):
    """Open a catalogue lazily: framed images as a Dask array, labels and identifiers.

    Only labels and identifier columns are read now (and, for a folder with
    ``crop=None`` and ``image_size=None``, the first image, for its size): ``images`` is a
    :class:`dask.array.Array` whose blocks of ``block_size`` images are read and framed
    (centre-crop ``crop`` pixels, then an anti-aliased resize to ``image_size``, as
    :func:`load_galaxy10` and :func:`load_image_folder` frame them) only when computed,
    each in one task that reads its rows in chunks. Memory holds a few blocks whatever
    the catalogue's size, and the tasks are picklable: they run on the threaded or
    multiprocessing scheduler or on a ``distributed`` cluster's worker processes.

    Sources:

    - an HDF5 file with an ``images`` dataset ``(n, height, width, 3)``, such as
      Galaxy10 DECaLS or SDSS; labels from ``ans`` (Galaxy10's classes, named by
      ``target_names``) when present, and ``ra``, ``dec``, ``redshift``, ``pxscale``
      columns where the file has them. The file is opened in each task.
    - a Zarr store (a folder with ``zarr.json``, or ``.zgroup`` for Zarr 2) holding an
      ``images`` array, optional ``labels`` (class names from the group's
      ``target_names`` attribute when set) and the same optional columns.
    - a folder of cutouts (JPEG/PNG, FITS with astropy), with labels from a CSV as in
      :func:`load_image_folder`; each block decodes its own files.

    Parameters
    ----------
    path : str or path-like
        HDF5 file, Zarr store or folder of images.
    crop : int, None or "auto", default="auto"
        Side of the central square kept, in source pixels; ``None`` keeps the whole
        frame. ``"auto"`` is 64 for HDF5 files (the Galaxy10 reference framing, as
        :func:`load_galaxy10`) and ``None`` for Zarr stores and folders.
    image_size : int or None, default=64
        Side of the framed images; ``None`` keeps the cropped size (all images of a
        folder must then have the same size).
    block_size : int, default=1024
        Images per block (per task). HDF5 and Zarr blocks are rounded up to whole
        storage chunks, so that each chunk is decompressed once.
    labels_csv : str, path-like, None or False, default=None
        Folders only: CSV with a ``file`` column and labels, as in
        :func:`load_image_folder` (``None``: ``<path>/labels.csv`` when present;
        ``False``: no labels).
    label_column : str, default=None
        Column of the labels CSV (folders), or name of the label array (HDF5 and Zarr;
        default ``ans`` for HDF5, ``labels`` for Zarr, when present).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``images`` (Dask array, uint8, ``(n_samples, image_size, image_size, 3)``,
        in blocks along the first axis), ``target`` (int64 ndarray, or ``None``
        without labels), ``target_names`` (ndarray of str, or ``None``),
        ``label_column``, the identifier columns (``index``, the catalogue index
        0..n-1; ``file``, names relative to the folder, for folders; ``ra``, ``dec``,
        ``redshift``, ``pxscale`` where an HDF5 file or Zarr store has them),
        ``identifiers`` (the names of those columns), ``source`` (the absolute path),
        ``kind`` (``"hdf5"``, ``"zarr"`` or ``"folder"``) and ``DESCR``.

    Raises
    ------
    FileNotFoundError
        ``path`` or the labels CSV does not exist, or the CSV names missing files.
    OSError
        The HDF5 file is truncated or corrupt; when computing, a block whose data is
        unreadable (the message names the file and the images).
    ValueError
        No ``images`` array, one of the wrong shape, a crop larger than the images,
        an unknown label column; when computing, an image of a folder that cannot be
        decoded (the message names the file and the block's images).
    ImportError
        Dask (or zarr, for a Zarr store) is not installed: ``pip install galaxysim[dask]``.

    See Also
    --------
    load_galaxy10, load_image_folder : The same catalogues, loaded into memory.

    Examples
    --------
    >>> import os, tempfile
    >>> import h5py, numpy as np
    >>> from galaxysim.datasets import open_catalogue
    >>> d = tempfile.mkdtemp()
    >>> fname = os.path.join(d, "Galaxy10_DECals.h5")
    >>> with h5py.File(fname, "w") as f:
    ...     _ = f.create_dataset("images", data=np.zeros((10, 256, 256, 3), np.uint8))
    ...     _ = f.create_dataset("ans", data=np.arange(10, dtype=np.uint8))
    ...     _ = f.create_dataset("ra", data=np.linspace(0, 9, 10))
    >>> data = open_catalogue(fname, block_size=4)
    >>> data.images
    dask.array<catalogue, shape=(10, 64, 64, 3), dtype=uint8, chunksize=(4, 64, 64, 3), chunktype=numpy.ndarray>
    >>> data.images.blocks[1].compute().shape, data.identifiers
    ((4, 64, 64, 3), ('index', 'ra'))
    >>> str(data.target_names[data.target[5]])
    'Barred Spiral'
    >>> import shutil; shutil.rmtree(d)
    """
    da = import_optional("dask.array", "open_catalogue")
    if crop != "auto":
        crop = _check_size(crop, "crop")
    image_size = _check_size(image_size, "image_size")
    block_size = _check_block_size(block_size)
    source = Path(path).expanduser().absolute()
    if not source.exists():
        raise FileNotFoundError(f"Catalogue not found: {source}.")

    columns = {}
    if source.is_dir() and not _is_zarr(source):
        kind = "folder"
        crop = None if crop == "auto" else crop
        files, names, label_column, target, target_names, shape = _folder_source(
            source, labels_csv, label_column, crop, image_size
        )
        n, block = len(files), block_size
        reader = _FolderReader(source, crop, image_size, shape)
        columns["file"] = np.array(names)
        paths = da.from_array(np.array([str(p) for p in files]), chunks=block)
    else:
        kind = "zarr" if source.is_dir() else "hdf5"
        if kind == "hdf5" and not h5py.is_hdf5(source):
            raise ValueError(
                f"{source} is neither an HDF5 file, a Zarr store nor a folder of images."
            )
        if labels_csv not in (None, False):
            raise ValueError(
                f"labels_csv is for folders of images; {source} holds its labels itself "
                "(pass label_column= to pick the array)."
            )
        crop = (64 if kind == "hdf5" else None) if crop == "auto" else crop
        reader, n, shape, block, label_column, target, target_names, found = _array_source(
            source, kind, crop, image_size, block_size, label_column
        )
        columns.update(found)
        paths = None

    rows = da.arange(n, chunks=block, dtype=np.int64)
    images = da.map_blocks(
        reader,
        *([rows] if paths is None else [rows, paths]),
        new_axis=[1, 2, 3],
        chunks=(rows.chunks[0], *((s,) for s in shape)),
        dtype=np.uint8,
        meta=np.empty((0, 0, 0, 0), dtype=np.uint8),
        token="catalogue",
    )
    identifiers = {"index": np.arange(n, dtype=np.int64), **columns}
    framing = "the whole frame" if crop is None else f"the central {crop}x{crop} pixels"
    if image_size is not None and image_size != crop:
        framing += f" resized to {image_size}x{image_size}"
    descr = (
        f"Lazy catalogue of {n} images from {source} ({kind}), framed as {framing}; "
        f"images {images.shape} uint8 in {images.numblocks[0]} blocks of up to {block}. "
        + (
            f"Labels from {label_column!r} ({len(target_names)} classes)."
            if target is not None
            else "No labels (target is None)."
        )
    )
    return Bunch(
        images=images,
        target=target,
        target_names=target_names,
        label_column=label_column,
        identifiers=tuple(identifiers),
        **identifiers,
        source=str(source),
        kind=kind,
        DESCR=descr,
    )
