"""Load a folder of galaxy cutouts (JPEG/PNG, FITS with astropy) with labels from a CSV."""

import codecs
import csv
import dataclasses
import numbers
import os
import re
import warnings
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.utils import Bunch

from galaxysim.utils import _imread
from galaxysim.utils._image import frame_images
from galaxysim.utils._imread import ImageReadError, is_fits, read_image
from galaxysim.utils._io import check_regular_file
from galaxysim.utils._progress import progress

__all__ = ["load_image_folder"]

_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
_BATCH = 32  # files per parallel task: amortises scheduling overhead
# Column names that look like a class label, for picking the label column of a CSV.
_LABEL_NAME = re.compile(r"(^|_)(label|labels|class|target|y|category)$", re.IGNORECASE)
MAX_CLASSES = 1000
"""Most distinct values a label column may hold; more make it an identifier, not labels."""
_MIN_ROWS_IDENTIFIER = 20  # from this many rows, a column unique on most rows is an identifier
_MAX_CODE = 65535  # integer labels up to this are kept as they are (target_names[k] names k)


def _is_image(path):
    return path.suffix.lower() in _IMAGE_EXTS or is_fits(path)


def _load_one(path, crop, image_size, max_pixels):
    """Decode, crop, convert to RGB and resize one file (the full image is dropped at once)."""
    img = read_image(path, crop=crop, max_pixels=max_pixels)
    return frame_images(img[np.newaxis], crop=None, image_size=image_size)[0]


def _load_batch(paths, crop, image_size, max_pixels, skip):
    out = []
    for p in paths:
        try:
            out.append(_load_one(p, crop, image_size, max_pixels))
        except ImageReadError as exc:
            if not skip:
                raise
            out.append(exc)
    return out


def _relative_name(file, entry, folder):
    """``file`` relative to ``folder`` (``/``-separated), or ``entry`` (as the CSV names
    it) for a file outside the folder."""
    try:
        return Path(os.path.normpath(file)).relative_to(os.path.normpath(folder)).as_posix()
    except ValueError:
        return entry


def find_images(folder):
    """The image files under ``folder`` (subfolders too, no hidden files), sorted by
    relative path; FITS files only when astropy is installed (else skipped with a warning)."""
    return _find_images(Path(folder))


def _find_images(folder):
    files = sorted(
        # hidden files (such as macOS "._name.jpg" forks) are not images; anything else
        # named like an image but not a regular file (a named pipe, a broken link) is
        # listed, to be reported rather than ignored or opened
        (p for p in folder.rglob("*") if _is_image(p) and p.name[0] != "." and not p.is_dir()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    fits_files = [p for p in files if is_fits(p)]
    if fits_files and not _imread._has_astropy():
        warnings.warn(
            f"Skipping {len(fits_files)} FITS file(s) in {folder}: reading FITS needs "
            "astropy (pip install astropy).",
            UserWarning,
            stacklevel=3,
        )
        files = [p for p in files if not is_fits(p)]
    return files


def _read_csv(csv_path, encoding):
    check_regular_file(csv_path, "Labels CSV")
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ValueError(
            f"encoding={encoding!r} is not a text encoding Python knows; pass one such as "
            "'utf-8', 'latin-1' or 'cp1252'."
        ) from None
    # a UTF-8 file may start with a byte-order mark (spreadsheets write one): drop it
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        with open(csv_path, newline="", encoding=codec) as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    except UnicodeDecodeError as exc:
        raise ValueError(_encoding_message(csv_path, encoding, codec, exc)) from None
    except (OSError, csv.Error, LookupError) as exc:
        raise ValueError(f"Cannot read the labels CSV {csv_path}: {exc}") from exc
    if "file" not in columns:
        raise ValueError(
            f"The labels CSV {csv_path} has no 'file' column; columns found: {columns}. "
            "It needs a 'file' column naming each image, relative to the CSV's folder."
        )
    if not rows:
        raise ValueError(f"The labels CSV {csv_path} lists no images (only a header).")
    return columns, rows


def _encoding_message(csv_path, encoding, codec, exc):
    raw = csv_path.read_bytes()
    try:
        raw.decode(codec)
    except UnicodeDecodeError as whole:  # offsets in the whole file, not a read buffer
        exc = whole
    line = raw.count(b"\n", 0, exc.start) + 1
    return (
        f"The labels CSV {csv_path} is not {encoding} text (byte 0x{exc.object[exc.start]:02x} "
        f"on line {line}). Pass the file's encoding, for example encoding='latin-1' (or "
        "'cp1252' for files saved by Excel on Windows), or convert the file to UTF-8 "
        "(iconv -f latin1 -t utf-8 labels.csv > labels-utf8.csv, or save it as 'CSV "
        "UTF-8' from a spreadsheet)."
    )


def _check_empty(values, column, csv_path):
    empty = [i for i, v in enumerate(values) if v == ""]
    if empty:
        raise ValueError(
            f"Column {column!r} of {csv_path} is empty on {len(empty)} row(s) (rows "
            f"{_row_list(empty[:5])}{', ...' if len(empty) > 5 else ''}; the header is row "
            "1). Fill or drop them."
        )


def _row_list(rows):
    """Data row numbers as a spreadsheet shows them (the header is row 1)."""
    return ", ".join(str(r + 2) for r in rows)


def _check_duplicates(names, resolved, csv_path):
    seen = {}
    for i, p in enumerate(resolved):
        seen.setdefault(p, []).append(i)
    repeated = [rows for rows in seen.values() if len(rows) > 1]
    if not repeated:
        return
    shown = "; ".join(
        f"{' = '.join(dict.fromkeys(repr(names[r]) for r in rows))} (rows {_row_list(rows)})"
        for rows in repeated[:5]
    )
    raise ValueError(
        f"The labels CSV {csv_path} names {len(repeated)} image file(s) more than once: "
        f"{shown}{'; ...' if len(repeated) > 5 else ''}. Each image must be listed once; "
        "remove the repeated rows (the header is row 1)."
    )


def _check_inside(names, resolved, roots, where, rule):
    """Refuse files whose real path (symlinks followed) is inside none of ``roots``."""
    outside = [
        i for i, r in enumerate(resolved) if not any(r.is_relative_to(root) for root in roots)
    ]
    if not outside:
        return
    shown = "; ".join(f"{names[i]!r} -> {resolved[i]}" for i in outside[:3])
    raise ValueError(
        f"{len(outside)} of the {len(names)} image files {where} lie outside "
        f"{' and '.join(str(r) for r in roots)} once symlinks are followed, for example "
        f"{shown}. {rule}; if you trust these paths, pass allow_outside=True."
    )


def _check_regular(files, skip, source, from_csv):
    """Indices of files that are missing or not regular files, and why (or raise).

    ``skip=None``: raise, for a caller without ``on_error`` (no hint to pass it).
    """
    missing, special = [], []
    for i, p in enumerate(files):
        try:
            check_regular_file(p, "Image")
        except FileNotFoundError:
            missing.append(i)
        except (IsADirectoryError, ValueError) as exc:
            special.append((i, exc))
    or_skip = "" if skip is None else ", or pass on_error='skip' to load the others"
    if not skip and missing:
        shown = ", ".join(str(files[i]) for i in missing[:3])
        hint = "Paths in the 'file' column are relative to the CSV's folder; fix them"
        raise FileNotFoundError(
            f"{len(missing)} of the {len(files)} files {source} do not exist, for example "
            f"{shown}. {hint if from_csv else 'Fix or delete the broken links'}{or_skip}."
        )
    if not skip and special:
        raise ValueError(
            f"{len(special)} of the {len(files)} files {source} are not regular files. "
            f"For example: {special[0][1]} Replace them by image files{or_skip}."
        )
    return [(i, "missing") for i in missing] + [(i, "not a regular file") for i, _ in special]


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


def _identifier_problem(n_distinct, n_rows):
    """Why a column of ``n_distinct`` values over ``n_rows`` rows is no label column, or None."""
    if n_distinct > MAX_CLASSES:
        return f"more than {MAX_CLASSES}, the most classes a label column may hold"
    if n_rows >= _MIN_ROWS_IDENTIFIER and n_distinct > n_rows / 2:
        return "more than half the rows; a class should hold several images"
    return None


def _encode_labels(values, names, label_column, csv_path, columns, *, picked=False):
    """Turn label strings into ints and ``target_names`` with ``target_names[target]``.

    A column with too many distinct values (an identifier such as ``sdss_objid``, not
    labels) raises, or, when it was ``picked`` as the only column besides ``file``,
    gives ``(None, None)`` with a warning: the images load without labels. Memory stays
    bounded either way (``target_names`` never has more than ``_MAX_CODE + 1`` names).
    """
    _check_empty(values, label_column, csv_path)
    try:
        ints = np.array([int(v) for v in values], dtype=np.int64)
    except (ValueError, OverflowError):
        ints = None
    uniques, target = np.unique(np.array(values) if ints is None else ints, return_inverse=True)
    problem = _identifier_problem(len(uniques), len(values))
    if problem is not None:
        what = (
            f"Column {label_column!r} of {csv_path} holds {len(uniques)} distinct values in "
            f"{len(values)} rows ({problem}): an identifier, not labels"
        )
        if picked:
            warnings.warn(
                f"{what}. Loading the images without labels; to label them, pass "
                f"label_column=<name> naming a column of classes (columns: {columns}).",
                UserWarning,
                stacklevel=4,
            )
            return None, None
        others = [c for c in columns if c not in ("file", label_column)]
        raise ValueError(
            f"{what}. Pass label_column=<name> naming a column of classes"
            f"{f' (other columns: {others})' if others else ''}, or labels_csv=False to "
            "load the images without labels."
        )
    if ints is not None and ints.min() >= 0 and ints.max() <= _MAX_CODE:
        target_names = [str(k) for k in range(int(ints.max()) + 1)]
        if names is not None:
            mapping = {}
            for k, n in zip(ints.tolist(), names, strict=True):
                mapping.setdefault(k, set()).add(n)
            if all(len(s) == 1 for s in mapping.values()):
                for k, s in mapping.items():
                    target_names[k] = s.pop()
        return ints, np.array(target_names)
    # strings, negative or large integers: code by sorted unique value
    return target.astype(np.int64), np.array([str(u) for u in uniques])


@dataclasses.dataclass(frozen=True)
class _FolderCatalogue:
    """The images of a folder catalogue and their labels, every rule checked."""

    files: list  # paths of the images, in catalogue order
    names: list  # each as the CSV names it, or relative to the folder
    source: str  # "named in <csv>" or "in <folder>", for messages
    label_column: str | None
    target: np.ndarray | None  # int64 codes, None without labels
    target_names: np.ndarray | None
    unreadable: list  # (index, why) of missing or special files, with skip=True


def _folder_catalogue(folder, labels_csv, label_column, *, allow_outside, encoding, skip):
    """Which images the folder ``folder`` holds and their labels, as
    :func:`load_image_folder` and the lazy folder catalogues both take them.

    With a labels CSV (``labels_csv``, or ``<folder>/labels.csv``): its ``file`` column
    in CSV order, no empty cell, no file twice, every file inside the CSV's folder or
    ``folder`` (symlinks followed) unless ``allow_outside``, the CSV read in
    ``encoding``, the label column picked or checked and the labels encoded. Without:
    every image under ``folder``, sorted, no symlink out unless ``allow_outside``.
    Then files that are missing or not regular files raise, or with ``skip`` are
    listed in ``unreadable`` (``skip=None``: raise, without suggesting ``on_error``).
    """
    if not isinstance(allow_outside, bool | np.bool_):
        raise TypeError(f"allow_outside must be True or False; got {allow_outside!r}.")
    if labels_csv is None and (folder / "labels.csv").exists():
        labels_csv = folder / "labels.csv"
    target = target_names = None
    from_csv = labels_csv is not None and labels_csv is not False
    if from_csv:
        csv_path = Path(labels_csv).expanduser().absolute()
        if not csv_path.exists():
            raise FileNotFoundError(f"Labels CSV not found: {csv_path}.")
        columns, rows = _read_csv(csv_path, encoding)
        picked = label_column is None
        if picked:
            label_column = _pick_label_column(columns, csv_path)
        elif label_column not in columns:
            raise ValueError(
                f"The labels CSV {csv_path} has no column {label_column!r}; columns found: "
                f"{columns}."
            )
        entries = [r["file"] for r in rows]
        _check_empty(entries, "file", csv_path)
        files = [csv_path.parent / e for e in entries]
        resolved = [f.resolve() for f in files]
        _check_duplicates(entries, resolved, csv_path)
        source = f"named in {csv_path}"
        if not allow_outside:
            roots = list(dict.fromkeys([csv_path.parent.resolve(), folder.resolve()]))
            rule = "A labels CSV may name only images inside its folder or the image folder"
            _check_inside(entries, resolved, roots, source, rule)
        if label_column is not None:
            values = [r.get(label_column, "") for r in rows]
            name_col = _name_column(columns, label_column)
            names = [r.get(name_col, "") for r in rows] if name_col else None
            target, target_names = _encode_labels(
                values, names, label_column, csv_path, columns, picked=picked
            )
            if target is None:
                label_column = None
    else:
        label_column = None
        files = _find_images(folder)
        if not files:
            raise ValueError(
                f"No images found in {folder} (searched subfolders too for "
                f"{', '.join(_IMAGE_EXTS)}{', FITS' if _imread._has_astropy() else ''})."
            )
        source = f"in {folder}"
        entries = [f.relative_to(folder).as_posix() for f in files]
        if not allow_outside:
            rule = "Symlinks in the folder may point only to files inside it"
            _check_inside(entries, [f.resolve() for f in files], [folder.resolve()], source, rule)

    unreadable = _check_regular(files, skip, source, from_csv=from_csv)
    return _FolderCatalogue(
        files=files,
        names=entries,
        source=source,
        label_column=label_column,
        target=target,
        target_names=target_names,
        unreadable=unreadable,
    )


def load_image_folder(
    path,
    *,
    labels_csv=None,
    label_column=None,
    crop=None,
    image_size=64,
    on_error="raise",
    max_pixels=None,
    allow_outside=False,
    encoding="utf-8",
    n_jobs=None,
    return_X_y=False,
    verbose=1,
):
    """Load a folder of galaxy cutouts (JPEG/PNG, FITS with astropy), framed like a catalogue.

    Each image is decoded, cropped, converted to RGB and resized as soon as it is
    read (centre-crop ``crop`` pixels, then an anti-aliased resize to ``image_size``,
    the framing of :func:`load_galaxy10`) and written into the one output array, so
    full-size frames never pile up in memory. Files are read in parallel with joblib
    threads (Pillow releases the GIL while decoding) behind a progress bar.

    Pixels are decoded as everywhere in galaxysim (a query image given to the CLI
    gives the same pixels): 8-bit images as they are, grey/palette/RGBA/CMYK converted
    to RGB, and 16-bit, 32-bit and float images (and FITS) rescaled from their
    0.5th-99.5th percentile range to 0-255.

    Which images, and their labels:

    - With a labels CSV (``labels_csv``, or ``labels.csv`` in the folder when
      present), the CSV's ``file`` column lists the images, relative to the CSV's
      folder, in CSV order, each once; other images in the folder are ignored. The
      listed files must lie inside the CSV's folder or ``path`` once symlinks are
      followed (no ``../elsewhere/x.png``, absolute paths elsewhere, or links out),
      unless ``allow_outside=True``. The label
      column is ``label_column``; when omitted it is picked only when unambiguous
      (the CSV has one column besides ``file``, or exactly one whose name looks like a
      label: ``label``, ``class``, ``target``, ``*_label``, ``*_class``, ...).
    - Without a CSV, every JPEG/PNG (and FITS when astropy is installed; otherwise
      FITS files are skipped with a warning) under the folder, subfolders included,
      sorted by relative path; ``target`` and ``target_names`` are then ``None``.
      Symlinks that lead out of the folder are refused unless ``allow_outside=True``.

    Integer labels from 0 to 65535 are kept as they are, and ``target_names[k]``
    names label ``k``: taken from a companion name column when the CSV has one
    (``gz1_name`` for ``gz1_class``, ``x_name`` for ``x``), else ``str(k)``. Other
    labels (strings, negative or larger integers) are coded 0..K-1 in sorted order,
    with ``target_names`` the sorted unique values. A label column holds classes: one
    with more than 1000 distinct values, or (from 20 rows) distinct values on more
    than half of the rows, is an identifier (``sdss_objid``) and is refused when named
    by ``label_column``; picked as the CSV's only column besides ``file``, the images
    load without labels, with a warning.

    Broken survey cutouts (a black frame with an error text) are valid images and
    load like any other. Files that cannot be read (corrupt or missing files, named
    pipes or devices, which are never opened, images above ``max_pixels``) raise, or
    with ``on_error="skip"`` are dropped (with their labels) and counted in one
    warning.

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
        What to do with files that cannot be read (corrupt, missing, not regular
        files, too large).
    max_pixels : int or None, default=None
        Largest image read, in pixels (width x height), checked from each file's
        header before decoding as a guard against decompression bombs. ``None`` uses
        twice ``PIL.Image.MAX_IMAGE_PIXELS``, the size Pillow refuses (178,956,970
        pixels unless your program changed it); pass a larger number to read larger
        images you trust. Pillow's global setting is never changed.
    allow_outside : bool, default=False
        Let the labels CSV name files outside its folder and ``path`` (and the folder
        hold symlinks to files elsewhere). Only for CSVs you trust: a CSV from
        elsewhere could otherwise read any image on the machine.
    encoding : str, default="utf-8"
        Text encoding of the labels CSV (a UTF-8 byte-order mark is skipped), for
        example ``"latin-1"`` or ``"cp1252"`` for files saved by older spreadsheets.
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
        of the loaded images, ndarray of str), ``files`` (the same paths relative to
        ``path``, ``/``-separated, as a labels CSV in the folder names them; a file
        outside ``path`` as the CSV names it), ``label_column`` and ``DESCR``.
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
        message lists the columns), naming a file twice (with the rows), naming files
        outside its folder, or not in ``encoding``; a ``label_column`` that holds an
        identifier (too many distinct values); a CSV that is not a regular file;
        with ``on_error="raise"``, a corrupt image, one above ``max_pixels`` or one
        that is not a regular file (the message names it); a crop larger than an
        image; images of different sizes with ``image_size=None``.

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
    for name, value in (("crop", crop), ("image_size", image_size), ("max_pixels", max_pixels)):
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

    skip = on_error == "skip"
    cat = _folder_catalogue(
        folder, labels_csv, label_column, allow_outside=allow_outside, encoding=encoding, skip=skip
    )
    files, label_column, target, target_names = (
        cat.files, cat.label_column, cat.target, cat.target_names
    )  # fmt: skip
    problems = [f"{files[i]} ({why})" for i, why in cat.unreadable]
    todo = sorted(set(range(len(files))) - {i for i, _ in cat.unreadable})
    batches = [todo[s : s + _BATCH] for s in range(0, len(todo), _BATCH)]
    n_threads = effective_n_jobs(n_jobs)
    tasks = (
        delayed(_load_batch)([files[i] for i in b], crop, image_size, max_pixels, skip)
        for b in batches
    )
    # Framed images go straight into one array, allocated at the first image (all
    # share its shape, else the "different sizes" error below): no list, no np.stack.
    images = None
    loaded = []  # indices of the files in `images`, in order
    shapes = {}  # framed shape -> [count, first file]
    with progress(total=len(todo), desc="Loading images", verbose=verbose, unit="img") as bar:
        try:
            # Threads: decoding in Pillow releases the GIL; results come back in order.
            out = Parallel(n_jobs=n_threads, prefer="threads", return_as="generator")(tasks)
            for b, arrays in zip(batches, out, strict=True):
                for i, a in zip(b, arrays, strict=True):
                    if isinstance(a, ImageReadError):
                        problems.append(f"{files[i]} ({a.reason})")
                        continue
                    shapes.setdefault(a.shape, [0, files[i]])[0] += 1
                    if images is None:
                        images = np.empty((len(todo), *a.shape), dtype=np.uint8)
                    if a.shape == images.shape[1:]:
                        images[len(loaded)] = a
                        loaded.append(i)
                bar.update(len(b))
        except ImageReadError as exc:
            raise ValueError(
                f"{exc} Or pass on_error='skip' to load the other images."
            ) from exc.__cause__

    if problems:
        warnings.warn(
            f"Skipped {len(problems)} of {len(files)} files that could not be read, for "
            f"example {'; '.join(problems[:3])}.",
            UserWarning,
            stacklevel=2,
        )
    if not loaded:
        raise ValueError(f"None of the {len(files)} images in {folder} could be read.")
    if len(shapes) > 1:
        desc = "; ".join(
            f"{'x'.join(map(str, s[:2]))}: {n} (e.g. {first.name})"
            for s, (n, first) in list(shapes.items())[:4]
        )
        raise ValueError(
            f"The images have different sizes after framing ({desc}). Pass crop= and/or "
            "image_size= to bring them to one size."
        )
    if len(loaded) < len(images):  # skipped files: give back the unused tail
        try:
            images.resize((len(loaded), *images.shape[1:]))
        except ValueError:  # another reference to the array (a debugger): copy instead
            images = images[: len(loaded)].copy()
    if target is not None:
        target = target[loaded]
    filenames = np.array([str(files[i]) for i in loaded])
    relative = np.array([_relative_name(files[i], cat.names[i], folder) for i in loaded])

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
        files=relative,
        label_column=label_column,
        DESCR=descr,
    )
