"""The one image reader: a file (JPEG/PNG/TIFF/..., FITS with astropy) to RGB uint8 pixels.

Every path that reads an image file (``load_image_folder``, the CLI's ``--query``, the
Milky Way illustration) goes through :func:`read_image`, so one file gives the same
pixels whichever loads it.
"""

import importlib.util
import math
import numbers
import os
import struct

import numpy as np
from PIL import Image, UnidentifiedImageError

from galaxysim.utils._io import check_regular_file

__all__ = ["FITS_EXTENSIONS", "ImageReadError", "ImageTooLargeError", "is_fits", "read_image"]

FITS_EXTENSIONS = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
_PERCENTILES = (0.005, 0.995)  # the robust range mapped to 0-255 for deep images
_CHUNK = 1 << 18  # pixels per block (rescaling, array copies): bounds the temporaries
_DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError)


class ImageReadError(ValueError):
    """A file that cannot be decoded as an image (corrupt, truncated, not an image).

    ``path`` is the file and ``reason`` a short description without the path, for
    callers that phrase their own message (a CLI, a summary of skipped files).
    """

    def __init__(self, message, *, path, reason):
        super().__init__(message)
        self.path = path
        self.reason = reason


class ImageTooLargeError(ImageReadError):
    """An image whose declared size is above the decompression-bomb limit.

    ``size`` is its ``(width, height)`` and ``limit`` the largest number of pixels
    accepted.
    """

    def __init__(self, message, *, path, reason, size, limit):
        super().__init__(message, path=path, reason=reason)
        self.size = size
        self.limit = limit


def is_fits(path):
    """Whether ``path`` is named like a FITS file (``.fits``, ``.fit``, ``.fts``, gzipped)."""
    return os.fspath(path).lower().endswith(FITS_EXTENSIONS)


def _has_astropy():
    return importlib.util.find_spec("astropy") is not None


def default_max_pixels():
    """Twice ``PIL.Image.MAX_IMAGE_PIXELS``: the size Pillow refuses as a decompression bomb.

    ``None`` (no limit) when the program set ``PIL.Image.MAX_IMAGE_PIXELS = None``.
    """
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def read_image(path, *, crop=None, max_pixels=None, draft_size=None):
    """Decode an image file into RGB ``uint8`` pixels of shape ``(height, width, 3)``.

    - 8-bit images are kept as they are; grey, palette, RGBA/LA (alpha dropped),
      CMYK and the other Pillow modes are converted to RGB.
    - Deeper images (16/32-bit integer or float grey PNG/TIFF, FITS) are rescaled
      to 0-255 robustly: their 0.5th-99.5th percentile range over the whole frame
      (NaN and inf counted as 0) is mapped to 0-255 and the rest clipped. A constant
      image becomes black.
    - FITS files (``.fits``, ``.fit``, ``.fts``, gzipped too) are read with astropy
      when it is installed: a 2-D image, or a cube of 1 or 3 planes (channels first or
      last).

    The size is checked from the file's header before decoding, against
    ``max_pixels``, so an image too large (a decompression bomb) costs no memory.
    ``crop`` is taken before the conversion to RGB, so only the cropped pixels are
    converted; the result equals the central ``crop`` pixels of the uncropped image
    (deep images are scaled on the whole frame either way).

    Parameters
    ----------
    path : str or path-like
        Image file. Anything but a regular file (a folder, a named pipe, a device)
        is refused before it is opened.
    crop : int or None, default=None
        Side of the central square to keep, in decoded pixels; ``None`` keeps the
        whole frame.
    max_pixels : int or None, default=None
        Largest image accepted, in pixels (width x height). ``None`` uses twice
        ``PIL.Image.MAX_IMAGE_PIXELS``, the size Pillow itself refuses as a possible
        decompression bomb (178,956,970 pixels, about 13,400 x 13,400, unless your
        program changed it; no limit when it is ``None``). Pass a larger number to
        read larger images you trust. Pillow's own check and its
        ``DecompressionBombWarning`` are replaced by this one; Pillow's global
        setting is read, never changed.
    draft_size : (int, int) or None, default=None
        JPEG only: decode at the smallest reduced scale (1/2, 1/4 or 1/8) that keeps
        at least this ``(width, height)``, which is faster and smaller when the image
        is shrunk afterwards anyway. Other formats ignore it.

    Returns
    -------
    image : ndarray of shape (height, width, 3), dtype uint8

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    IsADirectoryError
        ``path`` is a folder.
    ValueError
        ``path`` is not a regular file; ``crop`` is larger than the image.
    ImageTooLargeError
        The image has more than ``max_pixels`` pixels (a ``ValueError``; the message
        gives its size and how to allow it).
    ImageReadError
        The file is corrupt, truncated, not an image, or a FITS file without astropy
        (a ``ValueError`` naming the file).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "deep.png")
    >>> Image.fromarray(np.arange(0, 60000, 6, np.uint16).reshape(100, 100)).save(path)
    >>> img = read_image(path)
    >>> img.shape, img.dtype, int(img.min()), int(img.max())
    ((100, 100, 3), dtype('uint8'), 0, 255)
    >>> read_image(path, crop=10).shape
    (10, 10, 3)
    >>> try:
    ...     read_image(path, max_pixels=5000)
    ... except ValueError as exc:
    ...     print(exc)
    Image .../deep.png is 100x100 pixels (10,000 pixels), more than the 5,000 pixels accepted (a guard against decompression bombs). If you trust the file, pass a larger max_pixels=, or shrink the image first.
    """
    for name, value in (("crop", crop), ("max_pixels", max_pixels)):
        if value is not None and (
            not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1
        ):
            raise ValueError(f"{name} must be a positive int or None; got {value!r}.")
    if max_pixels is None:
        max_pixels = default_max_pixels()
    path = check_regular_file(path, "Image")
    if is_fits(path):
        return _read_fits(path, crop, max_pixels)
    return _read_pillow(path, crop, max_pixels, draft_size)


def _unreadable(path, exc):
    if isinstance(exc, OSError) and exc.errno is not None:  # the system's: no permission, ...
        reason = f"{exc.strerror or exc}"
    else:
        reason = f"the file is corrupt, truncated or not an image ({type(exc).__name__}: {exc})"
    return ImageReadError(
        f"Cannot read image {path}: {reason}. Replace or delete it.", path=path, reason=reason
    )


def _check_size(path, width, height, max_pixels):
    if max_pixels is None or width * height <= max_pixels:
        return
    reason = f"{width}x{height} pixels, more than the {max_pixels:,} pixels accepted"
    raise ImageTooLargeError(
        f"Image {path} is {width}x{height} pixels ({width * height:,} pixels), more than "
        f"the {max_pixels:,} pixels accepted (a guard against decompression bombs). If "
        "you trust the file, pass a larger max_pixels=, or shrink the image first.",
        path=path,
        reason=reason,
        size=(width, height),
        limit=max_pixels,
    )


def _check_crop(path, crop, height, width):
    if crop is not None and (crop > height or crop > width):
        raise ValueError(
            f"crop={crop} is larger than image {path} ({height}x{width} pixels). Choose a "
            "crop of at most the smallest image side, or crop=None to keep the whole frame."
        )


def _crop_box(crop, height, width):
    """(top, left, bottom, right) of the central crop, as ``center_crop`` takes it."""
    if crop is None:
        return 0, 0, height, width
    top, left = (height - crop) // 2, (width - crop) // 2
    return top, left, top + crop, left + crop


def _open_pillow(path):
    """``Image.open`` without Pillow's decompression-bomb check (``read_image`` makes it).

    Pillow warns above ``MAX_IMAGE_PIXELS`` and raises above twice that, from inside
    ``Image.open`` and with a message that names neither the file nor a fix; silencing
    the warning would mean changing the process's warning filters. This tries Pillow's
    registered openers (``Image.OPEN``, in ``Image.ID`` order) as ``Image.open`` does.
    """
    Image.init()
    with open(path, "rb") as f:
        prefix = f.read(16)
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        try:
            result = accept(prefix) if accept else True
            # a str means "this format, but unsupported": try the next one
            if result and not isinstance(result, str):
                return factory(os.fspath(path))  # given a path, the plugin owns the file
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue
    raise UnidentifiedImageError(f"cannot identify image file {os.fspath(path)!r}")


def _read_pillow(path, crop, max_pixels, draft_size):
    try:
        im = _open_pillow(path)
    except _DECODE_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    with im:
        _check_size(path, *im.size, max_pixels)
        if draft_size is not None:
            im.draft("RGB", tuple(int(s) for s in draft_size))  # JPEG only, else a no-op
        width, height = im.size
        _check_crop(path, crop, height, width)
        try:
            return _decode(im, _crop_box(crop, height, width))
        except (Image.DecompressionBombError, *_DECODE_ERRORS) as exc:
            raise _unreadable(path, exc) from exc


def _decode(im, box):
    """Decode ``im`` and return ``box`` of it as RGB uint8, holding few full-size copies."""
    top, left, bottom, right = box
    whole = (bottom - top, right - left) == (im.height, im.width)
    im.load()
    if im.mode.startswith(("I", "F")):
        # deep grey (16/32-bit int, float): scale on the whole frame, then crop
        data = _pixels(im)
        im.close()  # the decoded frame now lives in `data` only
        return _to_uint8(data, (slice(top, bottom), slice(left, right)))
    # crop before converting (fewer pixels), unless the box is above Pillow's own limit
    # (Image.crop warns then)
    limit = Image.MAX_IMAGE_PIXELS
    pillow_crop = not whole and (limit is None or (bottom - top) * (right - left) <= limit)
    if pillow_crop:
        cropped = im.crop((left, top, right, bottom))
        im.close()
        im = cropped
    if im.mode == "1":
        grey = im.convert("L")
        im.close()
        im = grey
    if im.mode == "L":
        grey = _pixels(im)
        im.close()
        rgb = _grey_to_rgb(grey)
    else:
        if im.mode != "RGB":
            converted = im.convert("RGB")
            im.close()
            im = converted
        rgb = _pixels(im)
        im.close()
    if not whole and not pillow_crop:
        rgb = np.ascontiguousarray(rgb[top:bottom, left:right])
    return rgb


def _read_fits(path, crop, max_pixels):
    if not _has_astropy():
        reason = "FITS files need astropy (pip install astropy)"
        raise ImageReadError(f"Cannot read {path}: {reason}.", path=path, reason=reason)
    from astropy.io import fits

    try:
        data = fits.getdata(path)  # memory-mapped where the file allows it
    except Exception as exc:  # astropy raises many types for a bad file
        raise _unreadable(path, exc) from exc
    data = np.squeeze(np.asarray(data))
    if data.ndim == 3 and data.shape[0] in (1, 3) and data.shape[-1] not in (1, 3):
        data = np.moveaxis(data, 0, -1)  # FITS cubes are usually channels first
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] not in (1, 3)):
        reason = f"it holds an array of shape {data.shape}, not an image"
        raise ImageReadError(f"Cannot read FITS file {path}: {reason}.", path=path, reason=reason)
    if data.dtype.kind not in "uif":
        reason = f"its data are of type {data.dtype}, not numbers"
        raise ImageReadError(f"Cannot read FITS file {path}: {reason}.", path=path, reason=reason)
    height, width = data.shape[:2]
    _check_size(path, width, height, max_pixels)
    _check_crop(path, crop, height, width)
    top, left, bottom, right = _crop_box(crop, height, width)
    return _to_uint8(data, (slice(top, bottom), slice(left, right)))


def _pixels(im):
    """``np.asarray(im)``, band by band into one array.

    ``np.asarray`` goes through ``im.tobytes()``, which joins encoded chunks: two
    transient copies of the whole image on top of Pillow's own.
    """
    width, height = im.size
    limit = Image.MAX_IMAGE_PIXELS  # Image.crop warns above it
    step = max(1, min(_CHUNK, limit or _CHUNK) // max(1, width))
    first = np.asarray(im.crop((0, 0, width, min(step, height))))
    out = np.empty((height, *first.shape[1:]), dtype=first.dtype)
    out[: len(first)] = first
    for r in range(len(first), height, step):
        out[r : r + step] = np.asarray(im.crop((0, r, width, min(r + step, height))))
    return out


def _grey_to_rgb(grey):
    out = np.empty((*grey.shape[:2], 3), dtype=np.uint8)
    out[...] = grey.reshape(*grey.shape[:2], 1)
    return out


def _robust_range(data):
    """The 0.5th and 99.5th percentiles of ``data`` (NaN/inf as 0), as ``np.percentile``.

    16-bit and smaller unsigned integers go through a histogram (no copy of the
    image); others through one partitioned copy in their own dtype.
    """
    n = data.size
    positions = [q * (n - 1) for q in _PERCENTILES]
    if data.dtype.kind == "u" and data.dtype.itemsize <= 2:
        counts = np.zeros(1 << (8 * data.dtype.itemsize), dtype=np.int64)
        for block in _row_blocks(data):
            counts += np.bincount(block.reshape(-1), minlength=len(counts))
        cumulative = np.cumsum(counts)

        def value(k):
            return float(np.searchsorted(cumulative, k, side="right"))

    else:
        flat = np.array(data, copy=True).reshape(-1)
        if flat.dtype.kind == "f":
            np.nan_to_num(flat, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        ks = sorted({k for p in positions for k in (math.floor(p), min(math.floor(p) + 1, n - 1))})
        flat.partition(ks)

        def value(k):
            return float(flat[k])

    out = []
    for p in positions:
        j = math.floor(p)
        a, b = value(j), value(min(j + 1, n - 1))
        out.append(a + (b - a) * (p - j))
    return out


def _row_blocks(data, region=(slice(None), slice(None))):
    """Blocks of rows of ``data[region]`` of about ``_CHUNK`` pixels each (views)."""
    part = data[region]
    step = max(1, _CHUNK // max(1, int(np.prod(part.shape[1:]))))
    for r in range(0, part.shape[0], step):
        yield part[r : r + step]


def _to_uint8(data, region):
    """Map the robust range of the whole ``data`` to 0-255; return ``data[region]`` as RGB."""
    lo, hi = _robust_range(data)
    height = region[0].stop - region[0].start
    width = region[1].stop - region[1].start
    channels = data.shape[2] if data.ndim == 3 else 1
    out = np.zeros((height, width, 3), dtype=np.uint8)
    if hi <= lo:
        return out
    scale = 1.0 / (hi - lo)
    lut = None
    if data.dtype.kind == "u" and data.dtype.itemsize <= 2:
        lut = _scale(np.arange(1 << (8 * data.dtype.itemsize), dtype=np.float64), lo, scale)
    r = 0
    for block in _row_blocks(data, region):
        if lut is not None:
            pixels = lut[block]
        else:
            pixels = block.astype(np.float64)
            if pixels.dtype.kind == "f":
                np.nan_to_num(pixels, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            pixels = _scale(pixels, lo, scale)
        out[r : r + len(block)] = pixels.reshape(len(block), width, channels)
        r += len(block)
    return out


def _scale(values, lo, scale):
    """float64 values -> uint8: (values - lo) * scale clipped to [0, 1], times 255, rounded."""
    values -= lo
    values *= scale
    np.clip(values, 0.0, 1.0, out=values)
    values *= 255.0
    return np.rint(values, out=values).astype(np.uint8)
