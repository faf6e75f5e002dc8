"""Image a query as a catalogue's survey would: sky, noise, PSF, colour and galaxy size.

:class:`SurveyImager` learns, from the catalogue's own framed images, how that
catalogue images galaxies, and re-images any query (an illustration, a model, a
cutout from another survey) the same way, so that a search compares morphology rather
than framing, depth, resolution or colour balance.

Everything is measured on the pixel values as stored (``[0, 1]`` scale), after
whatever stretch the survey's colour images use: the matching is of appearance, not
of calibrated flux.
"""

import math
import zlib

import numpy as np
from PIL import Image
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from galaxysim.utils._sklearn_compat import (
    Interval,
    ParamsValidationMixin,
    Real,
    fit_context,
    positive_int,
    positive_real,
)
from galaxysim.utils.validation import check_images, check_labels

__all__ = ["SurveyImager"]

_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # FWHM of a Gaussian, in sigmas
_CLIP_STD = 0.9866  # std of a normal truncated at +-3 sigma, in sigmas
_QUANT = 0.5 / 255  # half a grey level: the noise floor of 8-bit images
_SNR = 10.0  # a compact source peaks this many noise sigmas above its surroundings
_PSF_QUANTILE = 0.2  # the PSF is the width of the sharpest fifth of compact sources
_CHUNK = 256  # images per block in fit
_MIN_SIDE = 8


# ------------------------------------------------------------------ robust statistics
def _robust_std(V, axis):
    """Standard deviation of ``V`` after 3-sigma clipping around the median (MAD).

    Continuous-valued even on 8-bit data (where the MAD itself moves by whole grey
    levels), and blind to the few stars or neighbours in a frame's border.

    Returns
    -------
    std, median : ndarrays with ``axis`` removed
    """
    med = np.median(V, axis=axis, keepdims=True)
    dev = np.abs(V - med)
    mad = 1.4826 * np.median(dev, axis=axis, keepdims=True)
    keep = dev <= 3.0 * np.maximum(mad, _QUANT)
    cnt = np.maximum(keep.sum(axis=axis), 1)
    Vk = np.where(keep, V - med, 0.0)
    var = (Vk * Vk).sum(axis=axis) / cnt - (Vk.sum(axis=axis) / cnt) ** 2
    std = np.sqrt(np.maximum(var, 0.0)) / _CLIP_STD
    return std.astype(np.float32), np.squeeze(med, axis=axis)


def _border_width(h, w, border):
    return int(border) if border is not None else max(2, min(h, w) // 16)


def _border_mask(h, w, b):
    m = np.zeros((h, w), dtype=bool)
    m[:b], m[-b:], m[:, :b], m[:, -b:] = True, True, True, True
    return m


def _sky_and_noise(X, b):
    """Per image and channel: sky (median of the border ring) and its noise sigma."""
    ring = X[:, _border_mask(*X.shape[1:3], b)]  # (n, n_border, C)
    noise, sky = _robust_std(ring, axis=1)
    return sky.astype(np.float32), noise


def _neighbour_noise(X, b):
    """Per image and channel: noise sigma from differences of neighbouring border pixels.

    Equal to the pixel noise for white noise, smaller for correlated noise: the ratio
    gives the correlation of neighbouring pixels.
    """
    top = np.concatenate([X[:, :b], X[:, -b:]], axis=1)
    side = np.concatenate([X[:, :, :b], X[:, :, -b:]], axis=2)
    d = np.concatenate(
        [
            (top[:, :, 1:] - top[:, :, :-1]).reshape(len(X), -1, X.shape[3]),
            (side[:, 1:] - side[:, :-1]).reshape(len(X), -1, X.shape[3]),
        ],
        axis=1,
    )
    return _robust_std(d, axis=1)[0] / np.float32(math.sqrt(2.0))


def _smooth(L, sigma):
    """Gaussian blur of each image of a stack ``(n, h, w)`` or ``(n, h, w, C)``."""
    from scipy.ndimage import gaussian_filter

    if sigma <= 0:
        return L
    s = (0, sigma, sigma) + (0,) * (L.ndim - 3)
    return gaussian_filter(L, s, mode="nearest", truncate=3.0)


def _stack_structure():
    """4-connectivity within each image, none across the images of a stack."""
    from scipy.ndimage import generate_binary_structure

    st = np.zeros((3, 3, 3), dtype=bool)
    st[1] = generate_binary_structure(2, 1)
    return st


# ------------------------------------------------------------------ central galaxy
def _central_source(L, threshold, sources=None, search=0.125):
    """Find the central galaxy of each image and measure it.

    The sky-subtracted luminance ``L`` (n, h, w) is smoothed by a 1 px Gaussian and
    thresholded at ``threshold`` (per image); compact sources away from the centre
    (``sources``, from :func:`_compact_sources`: stars, mostly) are masked out to where
    their light falls below the threshold, so that they neither join nor brighten the
    galaxy. The central galaxy is the connected region holding the brightest smoothed
    pixel within ``search * min(h, w)`` of the frame centre, grown by 2 px to take in
    its faint outskirts.

    Returns
    -------
    cy, cx : ndarray of shape (n,)
        Flux-weighted centroid (pixel-index coordinates), NaN where none was found.
    r_e : ndarray of shape (n,)
        Half-light radius in pixels: the radius around the centroid of the circle that
        holds half the region's flux.
    """
    from scipy.ndimage import binary_dilation, label

    n, h, w = L.shape
    Ls = _smooth(L, 1.0)
    st = _stack_structure()
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    r0 = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    central = r0 <= max(1.5, search * min(h, w))
    masked = _source_masks(sources, threshold, central, (n, h, w))
    lab, _ = label((Ls > threshold[:, None, None]) & ~masked, st)
    j = np.where(central, Ls, -np.inf).reshape(n, -1).argmax(axis=1)
    cl = lab.reshape(n, -1)[np.arange(n), j]
    found = cl > 0
    M = (lab == cl[:, None, None]) & found[:, None, None]
    M = binary_dilation(M, st, iterations=2) & ~masked
    # unclipped: clipping the noise at 0 would add flux at large radii
    F = np.where(M, L, 0.0).astype(np.float32)
    tot = F.sum(axis=(1, 2))
    found &= tot > 0
    safe = np.where(found, tot, 1.0)
    Fp = np.maximum(F, 0.0)  # centroid weights
    tp = np.maximum(Fp.sum(axis=(1, 2)), 1e-12)
    cy = np.where(found, (Fp * yy).sum(axis=(1, 2)) / tp, np.nan)
    cx = np.where(found, (Fp * xx).sum(axis=(1, 2)) / tp, np.nan)
    R = np.hypot(
        yy[None] - np.nan_to_num(cy)[:, None, None], xx[None] - np.nan_to_num(cx)[:, None, None]
    ).reshape(n, -1)
    order = np.argsort(R, axis=1)
    Rs = np.take_along_axis(R, order, axis=1)
    cf = np.cumsum(np.take_along_axis(F.reshape(n, -1), order, axis=1), axis=1)
    half = 0.5 * safe
    k = np.clip(np.argmax(cf >= half[:, None], axis=1), 1, h * w - 1)  # first crossing
    rows = np.arange(n)
    c0, c1 = cf[rows, k - 1], cf[rows, k]
    t = np.clip((half - c0) / np.maximum(c1 - c0, 1e-12), 0.0, 1.0)
    r_e = Rs[rows, k - 1] + t * (Rs[rows, k] - Rs[rows, k - 1])
    r_e = np.where(found, np.maximum(r_e, 0.5), np.nan)
    return cy, cx, r_e


def _source_masks(sources, threshold, central, shape):
    """Pixels of the compact ``sources`` outside the ``central`` region, out to the
    radius where a Gaussian of their amplitude and width falls below ``threshold``."""
    masked = np.zeros(shape, dtype=bool)
    if sources is None or len(sources[0]) == 0:
        return masked
    n, h, w = shape
    for i, y, x, amp, fwhm in zip(*sources[:5], strict=True):
        if central[y, x]:
            continue  # the galaxy's own core, or a star on it: cannot be told apart
        ratio = max(float(amp) / float(threshold[i]), 1.0)
        r = fwhm / _FWHM * math.sqrt(2.0 * math.log(ratio)) + 1.0
        y0, y1 = max(0, int(y - r)), min(h, int(y + r) + 2)
        x0, x1 = max(0, int(x - r)), min(w, int(x + r) + 2)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        masked[i, y0:y1, x0:x1] |= (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    return masked


def _aperture_means(Y, cy, cx, radius):
    """Mean of each channel of ``Y`` (n, h, w, C) within ``radius`` of the centre."""
    n, h, w, _ = Y.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    inside = (
        np.hypot(yy[None] - cy[:, None, None], xx[None] - cx[:, None, None])
        <= np.maximum(radius, 1.0)[:, None, None]
    )
    cnt = np.maximum(inside.sum(axis=(1, 2)), 1)[:, None]
    return (np.where(inside[..., None], Y, 0.0).sum(axis=(1, 2)) / cnt).astype(np.float32)


# ------------------------------------------------------------------ compact sources (PSF)
def _compact_sources(L, sigma, saturated, half):
    """The compact sources of each image, and their half-maximum width.

    A compact source is a local maximum that rises more than ``_SNR`` noise sigmas
    above its surroundings (the 10th percentile of a square ring ``half`` px away),
    and whose half-maximum region (connected to the peak) fits inside that ring. Its FWHM is the diameter of the circle of the same area as the
    half-maximum region: exact for round Gaussians, within a pixel's quantisation.

    Returns
    -------
    image, y, x : ndarrays of int
        Image index and position of each source.
    amplitude, fwhm : ndarrays of float
        Height above the surroundings, and full width at half maximum in pixels.
    clean : ndarray of bool
        Not saturated (``saturated`` false at the peak): only these measure the PSF.
    """
    from scipy.ndimage import label, maximum_filter

    n, h, w = L.shape
    peak = np.equal(L, maximum_filter(L, size=(1, 3, 3), mode="nearest"))
    peak &= np.greater(L, _SNR * sigma[:, None, None])
    peak[:, [0, -1]] = False
    peak[:, :, [0, -1]] = False
    i, y, x = np.nonzero(peak)
    e = np.zeros(0, np.intp)
    none = (e, e, e, np.zeros(0), np.zeros(0), np.zeros(0, bool))
    if len(i) == 0:
        return none
    Lp = np.pad(L, ((0, 0), (half, half), (half, half)), mode="reflect")
    off = np.arange(-half, half + 1)
    W = Lp[
        i[:, None, None],
        half + y[:, None, None] + off[None, :, None],
        half + x[:, None, None] + off,
    ]
    ring = np.concatenate([W[:, 0], W[:, -1], W[:, 1:-1, 0], W[:, 1:-1, -1]], axis=1)
    bg = np.percentile(ring, 10, axis=1)
    amp = W[:, half, half] - bg
    keep = amp > _SNR * sigma[i]
    i, y, x, W, bg, amp = i[keep], y[keep], x[keep], W[keep], bg[keep], amp[keep]
    if len(i) == 0:
        return none
    blob, _ = label((W - bg[:, None, None]) > 0.5 * amp[:, None, None], _stack_structure())
    blob = blob == blob[:, half, half][:, None, None]
    edge = blob[:, [0, -1]].any(axis=(1, 2)) | blob[:, :, [0, -1]].any(axis=(1, 2))
    fwhm = 2.0 * np.sqrt(blob.sum(axis=(1, 2)) / np.pi)
    i, y, x, amp, fwhm = (v[~edge] for v in (i, y, x, amp, fwhm))
    return i, y, x, amp, fwhm, ~saturated[i, y, x]


def _source_window(h, w):
    return int(min(16, max(3, min(h, w) // 8)))


# ------------------------------------------------------------------ one image, re-imaged
def _resample(Y, cy, cx, zoom, out_shape):
    """Resample ``Y`` (h, w, C) so that pixel (cy, cx) lands at the centre of an
    ``out_shape`` frame, ``zoom`` output pixels per input pixel (anti-aliased Lanczos;
    outside the image is 0, the sky-subtracted sky)."""
    oh, ow = out_shape
    h, w, C = Y.shape
    # box in input pixel-edge coordinates
    x0, x1 = cx + 0.5 - 0.5 * ow / zoom, cx + 0.5 + 0.5 * ow / zoom
    y0, y1 = cy + 0.5 - 0.5 * oh / zoom, cy + 0.5 + 0.5 * oh / zoom
    px = int(math.ceil(max(0.0, -x0, x1 - w))) + 2
    py = int(math.ceil(max(0.0, -y0, y1 - h))) + 2
    Yp = np.pad(Y, ((py, py), (px, px), (0, 0)))
    box = (x0 + px, y0 + py, x1 + px, y1 + py)
    lanczos = Image.Resampling.LANCZOS
    out = np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(Yp[:, :, c])).resize(
                    (ow, oh), lanczos, box=box
                )
            )
            for c in range(C)
        ],
        axis=-1,
    )
    return out.astype(np.float32)


def _noise_field(rng, shape, sigma, corr):
    """Gaussian noise of standard deviation ``sigma`` (per channel), spatially
    correlated like white noise blurred by a Gaussian of ``corr`` pixels."""
    from scipy.ndimage import gaussian_filter

    N = rng.standard_normal(shape, dtype=np.float32)
    if corr > 0.3:
        N = gaussian_filter(N, (corr, corr, 0), mode="wrap", truncate=3.0)
        delta = np.zeros((int(8 * corr) + 1,) * 2, np.float32)
        delta[len(delta) // 2, len(delta) // 2] = 1.0
        N /= np.float32(
            np.sqrt((gaussian_filter(delta, corr, mode="constant", truncate=3.0) ** 2).sum())
        )
    return N * np.asarray(sigma, np.float32)


def _measure_frames(X, b, half):
    """Everything ``fit`` measures, for a block of float images ``X`` (n, h, w, C)."""
    from scipy.ndimage import binary_dilation

    h, w = X.shape[1:3]
    ring = _border_mask(h, w, b)
    sky, noise = _sky_and_noise(X, b)
    Y = X - sky[:, None, None, :]
    L = Y.mean(axis=3)
    sig_l = _robust_std(L[:, ring], axis=1)[0]
    sig_s = _robust_std(_smooth(L, 1.0)[:, ring], axis=1)[0]
    sat = binary_dilation(X.max(axis=3) >= 0.99, _stack_structure())
    src = _compact_sources(L, np.maximum(sig_l, _QUANT), sat, half)
    cy, cx, r_e = _central_source(L, np.maximum(2.0 * sig_s, _QUANT), src)
    ok = np.isfinite(r_e)
    aperture = np.full((len(X), X.shape[3]), np.nan, np.float32)
    if ok.any():
        aperture[ok] = _aperture_means(Y[ok], cy[ok], cx[ok], r_e[ok])
    return {
        "sky": sky,
        "noise": noise,
        "noise1": _neighbour_noise(X, b),
        "lum_noise": sig_l,
        "smooth_noise": sig_s,
        "r_e": r_e,
        "aperture": aperture,
        "fwhm": src[4][src[5]],
    }


def _fmt(values, digits=3):
    return "/".join(f"{v:.{digits}f}" for v in np.atleast_1d(values))


class SurveyImager(ParamsValidationMixin, TransformerMixin, BaseEstimator):
    """Image a query as the catalogue's survey would: sky, noise, PSF, colour, size.

    A search compares a query with the catalogue pixel by pixel (or through a network
    trained on the catalogue): a query that is framed, exposed or coloured otherwise
    than the catalogue's galaxies is matched on that difference rather than on its
    morphology. ``fit`` learns, with robust statistics, how the catalogue images its
    galaxies; ``transform`` turns any query image (an illustration whose disk fills
    the frame, a model, a cutout from another survey, a non-square or tiny image,
    uint8 or float in [0, 1]) into one that looks as the catalogue would image it.

    **What fit measures** (on up to ``max_samples`` catalogue images; pixel values on
    the [0, 1] scale, lengths in catalogue pixels):

    - *Sky and noise*, per channel, from the border ring of each frame (``border``
      pixels wide): the sky is the median of the ring, the noise its standard
      deviation after 3-sigma clipping around the median (MAD), so stars and
      neighbours in the border do not count. The catalogue's values are the medians
      over images. The correlation of the noise between neighbouring pixels
      (resampled or compressed cutouts have correlated noise) comes from the spread of
      differences of neighbouring border pixels, expressed as the width of the
      Gaussian that, applied to white noise, gives the same correlation.
    - *PSF*: the full width at half maximum of the sharpest compact sources. Compact
      sources are local maxima more than 10 noise sigmas above their surroundings,
      unsaturated, whose half-maximum region fits in a small box; their FWHM is the
      diameter of the circle of the same area as that region (exact for round
      Gaussians). The PSF is the 20th percentile of their widths: stars are the
      sharpest sources, galaxy cores and knots are wider. Limits: it is the
      *apparent* width on the stretched images (an asinh stretch widens bright
      stars); where the frames hold no stars it is the width of the sharpest
      galaxy cores, an upper bound; widths below about 1.5 px are quantised by the
      pixels.
    - *Central galaxy*: the connected region above twice the (1 px smoothed) noise
      that holds the brightest pixel near the frame centre, grown by 2 px. Its
      *half-light radius* is the radius around its flux-weighted centroid that holds
      half its sky-subtracted light (a curve of growth). The distribution over the
      catalogue is kept (``half_light_radii_``).
    - *Colour and surface brightness*: the mean sky-subtracted value of each channel
      within the half-light radius; ``colour_`` is the median share of each channel,
      ``surface_brightness_`` the median over galaxies of the mean over channels.

    Size, colour and brightness are those of the *reference* galaxies: the galaxies
    of ``reference_classes`` when it is given (for example the catalogue's spirals,
    for a Milky Way query), else all of them.

    **What transform does** to each query: measure its sky (border median, or the
    frame's darkest level when a galaxy fills the frame) and subtract it; find its
    central galaxy; resample it (anti-aliased) so that the galaxy's centroid is at
    the centre of a frame of the catalogue's shape and its half-light radius is
    ``size`` (default: the reference galaxies' ``size_quantile``); blur it by the
    Gaussian that brings its own resolution (its sharpest compact sources, at least
    its pixel) to the catalogue's PSF; scale each channel so that the galaxy's mean
    within its half-light radius has the reference colour and surface brightness;
    re-measure the half-light radius as the catalogue's was measured and correct
    the scale (a few iterations); finally add the catalogue's sky and as much
    correlated noise as the query lacks. Output in the catalogue's dtype.

    Parameters
    ----------
    size : float or None, default=None
        Half-light radius of the matched query's galaxy, in catalogue pixels;
        ``None`` uses the ``size_quantile`` of the reference galaxies' radii.
    reference_classes : array-like or None, default=None
        Labels (as in ``y``) of the galaxies whose size, colour and surface
        brightness a query takes, for example the disk galaxies; ``None`` uses all.
        Needs ``y`` in ``fit``.
    size_quantile : float, default=0.5
        Quantile of the reference galaxies' half-light radii used as the target size
        (0.5: the median).
    match_colour : bool, default=True
        Give the query the reference colour; ``False`` keeps its own colour and
        matches only its surface brightness.
    border : int or None, default=None
        Width of the border ring where sky and noise are measured, in pixels;
        ``None`` uses ``max(2, side // 16)``.
    max_samples : int or None, default=2000
        Fit on at most this many catalogue images (a seeded random subset);
        ``None`` uses all.
    random_state : int, RandomState instance or None, default=None
        Seed of the subset and of the added noise. With an int, a query always gets
        the same noise (drawn from the seed and the query's pixels), whatever batch
        it is in.

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(height, width, n_channels)`` of the catalogue images (the output shape).
    sky_level_ : ndarray of shape (n_channels,)
        Sky level per channel, on the [0, 1] scale.
    noise_sigma_ : ndarray of shape (n_channels,)
        Sky noise standard deviation per pixel and channel, on the [0, 1] scale.
    noise_correlation_ : float
        Width (sigma, pixels) of the Gaussian kernel that reproduces the correlation
        of neighbouring pixels' noise; 0 for white noise.
    psf_fwhm_ : float
        Apparent PSF full width at half maximum, in pixels (NaN when no compact
        source was found: then queries are not blurred).
    n_psf_sources_ : int
        Number of compact sources the PSF was measured on.
    half_light_radii_ : ndarray of shape (n_fit_images,)
        Half-light radius of the central galaxy of each fitted image, in pixels
        (NaN where none was found, for example broken frames).
    half_light_radius_ : float
        Typical half-light radius of the reference galaxies (their ``size_quantile``),
        in pixels; the target size unless ``size`` is given.
    colour_ : ndarray of shape (n_channels,)
        Median share of each channel in the light of the reference galaxies within
        their half-light radius (sums to 1).
    surface_brightness_ : float
        Median over the reference galaxies of their mean sky-subtracted value within
        the half-light radius (mean over channels), on the [0, 1] scale.
    n_reference_ : int
        Number of reference galaxies measured.
    n_samples_fit_ : int
        Number of catalogue images measured.

    Notes
    -----
    Use it on the queries, not as a step of the search pipeline: the catalogue is
    already imaged by its survey (re-imaging it would only cost time, about 0.1-0.5 s
    per image). Fit it on the catalogue as it is searched (after its crop and resize).

    See Also
    --------
    Reframe : a fixed shrink onto sky, with the parameters given by hand.
    galaxysim.datasets.load_milky_way : the Milky Way through this imaging (``like=``).

    Examples
    --------
    >>> from galaxysim.datasets import make_galaxies, load_milky_way
    >>> X, y = make_galaxies(200, random_state=0)
    >>> imager = SurveyImager(random_state=0).fit(X)
    >>> print(imager.describe())  # doctest: +ELLIPSIS
    sky ..., noise ..., PSF FWHM ... px, galaxy size ... px (half-light radius, median of ... galaxies), colour ...
    >>> query = load_milky_way(kind="model", image_size=128)
    >>> imager.transform(query).shape
    (1, 64, 64, 3)
    """

    _parameter_constraints = {
        "size": [None, positive_real()],
        "reference_classes": [None, "array-like"],
        "size_quantile": [Interval(Real, 0, 1, closed="both")],
        "match_colour": ["boolean"],
        "border": [None, positive_int()],
        "max_samples": [None, positive_int()],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        size=None,
        reference_classes=None,
        size_quantile=0.5,
        match_colour=True,
        border=None,
        max_samples=2000,
        random_state=None,
    ):
        self.size = size
        self.reference_classes = reference_classes
        self.size_quantile = size_quantile
        self.match_colour = match_colour
        self.border = border
        self.max_samples = max_samples
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]  # and uint8
        return tags

    # -------------------------------------------------------------- fit
    @fit_context
    def fit(self, X, y=None):
        """Measure how the catalogue images its galaxies.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            The catalogue's framed images (uint8 or float in [0, 1]), as searched. A
            lazy array (a Dask array, or any array indexed by a list of rows) is read
            only at the ``max_samples`` rows sampled.
        y : array-like of shape (n_samples,), default=None
            Labels; needed only with ``reference_classes``.

        Returns
        -------
        self : SurveyImager
        """
        if getattr(X, "ndim", None) != 4:  # lists, one image, grey images
            X = check_images(X, min_size=_MIN_SIDE)
        # Only the sampled rows are read and checked: a lazy catalogue (a Dask array,
        # or any array-like indexed by rows) is never loaded whole.
        n = len(X)
        ref = self._reference_mask(y, n)
        rng = check_random_state(self.random_state)
        idx = np.arange(n)
        if self.max_samples is not None and n > self.max_samples:
            idx = np.sort(rng.choice(n, self.max_samples, replace=False))
            X = X[idx]
        X = check_images(X, min_size=_MIN_SIDE)
        _, h, w, C = X.shape
        b = _border_width(h, w, self.border)
        if 2 * b >= min(h, w):
            raise ValueError(
                f"border={b} leaves no frame inside the border ring of {h}x{w} images; "
                f"pass border= below {min(h, w) // 2}."
            )
        scale = np.float32(1 / 255) if X.dtype == np.uint8 else np.float32(1)

        half = _source_window(h, w)
        parts = [
            _measure_frames(X[start : start + _CHUNK].astype(np.float32) * scale, b, half)
            for start in range(0, len(X), _CHUNK)
        ]
        m = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        sky, noise, noise1, r_e, aper, fwhm = (
            m[k] for k in ("sky", "noise", "noise1", "r_e", "aperture", "fwhm")
        )
        self.image_shape_ = (h, w, C)
        self._catalogue_uint8 = X.dtype == np.uint8
        self.sky_level_ = np.median(sky, axis=0).astype(np.float32)
        self.noise_sigma_ = np.median(noise, axis=0).astype(np.float32)
        rho = 1.0 - (np.median(noise1) / max(float(np.median(noise)), 1e-6)) ** 2
        # neighbours' correlation rho = exp(-1 / (4 s^2)) for white noise blurred by sigma s
        self.noise_correlation_ = (
            float(math.sqrt(-1.0 / (4.0 * math.log(min(rho, 0.95))))) if rho > 0.06 else 0.0
        )
        self.n_psf_sources_ = len(fwhm)
        self.psf_fwhm_ = float(np.quantile(fwhm, _PSF_QUANTILE)) if len(fwhm) else float("nan")
        self.half_light_radii_ = r_e.astype(np.float32)
        self.n_samples_fit_ = len(idx)
        self._lum_noise = float(np.maximum(np.median(m["lum_noise"]), _QUANT))
        self._detect_threshold = float(np.maximum(2.0 * np.median(m["smooth_noise"]), _QUANT))

        use = ref[idx] & np.isfinite(r_e) & (aper.mean(axis=1) > 0)
        if not use.any():
            raise ValueError(
                "No central galaxy was found in the "
                + ("reference " if self.reference_classes is not None else "")
                + f"catalogue images ({len(idx)} measured): they look blank or all sky. "
                "Check the images, or their framing (crop=, image_size=)."
            )
        self.n_reference_ = int(use.sum())
        self.half_light_radius_ = float(np.quantile(r_e[use], self.size_quantile))
        a = aper[use]
        shares = np.maximum(a, 0.0) / np.maximum(
            np.maximum(a, 0.0).sum(axis=1, keepdims=True), 1e-9
        )
        colour = np.median(shares, axis=0)
        self.colour_ = (colour / colour.sum()).astype(np.float32)
        self.surface_brightness_ = float(np.median(a.mean(axis=1)))
        return self

    def _reference_mask(self, y, n):
        if self.reference_classes is None:
            if y is not None:
                check_labels(y, n)
            return np.ones(n, dtype=bool)
        if y is None:
            raise ValueError(
                "reference_classes needs the catalogue's labels: pass y to fit, or "
                "reference_classes=None to use all galaxies."
            )
        y = np.asarray(check_labels(y, n))
        classes = np.atleast_1d(np.asarray(self.reference_classes))
        if classes.size == 0:
            raise ValueError("reference_classes is empty; pass at least one label, or None.")
        missing = [c for c in classes.tolist() if not np.any(y == c)]
        if missing:
            present = np.unique(y).tolist()
            raise ValueError(
                f"reference_classes {missing} do not occur in y (its labels are "
                f"{present[:20]}{' ...' if len(present) > 20 else ''})."
            )
        return np.isin(y, classes)

    # -------------------------------------------------------------- transform
    def transform(self, X):
        """Re-image query images as the catalogue would have imaged them.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            Query images of any size (at least 8 px) and shape, uint8 or float in
            [0, 1], grey or RGB; one image ``(H, W, C)`` or ``(H, W)`` is accepted.

        Returns
        -------
        X_matched : ndarray of shape (n_samples, height, width, n_channels)
            The catalogue's image shape (``image_shape_``) and dtype (uint8, or
            float32 in [0, 1]).

        Raises
        ------
        ValueError
            A query in which no galaxy stands out of the sky.
        """
        check_is_fitted(self, "image_shape_")
        self._validate_params()
        X = check_images(X, min_size=_MIN_SIDE)
        base = int(check_random_state(self.random_state).randint(2**31 - 1))
        out = np.empty((len(X), *self.image_shape_), dtype=np.float32)
        for i in range(len(X)):
            img = X[i].astype(np.float32)
            if X.dtype == np.uint8:
                img /= np.float32(255)
            out[i] = self._match_one(img, base, i)
        if self._catalogue_uint8:
            return np.rint(out * 255).astype(np.uint8)
        return out

    def _match_one(self, img, base, i):
        h, w, C = self.image_shape_
        if img.shape[2] != C:
            img = (
                np.repeat(img, C, axis=2) if img.shape[2] == 1 else img.mean(axis=2, keepdims=True)
            )
        qh, qw = img.shape[:2]
        b = max(2, min(qh, qw) // 16)
        sky, sd = _sky_and_noise(img[None], b)
        sky, sd = sky[0], sd[0]
        dark = np.percentile(img.reshape(-1, C), 5, axis=0)
        # a galaxy that fills the frame leaves no sky in the border: take the darkest level
        sky = np.where(sky - dark > 3.0 * sd + 2 * _QUANT, dark, sky)
        Y = img - sky
        L = Y.mean(axis=2)[None]
        ring = _border_mask(qh, qw, b)
        sig_l = max(float(_robust_std(L[:, ring], axis=1)[0][0]), _QUANT)
        sig_s = max(float(_robust_std(_smooth(L, 1.0)[:, ring], axis=1)[0][0]), _QUANT)
        sat = (img.max(axis=2) >= 0.99)[None]
        src = _compact_sources(L, np.array([sig_l]), sat, _source_window(qh, qw))
        # a query's galaxy may sit farther from the centre than a catalogue's
        cy, cx, re = _central_source(L, np.array([2.0 * sig_s]), src, search=0.25)
        if not np.isfinite(re[0]):
            raise ValueError(
                f"No galaxy found in query image {i}: nothing near its centre stands out "
                "of its sky. Pass an image with the galaxy near the centre."
            )
        cy, cx, re = float(cy[0]), float(cx[0]), float(re[0])
        # the query's own resolution: its sharpest compact source, at least its pixel
        fw = src[4][src[5]]
        own = max(float(fw.min()) if len(fw) else 1.0, 1.0)

        target = float(self.size) if self.size is not None else self.half_light_radius_
        zoom = target / re
        sig_cat = np.array([self._lum_noise])
        for _ in range(5):
            M = self._render(Y, cy, cx, zoom, own, target)
            # measured as the catalogue's galaxies were, at the catalogue's noise
            Lm = M.mean(axis=2)[None]
            src = _compact_sources(Lm, sig_cat, (M.max(axis=2) >= 0.99)[None], _source_window(h, w))
            r_out = _central_source(Lm, np.array([self._detect_threshold]), src)[2][0]
            if not np.isfinite(r_out):
                break
            ratio = target / float(r_out)
            if abs(ratio - 1.0) < 0.02:
                break
            zoom *= ratio
        # noise: as much as the catalogue has beyond what the query still carries
        bo = _border_width(h, w, self.border)
        left = _robust_std(M[None][:, _border_mask(h, w, bo)], axis=1)[0][0]
        add = np.sqrt(np.maximum(self.noise_sigma_**2 - left**2, 0.0))
        q = np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
        rng = np.random.default_rng([base, zlib.crc32(q.tobytes()), *q.shape])
        M += self.sky_level_ + _noise_field(rng, M.shape, add, self.noise_correlation_)
        return np.clip(M, 0.0, 1.0)

    def _render(self, Y, cy, cx, zoom, own, target):
        """Resample, blur and scale the sky-subtracted query (no sky, no noise)."""
        h, w, _ = self.image_shape_
        M = _resample(Y, cy, cx, zoom, (h, w))
        if np.isfinite(self.psf_fwhm_):
            extra = self.psf_fwhm_**2 - (own * zoom) ** 2
            if extra > 0:
                M = _smooth(M[None], math.sqrt(extra) / _FWHM)[0]
        c = np.array([(h - 1) / 2], np.float32), np.array([(w - 1) / 2], np.float32)
        m = _aperture_means(M[None], *c, np.array([target], np.float32))[0]
        if self.match_colour and np.all(m > 1e-6):
            gain = self.colour_ * len(m) * self.surface_brightness_ / m
        else:
            gain = np.full(len(m), self.surface_brightness_ / max(float(m.mean()), 1e-6))
        return M * gain.astype(np.float32)

    # -------------------------------------------------------------- summary
    def describe(self):
        """One line that says what was estimated (for reports and logs).

        Returns
        -------
        text : str
            ``"sky ..., noise ..., PSF FWHM ... px, galaxy size ... px (...), colour
            ..., surface brightness ..."``; sky and noise per channel on the [0, 1]
            scale, lengths in catalogue pixels.
        """
        check_is_fitted(self, "image_shape_")
        corr = (
            f"; correlated over {self.noise_correlation_:.1f} px"
            if self.noise_correlation_ > 0
            else ""
        )
        psf = (
            f"PSF FWHM {self.psf_fwhm_:.1f} px"
            if np.isfinite(self.psf_fwhm_)
            else "PSF not measured (no compact sources)"
        )
        who = (
            f"galaxies of classes {list(np.atleast_1d(self.reference_classes).tolist())}"
            if self.reference_classes is not None
            else "galaxies"
        )
        q = "median" if self.size_quantile == 0.5 else f"quantile {self.size_quantile:g}"
        size = (
            f"galaxy size {self.half_light_radius_:.1f} px "
            f"(half-light radius, {q} of {self.n_reference_} {who})"
        )
        if self.size is not None:
            size += f", queries scaled to {float(self.size):.1f} px"
        rgb = len(self.colour_) == 3
        parts = [
            f"sky {_fmt(self.sky_level_)}",
            f"noise {_fmt(self.noise_sigma_)} ({'R/G/B' if rgb else 'grey'}, 0-1 scale{corr})",
            psf,
            size,
        ]
        if rgb:
            parts.append(f"colour R:G:B {':'.join(f'{c:.2f}' for c in self.colour_)}")
        parts.append(
            f"surface brightness {self.surface_brightness_:.3f} (mean within the half-light radius)"
        )
        return ", ".join(parts)
