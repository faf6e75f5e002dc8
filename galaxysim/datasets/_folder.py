"""Load a folder of galaxy cutouts (JPEG/PNG, FITS with astropy) with labels from a CSV."""

import csv
import importlib.util
import numbers
import re
import warnings
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from PIL import Image, UnidentifiedImageError
from sklearn.utils import Bunch

from galaxysim.utils._image import frame_images
from galaxysim.utils._progress import progress

__all__ = ["load_image_folder"]

_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
_FITS_EXTS = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
_BATCH = 32  # files per parallel task: amortises scheduling overhead
# Column names that look like a class label, for picking the label column of a CSV.
_LABEL_NAME = re.compile(r"(^|_)(label|labels|class|target|y|category)$", re.IGNORECASE)


class _ImageReadError(Exception):
    """A file that cannot be decoded; skippable with ``on_error="skip"``."""


def _is_fits(path):
    name = path.name.lower()
    return name.endswith(_FITS_EXTS)


def _is_image(path):
    return path.suffix.lower() in _IMAGE_EXTS or _is_fits(path)


def _has_astropy():
    return importlib.util.find_spec("astropy") is not None


def _read_pil(path):
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                # 16-bit or float PNG/TIFF: scale to 0-255 rather than clip
                arr = np.asarray(img, dtype=np.float32)
                return _scale_to_uint8(np.stack([arr] * 3, axis=-1))
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _ImageReadError(
            f"Cannot read image {path}: the file is corrupt, truncated or not an image "
            f"({type(exc).__name__}: {exc}). Replace or delete it, or pass on_error='skip'."
        ) from exc


def _read_fits(path):
    if not _has_astropy():
        raise _ImageReadError(f"Cannot read {path}: FITS files need astropy (pip install astropy).")
    from astropy.io import fits

    try:
        data = np.asarray(fits.getdata(path), dtype=np.float32)
    except Exception as exc:
        raise _ImageReadError(f"Cannot read FITS file {path} ({exc}).") from exc
    data = np.squeeze(data)
    if data.ndim == 3 and data.shape[0] in (1, 3) and data.shape[-1] not in (1, 3):
        data = np.moveaxis(data, 0, -1)  # FITS cubes are usually channels first
    if data.ndim == 2:
        data = data[..., np.newaxis]
    if data.ndim != 3 or data.shape[-1] not in (1, 3):
        raise _ImageReadError(
            f"FITS file {path} holds an array of shape {data.shape}, not an image."
        )
    if data.shape[-1] == 1:
        data = np.repeat(data, 3, axis=-1)
    return _scale_to_uint8(data)


def _scale_to_uint8(data):
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = np.percentile(data, [0.5, 99.5])
    if hi <= lo:
        return np.zeros(data.shape, dtype=np.uint8)
    return np.rint(np.clip((data - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def _load_one(path, crop, image_size):
    """Decode, convert to RGB and frame one file (the full image is dropped at once)."""
    img = _read_fits(path) if _is_fits(path) else _read_pil(path)
    h, w = img.shape[:2]
    if crop is not None and (crop > h or crop > w):
        raise ValueError(
            f"crop={crop} is larger than image {path} ({h}x{w} pixels). Choose a crop of at "
            "most the smallest image side, or crop=None to keep the whole frame."
        )
    return frame_images(img[np.newaxis], crop=crop, image_size=image_size)[0]


def _load_batch(paths, crop, image_size, skip):
    out = []
    for p in paths:
        try:
            out.append(_load_one(p, crop, image_size))
        except _ImageReadError as exc:
            if not skip:
                raise
            out.append(exc)
    return out


def _find_images(folder):
    files = sorted(
        # hidden files (such as macOS "._name.jpg" forks) are not images
        (p for p in folder.rglob("*") if p.is_file() and _is_image(p) and p.name[0] != "."),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    fits_files = [p for p in files if _is_fits(p)]
    if fits_files and not _has_astropy():
        warnings.warn(
            f"Skipping {len(fits_files)} FITS file(s) in {folder}: reading FITS needs "
            "astropy (pip install astropy).",
            UserWarning,
            stacklevel=3,
        )
        files = [p for p in files if not _is_fits(p)]
    return files


def _read_csv(csv_path):
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"Cannot read the labels CSV {csv_path}: {exc}") from exc
    if "file" not in columns:
        raise ValueError(
            f"The labels CSV {csv_path} has no 'file' column; columns found: {columns}. "
            "It needs a 'file' column naming each image, relative to the CSV's folder."
        )
    if not rows:
        raise ValueError(f"The labels CSV {csv_path} lists no images (only a header).")
    return columns, rows


def _pick_label_column(columns, csv_path):
    others = [c for c in columns if c != "file"]
    if not others:
        return None
    if len(others) == 1:
        return others[0]
    plausible = [c for c in others if _LABEL_NAME.search(c)]
    if len(plausible) == 1:
        return plausible[0]
    raise ValueError(
        f"Cannot tell which column of {csv_path} holds the labels; columns: {columns}. "
        "Pass label_column=<name> (or labels_csv=False to load the images without labels)."
    )


def _name_column(columns, label_column):
    stem = re.sub(r"_?(label|labels|class|target|id|code)$", "", label_column, flags=re.I)
    candidates = [f"{label_column}_name", f"{stem}_name" if stem else None, "name", "class_name"]
    for c in candidates:
        if c and c in columns and c != label_column:
            return c
    return None


def _encode_labels(values, names, label_column, csv_path):
    """Turn label strings into ints and ``target_names`` with ``target_names[target]``."""
    empty = [i for i, v in enumerate(values) if v == ""]
    if empty:
        raise ValueError(
            f"Column {label_column!r} of {csv_path} is empty on {len(empty)} row(s) "
            f"(first data rows {[i + 2 for i in empty[:5]]} counting the header as 1). "
            "Fill or drop them."
        )
    try:
        ints = np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        ints = None
    if ints is not None and ints.min() >= 0:
        target_names = [str(k) for k in range(int(ints.max()) + 1)]
        if names is not None:
            mapping = {}
            for k, n in zip(ints.tolist(), names, strict=True):
                mapping.setdefault(k, set()).add(n)
            if all(len(s) == 1 for s in mapping.values()):
                for k, s in mapping.items():
                    target_names[k] = s.pop()
        return ints, np.array(target_names)
    # strings (or negative ints): code by sorted unique value
    if ints is not None:
        uniques, target = np.unique(ints, return_inverse=True)
        return target.astype(np.int64), np.array([str(u) for u in uniques])
    uniques, target = np.unique(np.array(values), return_inverse=True)
    return target.astype(np.int64), uniques


def load_image_folder(
    path,
    *,
    labels_csv=None,
    label_column=None,
    crop=None,
    image_size=64,
    on_error="raise",
    n_jobs=None,
    return_X_y=False,
    verbose=1,
):
    """Load a folder of galaxy cutouts (JPEG/PNG, FITS with astropy), framed like a catalogue.

    Each image is decoded, converted to RGB and framed as soon as it is read
    (centre-crop ``crop`` pixels, then an anti-aliased resize to ``image_size``, the
    framing of :func:`load_galaxy10`), so full-size frames never pile up in memory.
    Files are read in parallel with joblib threads (Pillow releases the GIL while
    decoding) behind a progress bar.

    Which images, and their labels:

    - With a labels CSV (``labels_csv``, or ``labels.csv`` in the folder when
      present), the CSV's ``file`` column lists the images, relative to the CSV's
      folder, in CSV order; other images in the folder are ignored. The label
      column is ``label_column``; when omitted it is picked only when unambiguous
      (the CSV has one column besides ``file``, or exactly one whose name looks like a
      label: ``label``, ``class``, ``target``, ``*_label``, ``*_class``, ...).
    - Without a CSV, every JPEG/PNG (and FITS when astropy is installed; otherwise
      FITS files are skipped with a warning) under the folder, subfolders included,
      sorted by relative path; ``target`` and ``target_names`` are then ``None``.

    Integer labels (>= 0) are kept as they are, and ``target_names[k]`` names label
    ``k``: taken from a companion name column when the CSV has one (``gz1_name`` for
    ``gz1_class``, ``x_name`` for ``x``), else ``str(k)``. Other labels (strings,
    negative integers) are coded 0..K-1 in sorted order, with ``target_names`` the
    sorted unique values.

    Broken survey cutouts (a black frame with an error text) are valid images and
    load like any other. Files that cannot be decoded raise, or with
    ``on_error="skip"`` are dropped (with their labels) and counted in one warning.

    Parameters
    ----------
    path : str or path-like
        Folder of images.
    labels_csv : str, path-like, None or False, default=None
        CSV with a ``file`` column and a label column. ``None`` uses
        ``<path>/labels.csv`` when it exists; ``False`` ignores any CSV.
    label_column : str, default=None
        Column of ``labels_csv`` holding the labels (see above when ``None``).
    crop : int or None, default=None
        Side of the central square kept, in source pixels; ``None`` keeps the whole
        frame. On the 423 px SDSS cutouts of Galaxy Zoo 1, ``crop=128`` with
        ``image_size=64`` frames galaxies like the Galaxy10 reference framing.
    image_size : int or None, default=64
        Side of the returned images; ``None`` keeps the cropped size (all images must
        then have the same size). Non-square frames are stretched to a square when
        ``crop=None``.
    on_error : {"raise", "skip"}, default="raise"
        What to do with files that cannot be read (corrupt or missing).
    n_jobs : int, default=None
        Threads reading and framing files, with :class:`joblib.Parallel`'s meaning
        (the files are read in a ``joblib.Parallel`` that prefers threads): ``None``
        means 1 unless a ``joblib.parallel_config`` context says otherwise, ``-1``
        all cores, ``-2`` all but one, and so on. The images are the same for every
        ``n_jobs``.
    return_X_y : bool, default=False
        Return ``(images, target)`` instead of a Bunch.
    verbose : int, default=1
        Show a progress bar.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``images`` (uint8, ``(n_samples, image_size, image_size, 3)``),
        ``target`` (int64 ``(n_samples,)``, or ``None`` without labels),
        ``target_names`` (ndarray of str, or ``None``), ``filenames`` (absolute paths
        of the loaded images, ndarray of str), ``label_column`` and ``DESCR``.
    (images, target) : tuple
        When ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        The folder or the CSV does not exist, or (with ``on_error="raise"``) the CSV
        names files that do not exist (the message counts them and shows a few).
    NotADirectoryError
        ``path`` is a file.
    ValueError
        No images found; a CSV without a ``file`` or the named label column (the
        message lists the columns); a corrupt image (the message names it) with
        ``on_error="raise"``; a crop larger than an image; images of different sizes
        with ``image_size=None``.

    See Also
    --------
    load_galaxy10 : Load a Galaxy10 HDF5 file, framed the same way.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from galaxysim.datasets import load_image_folder
    >>> d = tempfile.mkdtemp()
    >>> for i, label in enumerate(["spiral", "elliptical", "spiral"]):
    ...     Image.fromarray(np.full((100, 100, 3), 40 * i, np.uint8)).save(f"{d}/g{i}.png")
    >>> with open(os.path.join(d, "labels.csv"), "w") as f:
    ...     _ = f.write("file,morphology\\ng0.png,spiral\\ng1.png,elliptical\\ng2.png,spiral\\n")
    >>> data = load_image_folder(d, crop=64, image_size=32, verbose=0)
    >>> data.images.shape, data.target.tolist(), data.target_names.tolist()
    ((3, 32, 32, 3), [1, 0, 1], ['elliptical', 'spiral'])
    >>> X, y = load_image_folder(d, labels_csv=False, return_X_y=True, verbose=0)
    >>> X.shape, y is None
    ((3, 64, 64, 3), True)
    >>> import shutil; shutil.rmtree(d)
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}.")
    for name, value in (("crop", crop), ("image_size", image_size)):
        if value is not None and (
            not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1
        ):
            raise ValueError(f"{name} must be a positive int or None; got {value!r}.")
    folder = Path(path).expanduser().absolute()
    if not folder.exists():
        raise FileNotFoundError(f"Image folder not found: {folder}.")
    if not folder.is_dir():
        raise NotADirectoryError(
            f"{folder} is a file, not a folder of images. For a Galaxy10 HDF5 file use "
            "load_galaxy10."
        )

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
        files = [csv_path.parent / r["file"] for r in rows]
        if label_column is not None:
            values = [r.get(label_column, "") for r in rows]
            name_col = _name_column(columns, label_column)
            names = [r.get(name_col, "") for r in rows] if name_col else None
            target, target_names = _encode_labels(values, names, label_column, csv_path)
    else:
        label_column = None
        files = _find_images(folder)
        if not files:
            raise ValueError(
                f"No images found in {folder} (searched subfolders too for "
                f"{', '.join(_IMAGE_EXTS)}{', FITS' if _has_astropy() else ''})."
            )

    skip = on_error == "skip"
    keep = np.ones(len(files), dtype=bool)
    missing = [i for i, p in enumerate(files) if not p.is_file()]
    problems = []
    if missing:
        shown = ", ".join(str(files[i]) for i in missing[:3])
        if not skip:
            raise FileNotFoundError(
                f"{len(missing)} of the {len(files)} files named in {csv_path} do not exist, "
                f"for example {shown}. Paths in the 'file' column are relative to the CSV's "
                "folder; fix them, or pass on_error='skip' to load the others."
            )
        keep[missing] = False
        problems += [f"{files[i]} (missing)" for i in missing]

    todo = [i for i in range(len(files)) if keep[i]]
    batches = [todo[s : s + _BATCH] for s in range(0, len(todo), _BATCH)]
    results = [None] * len(files)
    n_threads = effective_n_jobs(n_jobs)
    tasks = (delayed(_load_batch)([files[i] for i in b], crop, image_size, skip) for b in batches)
    with progress(total=len(todo), desc="Loading images", verbose=verbose, unit="img") as bar:
        try:
            # Threads: decoding in Pillow releases the GIL; results come back in order.
            out = Parallel(n_jobs=n_threads, prefer="threads", return_as="generator")(tasks)
            for b, arrays in zip(batches, out, strict=True):
                for i, a in zip(b, arrays, strict=True):
                    results[i] = a
                bar.update(len(b))
        except _ImageReadError as exc:
            raise ValueError(str(exc)) from exc.__cause__

    for i in todo:
        if isinstance(results[i], _ImageReadError):
            keep[i] = False
            problems.append(f"{files[i]} ({results[i].__cause__ or results[i]})")
    if problems:
        warnings.warn(
            f"Skipped {len(problems)} of {len(files)} files that could not be read, for "
            f"example {'; '.join(problems[:3])}.",
            UserWarning,
            stacklevel=2,
        )
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        raise ValueError(f"None of the {len(files)} images in {folder} could be read.")

    shapes = {}
    for i in idx:
        shapes.setdefault(results[i].shape, []).append(files[i])
    if len(shapes) > 1:
        desc = "; ".join(
            f"{'x'.join(map(str, s[:2]))}: {len(v)} (e.g. {v[0].name})"
            for s, v in list(shapes.items())[:4]
        )
        raise ValueError(
            f"The images have different sizes after framing ({desc}). Pass crop= and/or "
            "image_size= to bring them to one size."
        )
    images = np.stack([results[i] for i in idx])
    del results
    if target is not None:
        target = target[idx]
    filenames = np.array([str(files[i]) for i in idx])

    if return_X_y:
        return images, target
    framing = "the whole frame" if crop is None else f"the central {crop}x{crop} pixels"
    if image_size is not None and image_size != crop:
        framing += f" resized to {image_size}x{image_size}"
    descr = (
        f"{len(images)} images from {folder}, framed as {framing}; images {images.shape} "
        "uint8. "
        + (
            f"Labels from column {label_column!r} ({len(target_names)} classes)."
            if target is not None
            else "No labels (target is None)."
        )
    )
    return Bunch(
        images=images,
        target=target,
        target_names=target_names,
        filenames=filenames,
        label_column=label_column,
        DESCR=descr,
    )
