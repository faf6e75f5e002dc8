"""SurveyImager: known-answer tests of what it measures, of what it does to queries,
the image-estimator contract, and clear errors."""

import math
import pickle

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from sklearn.exceptions import NotFittedError

from galaxysim.preprocessing import SurveyImager
from galaxysim.preprocessing._survey import _central_source, _compact_sources
from galaxysim.utils._sklearn_compat import InvalidParameterError
from galaxysim.utils.estimator_checks import check_image_estimator

SKY = np.array([0.10, 0.08, 0.06])
COLOUR = np.array([0.5, 0.3, 0.2])
FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _galaxy(side, r_e, amp, colour, centre=None, psf=3.0, shape=None):
    """An exponential disk (half-light radius r_e px) blurred by a Gaussian PSF."""
    h, w = shape or (side, side)
    cy, cx = centre if centre is not None else ((h - 1) / 2, (w - 1) / 2)
    yy, xx = np.mgrid[:h, :w]
    disk = amp * np.exp(-np.hypot(yy - cy, xx - cx) / (r_e / 1.678))
    if psf:
        disk = gaussian_filter(disk, psf / FWHM)
    return disk[..., None] * (np.asarray(colour) * 3)


def _star(img, y, x, amp, psf):
    h, w = img.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    s = psf / FWHM
    img += amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))[..., None]


def _catalogue(n=40, side=48, r_e=6.0, noise=0.02, psf=3.0, corr=0.0, seed=0, stars=2):
    rng = np.random.default_rng(seed)
    X = np.empty((n, side, side, 3))
    for i in range(n):
        img = _galaxy(side, r_e * rng.uniform(0.9, 1.1), 0.3, COLOUR, psf=psf)
        for _ in range(stars):
            y, x = rng.uniform(4, side - 4, 2)
            if math.hypot(y - side / 2, x - side / 2) > 2.5 * r_e:
                _star(img, y, x, rng.uniform(0.3, 0.6), psf)
        N = rng.normal(0.0, 1.0, img.shape)
        if corr:
            N = gaussian_filter(N, (corr, corr, 0), mode="wrap")
            N /= N.std()
        X[i] = img + SKY + noise * N
    return np.rint(np.clip(X, 0, 1) * 255).astype(np.uint8)


CAT = _catalogue()
FITTED = SurveyImager(random_state=0).fit(CAT)


def _measure(out, imager=FITTED):
    """Sky-subtracted centroid and half-light radius of the central galaxy of ``out``."""
    Y = out.astype(np.float32) / 255 - imager.sky_level_
    cy, cx, r_e = _central_source(Y.mean(axis=3), np.full(len(Y), 0.02))
    return cy, cx, r_e, Y


# ------------------------------------------------------------------ what fit measures
def test_fit_recovers_sky_noise_psf_size_and_colour():
    im = FITTED
    np.testing.assert_allclose(im.sky_level_, SKY, atol=0.006)
    np.testing.assert_allclose(im.noise_sigma_, 0.02, rtol=0.15)
    assert im.noise_correlation_ < 0.6  # white noise
    assert im.psf_fwhm_ == pytest.approx(3.0, rel=0.2)
    assert im.n_psf_sources_ > 20
    # the blurred disk: sqrt(6^2 + a little of the PSF)
    assert im.half_light_radius_ == pytest.approx(6.2, rel=0.12)
    assert im.half_light_radii_.shape == (len(CAT),)
    np.testing.assert_allclose(im.colour_, COLOUR, atol=0.03)
    assert im.colour_.sum() == pytest.approx(1.0)
    assert im.image_shape_ == (48, 48, 3) and im.n_samples_fit_ == len(CAT)


@pytest.mark.parametrize("psf", [2.5, 5.0])
def test_psf_follows_the_catalogue(psf):
    im = SurveyImager().fit(_catalogue(n=20, psf=psf, stars=4, seed=1))
    assert im.psf_fwhm_ == pytest.approx(psf, rel=0.2)


def test_compact_source_width_is_exact_for_gaussians():
    rng = np.random.default_rng(0)
    for fwhm in (2.5, 4.0, 7.0):
        img = np.zeros((1, 64, 64, 1))
        for y, x in ((16, 16), (16, 48), (48, 16), (48, 48)):
            _star(img[0], y + rng.uniform(-0.5, 0.5), x, 0.5, fwhm)
        L = img[..., 0] + rng.normal(0, 0.005, (1, 64, 64))
        fw = _compact_sources(L, np.array([0.005]), np.zeros_like(L, bool), 8)[4]
        assert len(fw) == 4
        assert np.median(fw) == pytest.approx(fwhm, rel=0.12)


def test_correlated_noise_is_measured():
    im = SurveyImager().fit(_catalogue(n=20, corr=1.5, seed=2))
    assert im.noise_correlation_ == pytest.approx(1.5, rel=0.3)
    np.testing.assert_allclose(im.noise_sigma_, 0.02, rtol=0.2)
    out = im.transform(_galaxy(200, 40, 0.5, [0.3, 0.3, 0.4], psf=0))
    # the added noise is correlated like the catalogue's: neighbours' differences are small
    ring = out[0, :4].astype(float) / 255
    d1 = np.diff(ring, axis=1).std() / math.sqrt(2)
    assert d1 < 0.6 * ring.std()


def test_reference_classes_choose_size_and_colour():
    small = _catalogue(n=20, r_e=4.0, seed=3)
    big = _catalogue(n=20, r_e=9.0, seed=4)
    X = np.concatenate([small, big])
    y = np.array(["smooth"] * 20 + ["disk"] * 20)
    r_all = SurveyImager().fit(X).half_light_radius_
    r_disk = SurveyImager(reference_classes=["disk"]).fit(X, y).half_light_radius_
    r_smooth = SurveyImager(reference_classes=["smooth"]).fit(X, y).half_light_radius_
    assert r_smooth < r_all < r_disk
    assert r_disk == pytest.approx(9.0, rel=0.15)
    q = SurveyImager(size_quantile=0.9).fit(X).half_light_radius_
    assert q == pytest.approx(r_disk, rel=0.15)


def test_fit_subsamples_with_a_seed():
    X = _catalogue(n=30, seed=5)
    a = SurveyImager(max_samples=10, random_state=0).fit(X)
    b = SurveyImager(max_samples=10, random_state=0).fit(X)
    assert a.n_samples_fit_ == 10
    np.testing.assert_array_equal(a.half_light_radii_, b.half_light_radii_)


# ------------------------------------------------------------------ what transform does
@pytest.mark.parametrize(
    "query",
    [
        _galaxy(300, 80, 0.6, [0.25, 0.3, 0.45], psf=0),  # a disk filling a big frame
        _galaxy(12, 3, 0.6, [0.3, 0.3, 0.4], psf=0),  # tiny
        _galaxy(0, 10, 0.6, [0.3, 0.3, 0.4], psf=0, shape=(60, 90)),  # not square
        _galaxy(64, 12, 0.6, [1, 1, 1], psf=0)[..., :1] / 3,  # grey
    ],
    ids=["frame-filling", "tiny", "non-square", "grey"],
)
def test_transform_images_any_query_like_the_catalogue(query):
    query = np.clip(query, 0, 1).astype(np.float32)  # float in [0, 1]
    out = FITTED.transform(query)
    assert out.shape == (1, 48, 48, 3) and out.dtype == np.uint8
    cy, cx, r_e, Y = _measure(out)
    assert abs(cy[0] - 23.5) < 1.0 and abs(cx[0] - 23.5) < 1.0
    assert r_e[0] == pytest.approx(FITTED.half_light_radius_, rel=0.15)
    border = out[0, :3].reshape(-1, 3) / 255
    np.testing.assert_allclose(np.median(border, axis=0), FITTED.sky_level_, atol=0.01)
    np.testing.assert_allclose(border.std(axis=0), FITTED.noise_sigma_, rtol=0.25)
    centre = Y[0, 19:29, 19:29].reshape(-1, 3).sum(axis=0)
    np.testing.assert_allclose(centre / centre.sum(), FITTED.colour_, atol=0.03)


def test_off_centre_galaxy_is_centred_and_size_is_honoured():
    query = np.clip(_galaxy(0, 12, 0.5, [0.3, 0.3, 0.4], centre=(34, 95), shape=(90, 160)), 0, 1)
    out = SurveyImager(size=9.0, random_state=0).fit(CAT).transform(query)
    cy, cx, r_e, _ = _measure(out)
    assert abs(cy[0] - 23.5) < 1.0 and abs(cx[0] - 23.5) < 1.0
    assert r_e[0] == pytest.approx(9.0, rel=0.12)


def test_a_catalogue_image_keeps_its_look():
    # A query already imaged like the catalogue gets no more blur and no more noise.
    q = _catalogue(n=1, seed=9, stars=0)[0].astype(np.float64) / 255
    _star(q, 8.0, 40.0, 0.5, 3.0)
    q = np.clip(q, 0, 1)
    out = FITTED.transform(q)[0].astype(np.float32) / 255
    L = (out - FITTED.sky_level_).mean(axis=2)[None]
    fw = _compact_sources(L, np.array([0.012]), np.zeros_like(L, bool), 6)[4]
    assert len(fw) >= 1 and fw.min() < 1.2 * FITTED.psf_fwhm_  # blurred again: x 1.41
    border = out[:3].reshape(-1, 3)
    np.testing.assert_allclose(border.std(axis=0), FITTED.noise_sigma_, rtol=0.25)  # x 1.41


def test_sharp_query_is_blurred_to_the_psf():
    q = np.zeros((96, 96, 3))
    q += _galaxy(96, 12, 0.4, COLOUR, psf=0)
    _star(q, 20.0, 70.0, 0.9, 4.0)  # 2 px once the galaxy is scaled to the catalogue's size
    out = FITTED.transform(np.clip(q, 0, 1))[0].astype(np.float32) / 255
    L = (out - FITTED.sky_level_).mean(axis=2)[None]
    fw = _compact_sources(L, np.array([0.012]), np.zeros_like(L, bool), 6)[4]
    assert len(fw) >= 1
    assert fw.min() == pytest.approx(FITTED.psf_fwhm_, rel=0.25)


def test_match_colour_false_keeps_the_query_colour():
    blue = [0.2, 0.3, 0.5]
    out = SurveyImager(match_colour=False, random_state=0).fit(CAT)
    out = out.transform(np.clip(_galaxy(100, 20, 0.5, blue, psf=0), 0, 1))
    Y = out[0].astype(np.float32) / 255 - FITTED.sky_level_
    c = Y[19:29, 19:29].reshape(-1, 3).sum(axis=0)
    np.testing.assert_allclose(c / c.sum(), blue, atol=0.03)


def test_noise_is_seeded_per_query_not_per_batch():
    q = np.clip(np.stack([_galaxy(80, r, 0.5, COLOUR, psf=0) for r in (10, 14)]), 0, 1)
    im = SurveyImager(random_state=3).fit(CAT)
    both = im.transform(q)
    np.testing.assert_array_equal(both[1:], im.transform(q[1:]))
    np.testing.assert_array_equal(both, pickle.loads(pickle.dumps(im)).transform(q))
    other = SurveyImager(random_state=4).fit(CAT).transform(q)
    assert not np.array_equal(both, other)


def test_float_catalogue_gives_float_output():
    im = SurveyImager(random_state=0).fit(CAT / 255.0)
    out = im.transform(_galaxy(50, 8, 0.5, COLOUR))
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


def test_estimator_checks():
    q = np.clip(np.stack([_galaxy(48, r, 0.5, COLOUR) + SKY for r in (4, 6, 8)]), 0, 1)
    check_image_estimator(SurveyImager(random_state=0), np.rint(q * 255).astype(np.uint8))


# ------------------------------------------------------------------ the summary
def test_describe_says_what_was_estimated():
    text = FITTED.describe()
    for part in ("sky 0.1", "noise 0.0", "PSF FWHM 3.", "galaxy size 5.9", "half-light radius"):
        assert part in text
    assert "colour R:G:B 0.5" in text
    text = SurveyImager(size=8, reference_classes=[1]).fit(CAT, np.ones(len(CAT))).describe()
    assert "classes [1]" in text and "queries scaled to 8.0 px" in text
    no_stars = SurveyImager().fit(_catalogue(n=5, stars=0, noise=0.05, seed=6))
    assert "PSF" in no_stars.describe()


# ------------------------------------------------------------------ clear errors
def test_unfitted():
    with pytest.raises(NotFittedError):
        SurveyImager().transform(CAT[:1])
    with pytest.raises(NotFittedError):
        SurveyImager().describe()


def test_reference_classes_need_matching_labels():
    with pytest.raises(ValueError, match="reference_classes needs the catalogue's labels"):
        SurveyImager(reference_classes=[1]).fit(CAT)
    with pytest.raises(ValueError, match=r"reference_classes \[7\] do not occur in y"):
        SurveyImager(reference_classes=[7]).fit(CAT, np.zeros(len(CAT), int))
    with pytest.raises(ValueError, match="reference_classes is empty"):
        SurveyImager(reference_classes=[]).fit(CAT, np.zeros(len(CAT), int))
    with pytest.raises(ValueError, match="y has 3 labels but there are 40 images"):
        SurveyImager().fit(CAT, [0, 1, 2])


def test_blank_images_are_refused():
    blank = np.full((5, 32, 32, 3), 20, np.uint8)
    with pytest.raises(ValueError, match="No central galaxy was found") as err:
        SurveyImager().fit(blank)
    # the framing advice names parameters, which the CLI spells as its options
    from galaxysim.cli._checks import cli_message

    assert "their framing (--crop, --image-size)" in cli_message(str(err.value))
    with pytest.raises(ValueError, match="No galaxy found in query image 0"):
        FITTED.transform(np.full((40, 40, 3), 0.1, np.float32))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"size": -1.0}, "'size' parameter"),
        ({"size": float("inf")}, "'size' parameter"),
        ({"size_quantile": 1.5}, "'size_quantile' parameter"),
        ({"match_colour": "yes"}, "'match_colour' parameter"),
        ({"max_samples": 0}, "'max_samples' parameter"),
        ({"border": True}, "must not be a bool"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        SurveyImager(**params).fit(CAT)


def test_border_too_wide_and_images_too_small():
    with pytest.raises(ValueError, match="border=24 leaves no frame"):
        SurveyImager(border=24).fit(CAT)
    with pytest.raises(ValueError, match="smaller than the required 8x8"):
        FITTED.transform(np.zeros((4, 4, 3), np.uint8))


class _RowsRead:
    """An array-like catalogue that records which rows are read."""

    def __init__(self, X):
        self.X, self.ndim, self.shape, self.dtype, self.read = X, X.ndim, X.shape, X.dtype, []

    def __len__(self):
        return len(self.X)

    def __getitem__(self, rows):
        self.read.append(np.asarray(rows))
        return self.X[rows]


def test_fit_reads_only_the_sampled_rows_of_a_lazy_catalogue():
    X = _catalogue(n=40)
    lazy = _RowsRead(X)
    fitted = SurveyImager(max_samples=10, random_state=0).fit(lazy)
    assert len(lazy.read) == 1 and len(lazy.read[0]) == 10  # one read, of the sample only
    whole = SurveyImager(max_samples=10, random_state=0).fit(X)
    assert fitted.describe() == whole.describe()
    np.testing.assert_array_equal(fitted.half_light_radii_, whole.half_light_radii_)
