"""Lazy catalogues: framed images as a Dask array, read and framed block by block.

Each block is one task: it opens its source (an HDF5 file, a Zarr store, or the image
files of the block), reads its rows in chunks and frames them, so memory holds a few
blocks whatever the catalogue's size. Tasks carry only small, picklable readers (paths
and framing), never an open file, so they run on any Dask scheduler, worker processes
of a ``distributed`` cluster included.
"""

import contextlib
import numbers
import os
from pathlib import Path

import h5py
import numpy as np
from sklearn.utils import Bunch

from galaxysim.datasets._folder import _folder_catalogue, _load_one
from galaxysim.datasets._galaxy10 import (
    _COLUMNS,
    _check_column,
    _check_image_array,
    _check_label_shape,
    _check_size,
    _crop_window,
    _datasets,
    _declared_names,
    _Files,
    _float_scale,
    _missing_error,
    _open_galaxy10,
    _read_block,
    _target,
    _to_uint8,
)
from galaxysim.utils._image import frame_images
from galaxysim.utils._imread import ImageReadError, ImageTooLargeError
from galaxysim.utils._io import check_regular_file
from galaxysim.utils._optional import import_optional

__all__ = ["open_catalogue"]

_READ_ROWS = 256  # rows read from a file at a time inside a block (bounds its temporaries)


def _is_zarr(path):
    return path.is_dir() and any((path / m).is_file() for m in ("zarr.json", ".zgroup"))


def _signature(paths):
    """``(path, size, mtime)`` of each file: what a task compares to tell that the data
    it reads are those the catalogue was opened on."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((str(p), int(st.st_size), int(st.st_mtime_ns)))
    return tuple(out)


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

    Subclasses open the source in each task (h5py handles cannot be pickled) and read
    its blocks; pixels become uint8 as :func:`load_galaxy10` makes them, floats by the
    ``scale`` decided over the whole array when the catalogue was opened.
    """

    def __init__(self, source, window, image_size, read_rows, scale):
        self.source = str(source)
        self.window = tuple(window)
        self.image_size = image_size
        self.read_rows = read_rows
        self.scale = scale

    def _token(self):
        return (self.source, self.window, self.image_size, self.read_rows, self.scale)

    def __dask_tokenize__(self):
        return (type(self).__name__, *self._token())

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
                raw = self._read(images, self.source, np.s_[s:e, top : top + h, left : left + w, :])
                raw = _to_uint8(raw, self.source, self.scale)
                out[s - start : e - start] = frame_images(raw, image_size=self.image_size)
        return out


class _HDF5Reader(_ArrayReader):
    """Each task re-opens the file through the checked opener of :func:`load_galaxy10`
    (links, virtual and external sources, regular files) and refuses files changed
    since the catalogue was opened."""

    _read = staticmethod(_read_block)

    def __init__(self, source, window, image_size, read_rows, scale, labels, signature):
        super().__init__(source, window, image_size, read_rows, scale)
        self.labels = labels  # the labels dataset checked at opening, or None
        self.signature = signature  # of every file the data are read from

    def _token(self):
        return (*super()._token(), self.labels, self.signature)

    def _changed(self):
        return ValueError(f"{self.source} changed since the catalogue was opened; open it again.")

    @contextlib.contextmanager
    def _open(self):
        opened = {p: (size, mtime) for p, size, mtime in self.signature}
        main = os.path.realpath(self.source)
        if os.path.lexists(main) and _signature([main])[0][1:] != opened.get(main):
            raise self._changed()  # before trusting anything the file now says
        with contextlib.ExitStack() as stack:
            files = _Files(stack)
            _, images, _ = _datasets(
                files, self.source, self.labels or "ans", self.labels is not None
            )
            if any(opened.get(p) != (size, mtime) for p, size, mtime in _signature(files.paths)):
                raise self._changed()
            yield images


def _read_zarr_block(images, path, index):
    """Rows ``index`` of a Zarr ``images`` array, or an OSError naming them."""
    try:
        return np.asarray(images[index])
    except Exception as exc:  # codecs and stores raise many types on damaged chunks
        rows = index if isinstance(index, slice) else index[0]
        raise OSError(
            f"Cannot read images {rows.start} to {rows.stop - 1} of {path}: the data is "
            f"truncated or corrupt ({type(exc).__name__}: {exc}). Replace the store, or "
            "rewrite those images."
        ) from exc


class _ZarrReader(_ArrayReader):
    _read = staticmethod(_read_zarr_block)

    @contextlib.contextmanager
    def _open(self):
        zarr = import_optional("zarr", "Reading a Zarr catalogue")
        yield zarr.open_group(self.source, mode="r")["images"]


class _FolderReader:
    """Decodes and frames the image files of one block, with :func:`load_image_folder`'s
    reader (``max_pixels`` its guard against decompression bombs)."""

    def __init__(self, folder, crop, image_size, shape, max_pixels):
        self.folder = str(folder)
        self.crop = crop
        self.image_size = image_size
        self.shape = tuple(shape)
        self.max_pixels = max_pixels

    def __dask_tokenize__(self):
        return (
            type(self).__name__, self.folder, self.crop, self.image_size, self.shape,
            self.max_pixels,
        )  # fmt: skip

    def __call__(self, rows, paths):
        out = np.empty((len(rows), *self.shape), dtype=np.uint8)
        where = f"block of catalogue images {rows[0]} to {rows[-1]}" if len(rows) else ""
        for i, (row, path) in enumerate(zip(rows.tolist(), paths.tolist(), strict=True)):
            try:
                img = _load_one(Path(path), self.crop, self.image_size, self.max_pixels)
            except ImageReadError as exc:
                hint = (
                    " If you trust it, pass a larger max_pixels=."
                    if isinstance(exc, ImageTooLargeError)
                    else ""
                )
                raise ValueError(
                    f"Cannot read image {path} (catalogue image {row}, in the {where}): "
                    f"{exc.reason}. Replace or delete it (and its row of the labels CSV)."
                    f"{hint}"
                ) from exc
            except (OSError, ValueError) as exc:  # gone or replaced since opening; a crop
                raise type(exc)(f"{exc} (catalogue image {row}, in the {where})") from None
            if img.shape != self.shape:
                raise ValueError(
                    f"Image {path} (catalogue image {row}, in the {where}) is "
                    f"{'x'.join(map(str, img.shape[:2]))} pixels after framing, the "
                    f"catalogue's are {'x'.join(map(str, self.shape[:2]))}. Pass crop= and/or "
                    "image_size= to bring all images to one size."
                )
            out[i] = img
        return out


class _Take:
    """Reads and frames only the given catalogue images, now (a search's neighbours).

    Array sources read each run of consecutive rows in one call of the block reader;
    folders decode only the named files. ``files`` holds a folder's image paths.
    """

    def __init__(self, reader, n, files=None):
        self.reader, self.n, self.files = reader, n, files

    def __call__(self, indices):
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise ValueError(f"take expects a 1-D array of image indices; got {indices!r}.")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise ValueError(
                f"take got image indices from {idx.min()} to {idx.max()}; the catalogue has "
                f"indices 0 to {self.n - 1}."
            )
        rows, inverse = np.unique(idx, return_inverse=True)
        if self.files is not None:
            out = self.reader(rows, self.files[rows])
        else:
            runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
            out = np.concatenate([self.reader(run) for run in runs])
        return out[inverse.ravel()]


def _hdf5_source(path, crop, image_size, block_size, label_column):
    """Reader, sizes, labels and columns of an HDF5 file, opened and checked by the
    function :func:`load_galaxy10` trusts (labels ``ans``, optional here, or
    ``label_column``, required)."""
    labels = "ans" if label_column is None else label_column
    with contextlib.ExitStack() as stack:
        files = _Files(stack)
        g = _open_galaxy10(
            files, path, crop=crop, labels=labels, labels_required=label_column is not None
        )
        images = g.images
        n = images.shape[0]
        # floats are scaled alike in every block, as load_galaxy10 scales them
        scale = _float_scale(images, path) if images.dtype.kind == "f" else None
        block, read = _aligned(block_size, images.chunks[0] if images.chunks else 1)
        signature = _signature(files.paths)
    columns = {k: v for k, v in g.columns.items() if v is not None}
    reader = _HDF5Reader(path, g.window, image_size, read, scale, g.labels, signature)
    return reader, n, block, g.labels, g.target, g.target_names, columns


def _zarr_array(group, name, path):
    obj = group[name]
    if not hasattr(obj, "dtype"):
        raise ValueError(f"{path}: {name!r} is a group, not an array.")
    return obj


def _zarr_source(path, crop, image_size, block_size, label_column):
    """Reader, sizes, labels and columns of a Zarr store: the checks of an HDF5 file
    where they apply (shapes, dtypes, labels as class codes, columns, float scale)."""
    zarr = import_optional("zarr", "Reading a Zarr catalogue")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:
        raise ValueError(f"Cannot open {path} as a Zarr group ({exc}).") from exc
    keys = sorted(group.keys())
    labels = "labels" if label_column is None else label_column
    missing = [k for k in ("images", label_column) if k is not None and k not in keys]
    if missing:
        raise _missing_error(path, missing, keys, labels)
    images = _zarr_array(group, "images", path)
    _check_image_array(images.shape, images.dtype, path)
    n = images.shape[0]
    window = _crop_window(images.shape, crop, path)
    target = target_names = None
    if labels in keys:
        arr = _zarr_array(group, labels, path)
        _check_label_shape(arr.shape, n, path, labels)
        names = group.attrs.get("target_names")
        if names is not None:
            names = _declared_names(names, "the store", path, attr="target_names")
        target, target_names = _target(
            np.asarray(arr[()]), names, path, labels, declared="the store's target_names"
        )
    else:
        labels = None
    columns = {}
    for k in _COLUMNS:
        if k in keys:
            arr = _zarr_array(group, k, path)
            _check_column(arr.shape, arr.dtype, path, k, n)
            columns[k] = np.asarray(arr[()], dtype=np.float64)
    scale = None
    if images.dtype.kind == "f":
        scale = _float_scale(images, path, read=_read_zarr_block)
    chunk_rows = (getattr(images, "shards", None) or images.chunks)[0]
    block, read = _aligned(block_size, chunk_rows)
    reader = _ZarrReader(path, window, image_size, read, scale)
    return reader, n, block, labels, target, target_names, columns


def _folder_source(folder, labels_csv, label_column, crop, image_size, max_pixels, **rules):
    """The files and labels of a folder, taken by :func:`load_image_folder`'s own
    function (every CSV rule, confinement, encoding, missing and special files), and
    the framed shape."""
    cat = _folder_catalogue(folder, labels_csv, label_column, skip=None, **rules)
    if image_size is not None:
        shape = (image_size, image_size, 3)
    elif crop is not None:
        shape = (crop, crop, 3)
    else:  # the whole frame, unresized: the first image sets the catalogue's size
        shape = _load_one(cat.files[0], None, None, max_pixels).shape
    return cat, shape


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
    max_pixels=None,
    allow_outside=False,
    encoding="utf-8",
):
    """Open a catalogue lazily: framed images as a Dask array, labels and identifiers.

    Only labels and identifier columns are read now (and the pixels of float images
    once, to decide their scale as :func:`load_galaxy10` does; for a folder with
    ``crop=None`` and ``image_size=None``, the first image, for its size): ``images`` is a
    :class:`dask.array.Array` whose blocks of ``block_size`` images are read and framed
    (centre-crop ``crop`` pixels, then an anti-aliased resize to ``image_size``, as
    :func:`load_galaxy10` and :func:`load_image_folder` frame them) only when computed,
    each in one task that reads its rows in chunks. Memory holds a few blocks whatever
    the catalogue's size, and the tasks are picklable: they run on the threaded or
    multiprocessing scheduler or on a ``distributed`` cluster's worker processes.

    Sources:

    - an HDF5 file with an ``images`` dataset ``(n, height, width, 3)``, such as
      Galaxy10 DECaLS or SDSS; labels from ``ans`` when present, and ``ra``, ``dec``,
      ``redshift``, ``pxscale`` columns where the file has them. The file is opened
      and checked exactly as :func:`load_galaxy10` checks it (labels are class codes,
      named by the file's ``class_names`` attribute, else Galaxy10's classes for
      ``ans`` and ``str(k)`` for another label array; columns hold one number per
      image; links, virtual datasets and external storage lead to data that exists;
      no FIFO or device), and it is opened again, the same way, in each task; a task
      refuses a file changed since the catalogue was opened.
    - a Zarr store (a folder with ``zarr.json``, or ``.zgroup`` for Zarr 2) holding an
      ``images`` array, optional ``labels`` (class codes, checked as those of an HDF5
      file, named by the group's ``target_names`` attribute when set, else ``str(k)``)
      and the same optional columns, checked the same way.
    - a folder of cutouts (JPEG/PNG, FITS with astropy), with labels from a CSV, both
      taken and checked by :func:`load_image_folder`'s own rules (each file listed
      once, inside the folder unless ``allow_outside``, the CSV in ``encoding``, no
      missing file, named pipe or device); each block decodes its own files with the
      same reader.

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
    max_pixels : int or None, default=None
        Folders only: largest image read, in pixels, as in :func:`load_image_folder`
        (a guard against decompression bombs; ``None``: twice Pillow's limit).
    allow_outside : bool, default=False
        Folders only: let the labels CSV name files outside its folder and ``path``
        (and the folder hold symlinks out), as in :func:`load_image_folder`.
    encoding : str, default="utf-8"
        Folders only: text encoding of the labels CSV, as in :func:`load_image_folder`.

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
        ``kind`` (``"hdf5"``, ``"zarr"`` or ``"folder"``), ``take`` (a picklable
        callable: ``take(indices)`` reads and frames only those images, now, as a
        uint8 ndarray; for showing a search's neighbours), ``open_params`` (the
        resolved framing and label options: ``open_catalogue(source,
        **open_params)`` opens the same catalogue again) and ``DESCR``.

    Raises
    ------
    FileNotFoundError
        ``path`` or the labels CSV does not exist, the CSV names missing files, or a
        file an HDF5 file reads from (a virtual dataset's source, an external link's
        target, external storage) is missing.
    OSError
        The HDF5 file is truncated or corrupt; when computing, a block whose data is
        unreadable (the message names the file and the images).
    KeyError
        An HDF5 file or Zarr store without ``images`` or the named label array (the
        message lists the keys found; the exception is also a ``ValueError``).
    ValueError
        What :func:`load_galaxy10` refuses (``images`` of the wrong shape or dtype,
        labels that are not class codes, a column of another length, a bad link, a
        FIFO), a crop larger than the images; when computing, a file changed since
        opening, or an image of a folder that cannot be decoded (the message names
        the file and the block's images).
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
    >>> data.take([7, 2]).shape, data.open_params["crop"]
    ((2, 64, 64, 3), 64)
    >>> import shutil; shutil.rmtree(d)
    """
    da = import_optional("dask.array", "open_catalogue")
    if crop != "auto":
        crop = _check_size(crop, "crop")
    image_size = _check_size(image_size, "image_size")
    max_pixels = _check_size(max_pixels, "max_pixels")
    block_size = _check_block_size(block_size)
    source = Path(path).expanduser().absolute()
    if not source.exists():
        raise FileNotFoundError(f"Catalogue not found: {source}.")

    columns = {}
    if source.is_dir() and not _is_zarr(source):
        kind = "folder"
        crop = None if crop == "auto" else crop
        cat, shape = _folder_source(
            source,
            labels_csv,
            label_column,
            crop,
            image_size,
            max_pixels,
            allow_outside=allow_outside,
            encoding=encoding,
        )
        label_column, target, target_names = cat.label_column, cat.target, cat.target_names
        n, block = len(cat.files), block_size
        reader = _FolderReader(source, crop, image_size, shape, max_pixels)
        columns["file"] = np.array(cat.names)
        files = np.array([str(p) for p in cat.files])
        paths = da.from_array(files, chunks=block)
        if labels_csv not in (None, False):
            labels_csv = str(Path(labels_csv).expanduser().absolute())
        folder_params = {
            "max_pixels": max_pixels,
            "allow_outside": allow_outside,
            "encoding": encoding,
        }
    else:
        kind = "zarr" if source.is_dir() else "hdf5"
        if kind == "hdf5":
            check_regular_file(source, "The HDF5 file")  # h5py.is_hdf5 would block on a FIFO
            if not h5py.is_hdf5(source):
                raise ValueError(
                    f"{source} is neither an HDF5 file, a Zarr store nor a folder of images."
                )
        if labels_csv not in (None, False):
            raise ValueError(
                f"labels_csv is for folders of images; {source} holds its labels itself "
                "(pass label_column= to pick the array)."
            )
        given = [
            k
            for k, v, default in (
                ("max_pixels", max_pixels, None),
                ("allow_outside", allow_outside, False),
                ("encoding", encoding, "utf-8"),
            )
            if v != default
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for folders of "
                f"images; {source} is {'an HDF5 file' if kind == 'hdf5' else 'a Zarr store'}."
            )
        crop = (64 if kind == "hdf5" else None) if crop == "auto" else crop
        opener = _hdf5_source if kind == "hdf5" else _zarr_source
        reader, n, block, label_column, target, target_names, found = opener(
            source, crop, image_size, block_size, label_column
        )
        shape = _framed_shape(reader.window, image_size)
        columns.update(found)
        paths = files = None
        folder_params = {}

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
        take=_Take(reader, n, files),
        open_params={
            "crop": crop,
            "image_size": image_size,
            "labels_csv": labels_csv,
            "label_column": label_column,
            **folder_params,
        },
        DESCR=descr,
    )
