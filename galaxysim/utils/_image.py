"""Image framing kernels (crop, anti-aliased resize, reframe onto sky).

They live in ``utils`` so that both the loaders (``galaxysim.datasets``) and the
transformers (``galaxysim.preprocessing``) use one implementation.
"""

import numbers
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image
from sklearn.utils import check_random_state

from galaxysim.utils.validation import check_images

__all__ = ["center_crop", "frame_images", "reframe_images", "resize_images"]


def _pair(size, name):
    if isinstance(size, numbers.Integral):
        size = (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width); got {size!r}.")
    return size


def center_crop(X, size):
    """Return the central ``size`` pixels of every image (a view, no copy).

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, n_channels)
        Images.
    size : int or (int, int)
        Output height and width.

    Returns
    -------
    cropped : ndarray of shape (n_samples, size_h, size_w, n_channels)

    Examples
    --------
    >>> import numpy as np
    >>> center_crop(np.zeros((2, 256, 256, 3), np.uint8), 64).shape
    (2, 64, 64, 3)
    """
    sh, sw = _pair(size, "size")
    X = check_images(X, min_size=(sh, sw), ensure_finite=False, check_range=False)
    h, w = X.shape[1:3]
    top, left = (h - sh) // 2, (w - sw) // 2
    return X[:, top : top + sh, left : left + sw]


def resize_images(X, output_size, *, n_threads=2):
    """Anti-aliased resize of a batch of images, preserving dtype.

    Integer shrink factors use an exact area average (compiled, parallel); other factors use
    Pillow's Lanczos filter, whose support widens with the shrink factor so that
    downsampling is anti-aliased.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, n_channels)
        ``uint8`` or ``float32`` images.
    output_size : int or (int, int)
        Output height and width.
    n_threads : int, default=2
        Threads for the Pillow path (Pillow releases the GIL).

    Returns
    -------
    resized : ndarray of shape (n_samples, out_h, out_w, n_channels)
        Same dtype as ``X``; ``X`` itself when the size already matches.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    >>> resize_images(X, 2)[0, :, :, 0]
    array([[ 3,  5],
           [11, 13]], dtype=uint8)
    """
    oh, ow = _pair(output_size, "output_size")
    X = check_images(X, ensure_finite=False, check_range=False)
    n, h, w, c = X.shape
    if (h, w) == (oh, ow):
        return X
    out = np.empty((n, oh, ow, c), dtype=X.dtype)
    if h % oh == 0 and w % ow == 0:
        from galaxysim.utils._image_kernels import block_mean

        block_mean(np.ascontiguousarray(X), h // oh, w // ow, out, X.dtype == np.uint8)
        return out

    def one(i):
        out[i] = _pil_resize(X[i], oh, ow)

    with ThreadPoolExecutor(max_workers=max(1, n_threads)) as pool:
        list(pool.map(one, range(n)))
    return out


def _pil_resize(img, oh, ow):
    lanczos = Image.Resampling.LANCZOS
    if img.dtype == np.uint8 and img.shape[2] == 3:
        return np.asarray(Image.fromarray(img).resize((ow, oh), lanczos))
    # float images, or grey uint8: channel by channel in 32-bit float mode
    chans = [
        np.asarray(Image.fromarray(img[:, :, k].astype(np.float32)).resize((ow, oh), lanczos))
        for k in range(img.shape[2])
    ]
    res = np.stack(chans, axis=-1)
    if img.dtype == np.uint8:
        return np.clip(np.rint(res), 0, 255).astype(np.uint8)
    return np.clip(res, 0.0, 1.0).astype(img.dtype)


def frame_images(X, *, crop=None, image_size=64):
    """Frame images like a catalogue: centre-crop ``crop`` pixels, then resize.

    This is the framing shared by every loader: ``crop`` pixels of the source image
    are kept around the centre, then resized to ``image_size`` with anti-aliasing
    (no resize when they are equal). ``crop=None`` keeps the whole frame.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, n_channels)
        Images.
    crop : int or None, default=None
        Side of the central square to keep, in source pixels.
    image_size : int or None, default=64
        Output side; ``None`` keeps the cropped size.

    Returns
    -------
    framed : ndarray of shape (n_samples, image_size, image_size, n_channels)

    Examples
    --------
    >>> import numpy as np
    >>> frame_images(np.zeros((1, 256, 256, 3), np.uint8), crop=128, image_size=64).shape
    (1, 64, 64, 3)
    """
    if crop is not None:
        X = center_crop(X, crop)
    if image_size is None:
        return check_images(X, ensure_finite=False, check_range=False)
    return resize_images(X, image_size)


def reframe_images(
    X,
    *,
    image_size=64,
    fill_fraction=0.5,
    sky_level=0.0,
    noise_sigma=0.0,
    random_state=None,
):
    """Shrink images and pad them onto dark sky, so a frame-filling galaxy looks survey-like.

    An illustration such as the NASA/JPL-Caltech Milky Way fills its whole frame; a
    survey cutout shows the galaxy smaller, on dark, noisy sky. This resizes each image
    to ``fill_fraction * image_size`` pixels and pastes it in the centre of an
    ``image_size`` canvas at ``sky_level``, then adds Gaussian sky noise.

    Parameters
    ----------
    X : array-like of shape (n_samples, height, width, n_channels)
        Images (one image is accepted too).
    image_size : int, default=64
        Side of the output frame.
    fill_fraction : float, default=0.5
        Side of the pasted image as a fraction of the output side, in (0, 1].
    sky_level : float, default=0.0
        Background level in [0, 1].
    noise_sigma : float, default=0.0
        Standard deviation of the added sky noise, in [0, 1] units.
    random_state : int, RandomState instance or None, default=None
        Seed of the noise.

    Returns
    -------
    reframed : ndarray of shape (n_samples, image_size, image_size, n_channels)
        Same dtype as the validated input (``uint8`` or ``float32``).

    Examples
    --------
    >>> import numpy as np
    >>> out = reframe_images(np.full((32, 32, 3), 255, np.uint8), image_size=64, fill_fraction=0.5)
    >>> out.shape, int(out[0, 0, 0, 0]), int(out[0, 32, 32, 0])
    ((1, 64, 64, 3), 0, 255)
    """
    X = check_images(X)
    if not 0 < fill_fraction <= 1:
        raise ValueError(f"fill_fraction must be in (0, 1]; got {fill_fraction!r}.")
    if not 0 <= sky_level <= 1 or noise_sigma < 0:
        raise ValueError("sky_level must be in [0, 1] and noise_sigma >= 0.")
    inner = max(1, int(round(fill_fraction * image_size)))
    small = resize_images(X, inner).astype(np.float32)
    scale = 255.0 if X.dtype == np.uint8 else 1.0
    canvas = np.full(
        (len(X), image_size, image_size, X.shape[3]), sky_level * scale, dtype=np.float32
    )
    top = (image_size - inner) // 2
    canvas[:, top : top + inner, top : top + inner] = np.maximum(
        small, canvas[:, top : top + inner, top : top + inner]
    )
    if noise_sigma > 0:
        rng = check_random_state(random_state)
        canvas += rng.normal(0.0, noise_sigma * scale, size=canvas.shape).astype(np.float32)
    canvas = np.clip(canvas, 0, scale)
    if X.dtype == np.uint8:
        return np.rint(canvas).astype(np.uint8)
    return canvas
