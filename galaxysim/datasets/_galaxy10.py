"""Galaxy10 DECaLS / SDSS HDF5 loader: chunked reading, framing and an on-disk cache."""

import hashlib
import numbers
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
from sklearn.utils import Bunch

from galaxysim import GALAXY10_CLASSES
from galaxysim.utils._image import frame_images
from galaxysim.utils._io import atomic_write
from galaxysim.utils._progress import progress

__all__ = ["load_galaxy10"]

# Bump when the cached content or its layout changes: older caches are then rebuilt.
_CACHE_VERSION = 1
_COLUMNS = ("ra", "dec", "redshift", "pxscale")

_DESCR = """Galaxy10 {survey} (Leung & Bovy; astroNN), read from {filename}.

{n} galaxy images in 10 morphological classes (Galaxy Zoo volunteer votes),
framed as {framing}; images {shape} uint8.
Columns: target (class 0-9, names in target_names), ra, dec (degrees),
redshift and pxscale (arcsec/pixel){missing}.
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


def _open_h5(path):
    try:
        return h5py.File(path, "r", rdcc_nbytes=64 * 1024**2)
    except OSError as exc:
        raise OSError(
            f"Cannot read {path} as an HDF5 file: it is truncated or corrupt ({exc}). "
            "If it is a Galaxy10 download, delete it and download it again "
            "(the DECaLS file is about 2.5 GB)."
        ) from exc


def _datasets(f, path):
    keys = sorted(f.keys())
    missing = [k for k in ("images", "ans") if k not in f]
    if missing:
        raise _MissingDatasetError(
            f"{path} has no {' or '.join(repr(k) for k in missing)} dataset; keys found: "
            f"{keys}. A Galaxy10 file (DECaLS or SDSS) holds 'images' "
            "(n, height, width, 3) and 'ans' (n,)."
        )
    images, ans = f["images"], f["ans"]
    if not isinstance(images, h5py.Dataset) or not isinstance(ans, h5py.Dataset):
        raise ValueError(f"{path}: 'images' and 'ans' must be HDF5 datasets, not groups.")
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(
            f"{path}: 'images' has shape {images.shape}; expected (n_samples, height, width, 3) "
            "RGB images as in Galaxy10 DECaLS (17736, 256, 256, 3) or SDSS (21785, 69, 69, 3)."
        )
    if ans.shape != (images.shape[0],):
        raise ValueError(
            f"{path}: 'ans' has shape {ans.shape} but 'images' holds {images.shape[0]} images; "
            "expected one label per image."
        )
    return images, ans


def _source_signature(path):
    st = os.stat(path)
    return np.array([st.st_size, st.st_mtime_ns, _CACHE_VERSION], dtype=np.int64)


def _cache_path(cache_dir, path, crop, image_size):
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    c = "full" if crop is None else crop
    s = "same" if image_size is None else image_size
    return Path(cache_dir) / f"galaxy10_{path.stem}_{digest}_crop{c}_size{s}.npz"


def _read_cache(cache_file, signature):
    """Return the cached arrays, or None when absent or stale; warn when corrupt."""
    if not cache_file.exists():
        return None
    try:
        # our own handle: np.load leaks its file when the zip is truncated
        with open(cache_file, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            if not np.array_equal(npz["signature"], signature):
                return None  # the source changed (or an older format): rebuild
            data = {k: npz[k] for k in ("images", "target", *_COLUMNS)}
        n = len(data["images"])
        if data["images"].ndim != 4 or any(len(data[k]) != n for k in data):
            raise ValueError("inconsistent array lengths")
        return data
    except Exception as exc:  # any unreadable cache (truncated zip, bad header, ...)
        warnings.warn(
            f"The galaxysim cache {cache_file} is corrupt ({type(exc).__name__}: {exc}); "
            "rebuilding it from the HDF5 file.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _write_cache(cache_file, data, signature):
    try:
        with atomic_write(cache_file) as f:
            np.savez(f, signature=signature, **data)
    except OSError as exc:
        warnings.warn(
            f"Could not write the galaxysim cache {cache_file} ({exc}); the next call will "
            "read the HDF5 file again. Pass cache_dir= a writable folder, or cache_dir=False.",
            RuntimeWarning,
            stacklevel=3,
        )


def _read_h5(path, *, crop, image_size, chunk_size, verbose):
    with _open_h5(path) as f:
        images, ans = _datasets(f, path)
        n, h, w, _ = images.shape
        if crop is not None and (crop > h or crop > w):
            raise ValueError(
                f"crop={crop} is larger than the {h}x{w} images of {path}. "
                f"Choose crop <= {min(h, w)}, or crop=None to keep the whole frame."
            )
        # Read only the central crop (an HDF5 hyperslab), so a chunk of 256 px frames
        # never sits in memory when a 64 px crop is asked for.
        ch, cw = (h, w) if crop is None else (crop, crop)
        top, left = (h - ch) // 2, (w - cw) // 2
        out_h, out_w = (ch, cw) if image_size is None else (image_size, image_size)
        # Align chunk boundaries with the file's own chunks so each is decompressed once.
        step = chunk_size
        if images.chunks is not None and images.chunks[0] < step:
            step -= step % images.chunks[0]
        out = np.empty((n, out_h, out_w, 3), dtype=np.uint8)
        with progress(total=n, desc="Galaxy10", verbose=verbose, unit="img") as bar:
            for s in range(0, n, step):
                e = min(n, s + step)
                try:
                    block = images[s:e, top : top + ch, left : left + cw, :]
                except OSError as exc:
                    raise OSError(
                        f"Cannot read images {s}-{e} of {path}: the file is truncated or "
                        f"corrupt ({exc}). Delete it and download it again."
                    ) from exc
                if block.dtype != np.uint8:
                    block = _to_uint8(block, path)
                out[s:e] = frame_images(block, crop=None, image_size=image_size)
                bar.update(e - s)
        target = np.asarray(ans[()]).astype(np.int64)
        data = {"images": out, "target": target}
        for k in _COLUMNS:
            if k in f and f[k].shape == (n,):
                data[k] = np.asarray(f[k][()], dtype=np.float64)
            else:
                data[k] = np.full(n, np.nan)
    return data


def _to_uint8(block, path):
    if np.issubdtype(block.dtype, np.floating):
        lo, hi = float(block.min()), float(block.max())
        if lo >= 0 and hi <= 1:
            return np.rint(block * 255).astype(np.uint8)
        if lo >= 0 and hi <= 255:
            return np.rint(block).astype(np.uint8)
    elif np.issubdtype(block.dtype, np.integer) and block.min() >= 0 and block.max() <= 255:
        return block.astype(np.uint8)
    raise ValueError(
        f"{path}: 'images' has dtype {block.dtype} with values outside 0-255 / [0, 1]; "
        "Galaxy10 images are uint8."
    )


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

    The framed result is cached on disk (one ``.npz`` per file and framing), written
    atomically. The cache is rebuilt when the source file changes (size or
    modification time), and, with a ``RuntimeWarning``, when it is unreadable.

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
        ``target`` (int64 class 0-9), ``target_names`` (the 10 Galaxy10 class names,
        ``target_names[target]`` names each image), ``ra``, ``dec``, ``redshift``,
        ``pxscale`` (float64; all NaN for columns absent from the file, as in
        Galaxy10 SDSS), ``filename`` (absolute path) and ``DESCR``.
    (images, target) : tuple of ndarray
        When ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    OSError
        The file is not HDF5, or is truncated or corrupt.
    KeyError
        The file has no ``images`` or ``ans`` dataset (the message lists the keys found;
        the exception is also a ``ValueError``).
    ValueError
        ``images`` is not ``(n, height, width, 3)``, ``ans`` does not match it, or
        ``crop`` is larger than the images.

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

    data = None
    cache_file = None
    signature = _source_signature(path)
    if cache_dir is not False:
        cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
        cache_file = _cache_path(cache_dir, path, crop, image_size)
        data = _read_cache(cache_file, signature)
    if data is None:
        data = _read_h5(
            path, crop=crop, image_size=image_size, chunk_size=chunk_size, verbose=verbose
        )
        if cache_file is not None:
            _write_cache(cache_file, data, signature)

    if return_X_y:
        return data["images"], data["target"]
    n = len(data["images"])
    missing = [k for k in _COLUMNS if np.isnan(data[k]).all()]
    survey = "SDSS" if len(missing) == len(_COLUMNS) else "DECaLS"
    framing = (
        f"{'the whole frame' if crop is None else f'the central {crop}x{crop} pixels'}"
        f"{'' if image_size in (None, crop) else f' resized to {image_size}x{image_size}'}"
    )
    descr = _DESCR.format(
        survey=survey,
        filename=path,
        n=n,
        framing=framing,
        shape=data["images"].shape,
        missing=f" ({', '.join(missing)}: NaN, absent from the file)" if missing else "",
    )
    return Bunch(
        images=data["images"],
        target=data["target"],
        target_names=np.array(GALAXY10_CLASSES),
        ra=data["ra"],
        dec=data["dec"],
        redshift=data["redshift"],
        pxscale=data["pxscale"],
        filename=str(path),
        DESCR=descr,
    )
