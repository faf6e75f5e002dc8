"""Image transformers: crop, resize, flatten, reframe. None of them learns from data
beyond the image shape, and all preserve uint8/float32. ``CenterCrop``, ``Resize`` and
``Reframe`` are stateless: they transform without being fitted."""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from galaxysim.utils._image import center_crop, reframe_images, resize_images
from galaxysim.utils._memory import check_memory
from galaxysim.utils._sklearn_compat import (
    Interval,
    ParamsValidationMixin,
    Real,
    fit_context,
    positive_int,
)
from galaxysim.utils.validation import check_image_shape, check_images

__all__ = ["CenterCrop", "Crop64", "PixelFlatten", "Reframe", "Resize"]


class _ImageTransformer(ParamsValidationMixin, TransformerMixin, BaseEstimator):
    """Shared fit: validate parameters and images, record the image shape.

    Stateless subclasses (``_stateless = True``) also transform without ``fit``.
    """

    _parameter_constraints = {}
    _stateless = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.requires_fit = not self._stateless
        tags.transformer_tags.preserves_dtype = ["float32"]  # and uint8; float64 -> float32
        return tags

    def _check_params(self):
        """Checks beyond ``_parameter_constraints`` (overridden where there are any)."""

    def _validate_all_params(self):
        self._validate_params()
        self._check_params()

    @fit_context
    def fit(self, X, y=None):
        """Check the parameters and record the input image shape.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            Images.
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        self._check_params()
        X = check_images(X)
        self.image_shape_ = tuple(X.shape[1:])
        return self

    def _start_transform(self):
        """Validate the parameters of a stateless transformer, or check it is fitted."""
        if self._stateless:
            self._validate_all_params()
        else:
            check_is_fitted(self, "image_shape_")


def _check_size(value, name):
    """A positive int (its constraint) or a (height, width) tuple of positive ints."""
    if isinstance(value, tuple) and not (
        len(value) == 2
        and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in value
        )
    ):
        raise ValueError(
            f"{name} must be a positive int or a (height, width) tuple; got {value!r}."
        )


_SIZE = [positive_int(), tuple]


def _check_output_memory(X, size, bytes_per_value, what):
    """A clear error, before allocating, when ``len(X)`` images of ``size`` do not fit."""
    h, w = (size, size) if isinstance(size, numbers.Integral) else size
    per_image = int(h) * int(w) * X.shape[3] * bytes_per_value
    check_memory(
        len(X) * per_image,
        f"{what} of {len(X)} images to {h}x{w} pixels",
        per_item=(per_image, "images"),
        hint="Use a smaller output size, or transform fewer images at a time.",
    )


class CenterCrop(_ImageTransformer):
    """Keep the central ``size`` x ``size`` pixels of every image.

    Parameters
    ----------
    size : int or (int, int), default=64
        Side of the crop, in pixels.

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(height, width, n_channels)`` of the images seen in ``fit``.

    See Also
    --------
    Crop64 : the same with ``size=64``.
    Resize : anti-aliased resizing.

    Examples
    --------
    >>> import numpy as np
    >>> CenterCrop(size=32).fit_transform(np.zeros((2, 69, 69, 3), np.uint8)).shape
    (2, 32, 32, 3)
    """

    _parameter_constraints = {"size": _SIZE}
    _stateless = True

    def __init__(self, size=64):
        self.size = size

    def _check_params(self):
        _check_size(self.size, "size")

    def transform(self, X):
        """Crop the images.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            Images at least ``size`` pixels on each side.

        Returns
        -------
        X_crop : ndarray of shape (n_samples, size, size, n_channels)
            Same dtype as the validated input.
        """
        self._start_transform()
        return np.ascontiguousarray(center_crop(check_images(X), self.size))


class Crop64(CenterCrop):
    """The reference framing: the central 64 x 64 pixels (a :class:`CenterCrop`).

    ``size`` stays a parameter so that ``GridSearchCV`` can search it
    (``{"crop64__size": [48, 64]}``).

    Parameters
    ----------
    size : int, default=64
        Side of the crop, in pixels.

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(height, width, n_channels)`` of the images seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> Crop64().fit_transform(np.zeros((1, 256, 256, 3), np.uint8)).shape
    (1, 64, 64, 3)
    """

    def __init__(self, size=64):
        super().__init__(size=size)


class Resize(_ImageTransformer):
    """Anti-aliased resize to ``output_size`` (area average for integer factors).

    Parameters
    ----------
    output_size : int or (int, int), default=64
        Output side(s), in pixels.

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(height, width, n_channels)`` of the images seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> Resize(output_size=64).fit_transform(np.zeros((1, 128, 128, 3), np.uint8)).shape
    (1, 64, 64, 3)
    """

    _parameter_constraints = {"output_size": _SIZE}
    _stateless = True

    def __init__(self, output_size=64):
        self.output_size = output_size

    def _check_params(self):
        _check_size(self.output_size, "output_size")

    def transform(self, X):
        """Resize the images.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            Images of any size.

        Returns
        -------
        X_resized : ndarray of shape (n_samples, out_h, out_w, n_channels)
            Same dtype as the validated input.
        """
        self._start_transform()
        X = check_images(X)
        _check_output_memory(X, self.output_size, X.dtype.itemsize, "Resize")
        return resize_images(X, self.output_size)


class Reframe(_ImageTransformer):
    """Shrink images and pad them onto dark, noisy sky, framed like survey cutouts.

    A query that fills its frame (such as the NASA/JPL-Caltech Milky Way
    illustration) would otherwise be matched on framing rather than morphology.

    Parameters
    ----------
    image_size : int, default=64
        Output side, in pixels.
    fill_fraction : float, default=0.5
        Side of the shrunk image as a fraction of ``image_size``.
    sky_level : float, default=0.0
        Sky background in [0, 1].
    noise_sigma : float, default=0.0
        Standard deviation of the added sky noise, in [0, 1] pixel units (at most 1).
    random_state : int, RandomState instance or None, default=None
        Seed of the noise.

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(height, width, n_channels)`` of the images seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> Reframe(image_size=64).fit_transform(np.ones((1, 200, 200, 3))).shape
    (1, 64, 64, 3)
    """

    def __init__(
        self,
        image_size=64,
        *,
        fill_fraction=0.5,
        sky_level=0.0,
        noise_sigma=0.0,
        random_state=None,
    ):
        self.image_size = image_size
        self.fill_fraction = fill_fraction
        self.sky_level = sky_level
        self.noise_sigma = noise_sigma
        self.random_state = random_state

    _parameter_constraints = {
        "image_size": [positive_int()],
        "fill_fraction": [Interval(Real, 0, 1, closed="right")],
        "sky_level": [Interval(Real, 0, 1, closed="both")],
        # at 1 the noise already hides any galaxy; inf and NaN are refused
        "noise_sigma": [Interval(Real, 0, 1, closed="both")],
        "random_state": ["random_state"],
    }
    _stateless = True

    def transform(self, X):
        """Reframe the images.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            Images.

        Returns
        -------
        X_framed : ndarray of shape (n_samples, image_size, image_size, n_channels)
        """
        self._start_transform()
        X = check_images(X)
        # the float32 canvas, float64 noise and the output
        bytes_per_value = 4 + 8 * (self.noise_sigma > 0) + X.dtype.itemsize
        _check_output_memory(X, self.image_size, bytes_per_value, "Reframe")
        return reframe_images(
            X,
            image_size=self.image_size,
            fill_fraction=self.fill_fraction,
            sky_level=self.sky_level,
            noise_sigma=self.noise_sigma,
            random_state=self.random_state,
        )


class PixelFlatten(_ImageTransformer):
    """Flatten images to rows ``(n_samples, height * width * n_channels)``, dtype kept.

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(height, width, n_channels)`` of the images seen in ``fit``, used by
        :meth:`inverse_transform`.

    Examples
    --------
    >>> import numpy as np
    >>> flat = PixelFlatten().fit(np.zeros((2, 4, 4, 3), np.uint8))
    >>> rows = flat.transform(np.zeros((2, 4, 4, 3), np.uint8))
    >>> rows.shape, rows.dtype
    ((2, 48), dtype('uint8'))
    >>> flat.inverse_transform(rows).shape
    (2, 4, 4, 3)
    """

    def transform(self, X):
        """Flatten images to rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            Images of the shape seen in ``fit``.

        Returns
        -------
        rows : ndarray of shape (n_samples, height * width * n_channels)
        """
        check_is_fitted(self, "image_shape_")
        X = check_images(X)
        check_image_shape(X, self.image_shape_)
        return np.ascontiguousarray(X).reshape(len(X), -1)

    def inverse_transform(self, X):
        """Turn rows back into images.

        Parameters
        ----------
        X : array-like of shape (n_samples, height * width * n_channels)
            Rows.

        Returns
        -------
        images : ndarray of shape (n_samples, height, width, n_channels)
        """
        check_is_fitted(self, "image_shape_")
        X = np.asarray(X)
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_) or np.iscomplexobj(X):
            raise TypeError(f"Rows must be real numbers (pixel values); got dtype {X.dtype}.")
        n_features = int(np.prod(self.image_shape_))
        if X.ndim != 2 or X.shape[1] != n_features:
            raise ValueError(
                f"Expected rows of {n_features} values (images {self.image_shape_}); "
                f"got shape {X.shape}."
            )
        return X.reshape((len(X), *self.image_shape_))
