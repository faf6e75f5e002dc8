"""The one validator for image batches, shared by every image estimator and loader."""

import numbers

import numpy as np

__all__ = ["check_images", "check_image_shape", "check_labels"]

_FLOAT_RANGE_TOL = 1e-6


def check_images(
    X,
    *,
    name="X",
    allow_single=True,
    min_size=None,
    ensure_finite=True,
    check_range=True,
):
    """Validate images and return them as a batch ``(n_samples, height, width, n_channels)``.

    Accepted input: a batch ``(n, H, W, C)`` with 1 or 3 channels; one image ``(H, W, C)``
    whose last axis has 1 or 3 entries; one grey image ``(H, W)``; a list of same-shaped
    images. A 3-D array whose last axis is not 1 or 3 is read as a batch of grey images
    ``(n, H, W)``, except that with ``allow_single`` a last axis of 2 or 4 is refused as
    ambiguous (one grey+alpha or RGBA image, or grey images 2 or 4 pixels wide?). Masked
    arrays are refused: their masks would be ignored.

    Dtypes are preserved where they are cheap: ``uint8`` stays ``uint8`` (0-255) and
    ``float32`` stays ``float32`` (in [0, 1]). ``float16``/``float64`` become ``float32``;
    other integer arrays with values in 0-255 become ``uint8``. A catalogue is never
    upcast to ``float64``.

    Parameters
    ----------
    X : array-like
        Images.
    name : str, default="X"
        Name used in error messages.
    allow_single : bool, default=True
        Accept a single image (``(H, W)`` or ``(H, W, C)``) and add a batch axis.
    min_size : int or (int, int), default=None
        Smallest accepted ``(height, width)``; smaller images raise a ``ValueError``
        that suggests resizing.
    ensure_finite : bool, default=True
        Reject NaN and infinite pixel values.
    check_range : bool, default=True
        Reject float pixel values outside [0, 1].

    Returns
    -------
    images : ndarray of shape (n_samples, height, width, n_channels)
        ``uint8`` or ``float32``; a view of ``X`` when no conversion was needed.

    Raises
    ------
    ValueError
        Empty input, wrong number of dimensions or channels, NaN/inf pixels,
        floats outside [0, 1], integers outside 0-255, images below ``min_size``.
    TypeError
        Non-numeric input, or a masked array.

    Examples
    --------
    >>> import numpy as np
    >>> check_images(np.zeros((8, 8, 3), dtype=np.uint8)).shape
    (1, 8, 8, 3)
    >>> check_images(np.zeros((2, 8, 8))).dtype
    dtype('float32')
    >>> check_images(np.full((1, 4, 4, 3), 2.0))
    Traceback (most recent call last):
    ...
    ValueError: X has float pixel values outside [0, 1] (48 of 48; min 2, max 2). Pass uint8 images (0-255), or scale float images to [0, 1] (for example X / 255).
    """
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError(f"{name} is empty: got 0 images. Pass at least one image.")
        shapes = {np.shape(x) for x in X}
        if len(shapes) > 1:
            raise ValueError(
                f"{name} is a list of images of different shapes {sorted(shapes)[:4]}; "
                "crop or resize them to one shape first (see galaxysim.preprocessing.Resize)."
            )
    if isinstance(X, np.ma.MaskedArray):
        # np.asarray would drop the mask and use the hidden values as pixels
        raise TypeError(
            f"{name} is a masked array; galaxysim does not use masks, so its masked pixels "
            f"would be read as they are. Fill them first, for example {name}.filled(0)."
        )
    X = np.asarray(X)
    if X.dtype == object or not (
        np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must be a numeric array of images; got dtype {X.dtype}.")
    if np.iscomplexobj(X):
        raise TypeError(f"{name} must hold real pixel values; got complex dtype {X.dtype}.")

    if X.ndim == 2:
        if not allow_single:
            raise ValueError(_ndim_message(name, X.shape))
        X = X[np.newaxis, :, :, np.newaxis]
    elif X.ndim == 3:
        if X.shape[-1] in (1, 3):
            if not allow_single:
                raise ValueError(_ndim_message(name, X.shape))
            X = X[np.newaxis]
        elif allow_single and X.shape[-1] in (2, 4):
            # more likely one grey+alpha or RGBA image than grey images 2 or 4 pixels wide
            h, w, c = X.shape
            raise ValueError(
                f"{name} has shape {X.shape}: one {h}x{w} image with {c} channels "
                f"({'grey and alpha' if c == 2 else 'RGBA'}?), or {h} grey images {w} "
                f"pixels wide? galaxysim expects RGB or grey images: drop the alpha channel "
                f"with {name}[..., :{c - 1}], or pass grey images with a channel axis, "
                f"{name}[..., np.newaxis]."
            )
        else:
            X = X[..., np.newaxis]
    elif X.ndim != 4:
        raise ValueError(_ndim_message(name, X.shape))

    n, h, w, c = X.shape
    if n == 0 or h == 0 or w == 0:
        raise ValueError(f"{name} is empty: got shape {X.shape}. Pass at least one image.")
    if c == 4:
        raise ValueError(
            f"{name} has 4 channels (RGBA?); galaxysim expects RGB or grey images. "
            f"Drop the alpha channel with {name}[..., :3]."
        )
    if c not in (1, 3):
        raise ValueError(
            f"{name} has {c} channels; expected 1 (grey) or 3 (RGB), channels last "
            "as (n_samples, height, width, n_channels). If your images are channels-first, "
            "use np.moveaxis(X, 1, -1)."
        )
    if min_size is not None:
        mh, mw = (min_size, min_size) if isinstance(min_size, numbers.Integral) else min_size
        if h < mh or w < mw:
            raise ValueError(
                f"{name} images are {h}x{w} pixels, smaller than the required {mh}x{mw}. "
                f"Resize them first (galaxysim.preprocessing.Resize(output_size={max(mh, mw)})) "
                "or choose a smaller crop."
            )
    return _convert_dtype(X, name, ensure_finite=ensure_finite, check_range=check_range)


def _ndim_message(name, shape):
    return (
        f"{name} has shape {shape}; expected images as (n_samples, height, width, n_channels)"
        ", or one image as (height, width, n_channels) or (height, width). "
        "Reshape flat rows back to images with PixelFlatten().inverse_transform."
    )


def _convert_dtype(X, name, *, ensure_finite, check_range):
    if X.dtype == np.uint8:
        return X
    if X.dtype == np.bool_:
        return X.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(X.dtype, np.integer):
        lo, hi = X.min(), X.max()
        if lo < 0 or hi > 255:
            n_out = int(np.count_nonzero((X < 0) | (X > 255)))
            raise ValueError(
                f"{name} has integer pixel values outside 0-255 ({n_out} of {X.size}; min "
                f"{lo}, max {hi}). Rescale them to uint8 (0-255) or to floats in [0, 1] (16-bit "
                f"images: {name} / 65535)."
            )
        return X.astype(np.uint8)
    if not (ensure_finite or check_range):
        return X.astype(np.float32, copy=False)
    # min/max need no temporary array; NaN propagates through them and inf is an extreme.
    # Taken before the cast: a float64 1e300 is out of range, not the inf it becomes.
    lo, hi = float(np.min(X)), float(np.max(X))
    finite = np.isfinite(lo) and np.isfinite(hi)
    if ensure_finite and not finite:
        raise ValueError(_non_finite_message(X, name))
    if check_range:
        if not finite:  # NaN/inf allowed here: check the range of the other values
            lo, hi = float(np.fmin.reduce(X, axis=None)), float(np.fmax.reduce(X, axis=None))
        if lo < -_FLOAT_RANGE_TOL or hi > 1 + _FLOAT_RANGE_TOL:
            n_out = int(np.count_nonzero((X < -_FLOAT_RANGE_TOL) | (X > 1 + _FLOAT_RANGE_TOL)))
            raise ValueError(
                f"{name} has float pixel values outside [0, 1] ({n_out} of {X.size}; min "
                f"{lo:.4g}, max {hi:.4g}). Pass uint8 images (0-255), or scale float images to [0, 1] "
                f"(for example {name} / 255)."
            )
    return X.astype(np.float32, copy=False)


def _non_finite_message(X, name):
    """Say how many NaN and infinite values there are, and where (only on error)."""
    n_nan = int(np.count_nonzero(np.isnan(X)))
    n_inf = int(np.count_nonzero(np.isinf(X)))
    bad_images = np.flatnonzero(~np.isfinite(X).reshape(len(X), -1).all(axis=1))
    what = " and ".join(
        f"{n} {kind} pixel value{'s' if n > 1 else ''}"
        for n, kind in ((n_nan, "NaN"), (n_inf, "infinite"))
        if n
    )
    shown = ", ".join(map(str, bad_images[:5])) + (", ..." if len(bad_images) > 5 else "")
    return (
        f"{name} contains {what}, in {len(bad_images)} of {len(X)} images (index "
        f"{shown}). Fill them (for example np.nan_to_num({name}, nan=0.0, posinf=1.0, "
        f"neginf=0.0)) or drop those images."
    )


_CHANNELS_FIRST_HINT = (
    " (A 3-D array whose last axis is not 1 or 3 is read as a batch of grey images (n, "
    "height, width): one channels-first image (3, height, width) needs np.moveaxis(x, 0, -1).)"
)


def check_image_shape(X, expected_shape, *, name="X", fitted_on="the catalogue"):
    """Check that images ``X`` have the ``(height, width, n_channels)`` seen in ``fit``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, height, width, n_channels)
        Validated images.
    expected_shape : tuple of int
        ``(height, width, n_channels)`` recorded at fit time.
    name : str, default="X"
        Name used in the error message.
    fitted_on : str, default="the catalogue"
        What the estimator was fitted on, for the message.

    Raises
    ------
    ValueError
        When the shapes differ, naming both and the step that fixes it.

    Examples
    --------
    >>> import numpy as np
    >>> check_image_shape(np.zeros((1, 32, 32, 3)), (64, 64, 3))
    Traceback (most recent call last):
    ...
    ValueError: X images are 32x32x3 but the estimator was fitted on 64x64x3 images of the catalogue. Put a Resize(output_size=64) or CenterCrop(size=64) step before it (galaxysim.preprocessing), or reframe the query with galaxysim.preprocessing.Reframe.
    """
    got = tuple(X.shape[1:])
    expected = tuple(expected_shape)
    if got == expected:
        return
    if got[:2] == expected[:2]:
        raise ValueError(
            f"{name} images have {got[2]} channels but the estimator was fitted on "
            f"{expected[2]}-channel images of {fitted_on}. Convert them to "
            f"{'RGB' if expected[2] == 3 else 'grey'} first." + _CHANNELS_FIRST_HINT * (got[2] == 1)
        )
    raise ValueError(
        f"{name} images are {'x'.join(map(str, got))} but the estimator was fitted on "
        f"{'x'.join(map(str, expected))} images of {fitted_on}. Put a "
        f"Resize(output_size={expected[0]}) or CenterCrop(size={expected[0]}) step before it "
        "(galaxysim.preprocessing), or reframe the query with galaxysim.preprocessing.Reframe."
        + _CHANNELS_FIRST_HINT
        * (got[2] == 1 and expected[2] == 3)
    )


def check_labels(y, n_samples, *, name="y"):
    """Validate a 1-D label vector of length ``n_samples``.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels; any hashable dtype.
    n_samples : int
        Expected length.
    name : str, default="y"
        Name used in error messages.

    Returns
    -------
    y : ndarray of shape (n_samples,)

    Examples
    --------
    >>> check_labels([0, 1, 1], 3)
    array([0, 1, 1])
    """
    if y is None:
        raise ValueError(f"{name} is None; this estimator needs labels for a supervised fit.")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per image); got shape {y.shape}.")
    if len(y) != n_samples:
        raise ValueError(f"{name} has {len(y)} labels but there are {n_samples} images.")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinite labels; drop those images.")
    if y.dtype == object:
        missing = [i for i, v in enumerate(y.tolist()) if _is_missing(v)]
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            raise ValueError(
                f"{name} contains {len(missing)} missing labels (None or NaN, at index "
                f"{shown}); give every image a label, or drop those images."
            )
    return y


def _is_missing(value):
    """None, or a float NaN/inf (as object arrays from pandas or CSV readers hold them)."""
    if value is None:
        return True
    return isinstance(value, (float, np.floating)) and not np.isfinite(value)
