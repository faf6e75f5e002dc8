"""Tests of the procedural catalogue make_galaxies and its renderer."""

from pathlib import Path

import numpy as np
import pytest
from skimage.feature import peak_local_max

from galaxysim import GALAXY10_CLASSES
from galaxysim.datasets import PARAM_FIELDS, make_galaxies, render_galaxy
from galaxysim.utils._image import resize_images

EXEMPLARS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "galaxy10-exemplars"


def _luminance(X):
    """Sky-subtracted luminance per image (sky: median of the frame border)."""
    L = X.astype(np.float32).mean(axis=-1)
    border = np.concatenate([L[:, :4].reshape(len(L), -1), L[:, -4:].reshape(len(L), -1)], axis=1)
    return L - np.median(border, axis=1)[:, None, None]


def _axis_ratio(L, threshold=25.0):
    """Minor/major axis ratio from the second moments of the bright pixels."""
    h, w = L.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    wgt = np.where(np.greater(L, threshold), L, 0.0).astype(np.float64)
    tot = wgt.sum()
    if tot == 0:
        return np.nan
    cx, cy = (wgt * xx).sum() / tot, (wgt * yy).sum() / tot
    cxx = (wgt * (xx - cx) ** 2).sum() / tot
    cyy = (wgt * (yy - cy) ** 2).sum() / tot
    cxy = (wgt * (xx - cx) * (yy - cy)).sum() / tot
    lo, hi = np.linalg.eigvalsh([[cxx, cxy], [cxy, cyy]])
    return float(np.sqrt(max(lo, 0.0) / hi))


@pytest.fixture(scope="module")
def catalogue():
    return make_galaxies(300, random_state=0, return_params=True)


def test_shapes_dtypes_and_balanced_labels(catalogue):
    X, y, _ = catalogue
    assert X.shape == (300, 64, 64, 3)
    assert X.dtype == np.uint8
    assert y.dtype == np.int64
    assert y.shape == (300,)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 30))
    # shuffled, not sorted by class
    assert not np.all(np.diff(y) >= 0)


def test_classes_subset_and_uneven_count():
    X, y = make_galaxies(7, classes=[5, 8], random_state=1)
    assert X.shape == (7, 64, 64, 3)
    assert set(y.tolist()) == {5, 8}
    assert sorted(np.bincount(y)[[5, 8]].tolist()) == [3, 4]
    X1, y1 = make_galaxies(3, classes=4, random_state=1)
    assert y1.tolist() == [4, 4, 4]


def test_same_seed_same_images_different_seed_differs():
    X1, y1 = make_galaxies(12, random_state=42)
    X2, y2 = make_galaxies(12, random_state=42)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, _ = make_galaxies(12, random_state=43)
    assert not np.array_equal(X1, X3)
    rs = np.random.RandomState(7)
    X4, _ = make_galaxies(4, random_state=rs)
    X5, _ = make_galaxies(4, random_state=rs)
    assert not np.array_equal(X4, X5)


def test_return_params_fields(catalogue):
    X, y, params = catalogue
    names = [name for name, _ in PARAM_FIELDS]
    assert list(params.dtype.names) == names
    assert len(params) == len(X)
    np.testing.assert_array_equal(params["label"], y)
    for name, desc in PARAM_FIELDS:
        assert desc, name
    # physically meaningful values per class
    assert np.all(params["bar_frac"][y == 5] > 0)
    assert np.all(params["bar_frac"][y != 5] == 0)
    assert np.all(params["n_arms"][np.isin(y, [5, 6, 7])] >= 2)
    assert np.all(params["n_arms"][np.isin(y, [5, 6, 7])] <= 4)
    assert np.median(params["pitch"][y == 7]) > np.median(params["pitch"][y == 6]) + 10
    assert np.all(params["incl"][np.isin(y, [8, 9])] > 80)
    assert np.all(params["comp_frac"][y == 1] > 0)
    assert np.all(params["comp_frac"][y != 1] == 0)
    q = params["bulge_q"]
    assert q[y == 2].min() > q[y == 3].max() > q[y == 3].min() > q[y == 4].max()
    assert params["bulge_frac"][y == 9].min() > params["bulge_frac"][y == 8].max()
    # the params render back to the very same images
    for i in (0, 1, 2):
        np.testing.assert_array_equal(render_galaxy(params[i], 64), X[i])


@pytest.mark.parametrize("size", [32, 128])
def test_other_image_sizes_cover_the_same_field(size):
    X, y, params = make_galaxies(6, image_size=size, random_state=3, return_params=True)
    assert X.shape == (6, size, size, 3)
    assert X.dtype == np.uint8
    # without noise and point sources, a render at `size` resized to 64 matches a render at 64
    for p in params:
        p = p.copy()
        p["noise"], p["n_stars"], p["n_knots"], p["n_clumps"] = 0.0, 0, 0, 0
        a = resize_images(render_galaxy(p, size)[None], 64)[0].astype(int)
        b = render_galaxy(p, 64).astype(int)
        assert np.abs(a - b).mean() < 4.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "n_samples must be a positive integer"),
        ({"n_samples": 2.5}, "n_samples must be a positive integer"),
        ({"classes": [3, 10]}, r"codes \[10\] outside the Galaxy10 codes 0-9"),
        ({"classes": [-1]}, r"codes \[-1\] outside"),
        ({"classes": []}, "non-empty list"),
        ({"classes": ["spiral"]}, "integer Galaxy10 codes"),
        ({"image_size": 4}, "image_size must be at least 8"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"n_samples": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_galaxies(**args)


def test_render_rejects_unknown_parameter():
    with pytest.raises(
        ValueError,
        match=r"Unknown galaxy parameters \['spin'\].*"
        r"\(galaxysim\.datasets\.PARAM_FIELDS describes them\)",
    ):
        render_galaxy({"label": 2, "spin": 3.0})
    with pytest.raises(TypeError, match="params must be a dict"):
        render_galaxy([1, 2, 3])


def test_bulges_redder_than_arms():
    X, y, params = make_galaxies(90, classes=[5, 6, 7], random_state=5, return_params=True)
    Xf = X.astype(np.float32)
    sky = np.median(Xf[:, :4, :4].reshape(len(X), -1, 3), axis=1)
    F = Xf - sky[:, None, None, :]
    yy, xx = np.mgrid[0:64, 0:64]
    wins = 0
    for i, p in enumerate(params):
        r = np.hypot(xx - 31.5 - p["x0"], yy - 31.5 - p["y0"])
        lum = F[i].mean(axis=-1)
        centre = r < 3
        outer = (r > 12) & (r < 30) & (lum > 20)
        if outer.sum() < 20:
            continue
        ratio_c = F[i][centre][:, 0].sum() / F[i][centre][:, 2].sum()
        ratio_o = F[i][outer][:, 0].sum() / F[i][outer][:, 2].sum()
        wins += ratio_c > ratio_o
    assert wins >= 0.85 * len(X)


def test_axis_ratios_by_class():
    X, y = make_galaxies(200, classes=[2, 3, 4, 8, 9], random_state=6)
    L = _luminance(X)
    q = np.array([_axis_ratio(img) for img in L])
    med = {c: np.nanmedian(q[y == c]) for c in (2, 3, 4, 8, 9)}
    assert med[2] > 0.8
    assert med[2] > med[3] + 0.1
    assert med[3] > med[4] + 0.15
    assert med[8] < 0.3
    assert med[9] < 0.45
    assert med[9] > med[8]  # the bulge puffs up the centre


def test_merging_shows_two_peaks_more_often_than_round():
    X, y = make_galaxies(120, classes=[1, 2], random_state=7)
    L = _luminance(X)
    n_peaks = np.array(
        [len(peak_local_max(img, min_distance=3, threshold_abs=60, exclude_border=4)) for img in L]
    )
    two = n_peaks >= 2
    assert two[y == 1].mean() > 0.6
    assert two[y == 1].mean() > two[y == 2].mean() + 0.4


def test_bars_elongate_the_centre_of_face_on_barred_spirals():
    X, y, params = make_galaxies(60, classes=[5, 6], random_state=8, return_params=True)
    face_on = params["incl"] < 40
    L = _luminance(X)
    q = np.array([_axis_ratio(img[16:48, 16:48], threshold=60) for img in L])
    assert np.nanmedian(q[face_on & (y == 5)]) < np.nanmedian(q[face_on & (y == 6)]) - 0.15


def test_some_frames_have_foreground_stars(catalogue):
    _, _, params = catalogue
    share = (params["n_stars"] > 0).mean()
    assert 0.2 < share < 0.6


def test_sky_and_noise_like_real_exemplars(catalogue):
    if not EXEMPLARS.is_dir():
        pytest.skip("../shared/data/galaxy10-exemplars is not available")
    from PIL import Image

    real = np.stack(
        [
            np.asarray(Image.open(f).convert("RGB"))[96:160, 96:160]
            for f in sorted(EXEMPLARS.glob("*.png"))
        ]
    ).astype(np.float32)
    X = catalogue[0][catalogue[1] == 2].astype(np.float32)  # small galaxies: sky in corners

    def sky_stats(A):
        corners = np.concatenate([A[:, :8, :8], A[:, :8, -8:]], axis=1).reshape(len(A), -1, 3)
        return np.median(corners), np.median(corners.std(axis=1))

    (real_sky, real_noise), (sky, noise) = sky_stats(real[[2, 3, 4]]), sky_stats(X)
    assert abs(sky - real_sky) < 12
    assert 0.5 * real_noise < noise < 2.0 * real_noise


def test_class_names_cover_codes():
    assert len(GALAXY10_CLASSES) == 10


def test_too_many_images_is_a_clear_memory_error_before_allocating():
    # 10**12 images of 64x64x3 are over 12 PB: refused at once with the figures
    with pytest.raises(
        MemoryError, match=r"n_samples=1000000000000.* would take 1\d{4}\.\d TB .* available"
    ) as info:
        make_galaxies(10**12)
    assert isinstance(info.value, ValueError)  # the CLI reports it as bad input
    assert "room for about" in str(info.value)


def test_memory_check_uses_available_memory(monkeypatch):
    import galaxysim.utils._memory as memory

    per_image = 32 * 32 * 3
    monkeypatch.setattr(memory, "available_memory", lambda: 40 * per_image)
    with pytest.raises(MemoryError, match=r"n_samples=100, image_size=32.*room for about 3\d "):
        make_galaxies(100, image_size=32, random_state=0)
    X, _ = make_galaxies(20, image_size=32, random_state=0)  # what fits is not refused
    assert X.shape == (20, 32, 32, 3)


# ------------------------------------------------------------------ audit siblings (issue 10)
@pytest.mark.parametrize(
    "params, match",
    [
        ({"flux": float("inf")}, r"flux=inf \(a finite number"),
        ({"flux": float("nan")}, r"flux=nan \(a finite number"),
        ({"flux": -5.0}, r"flux=-5.0 \(in \[0, inf\)"),
        ({"bulge_n": 0.0}, r"bulge_n=0.0 \(in \(0, inf\)"),
        ({"incl": 1000}, r"incl=1000 \(in \[0, 90\]"),
        ({"n_arms": 2.5}, r"n_arms=2.5 \(a whole number"),
        ({"n_knots": 10**9}, r"n_knots=1000000000 \(in \[0, 1000\]"),
        ({"arm_sharpness": 7}, r"arm_sharpness=7 \(in \[1, 4\]"),
        ({"chirality": 0}, r"chirality=0 \(\+1 or -1\)"),
        ({"sky": 5.0}, r"sky=5.0 \(in \[0, 1\]"),
        ({"flux": "big"}, r"flux='big' \(a finite number"),
        ({"label": True}, r"label=True \(a finite number"),
        ({"x0": 1e30}, r"x0=1e\+30 \(in \[-10000, 10000\]"),
    ],
)
def test_render_refuses_parameters_out_of_range(params, match):
    with pytest.raises(ValueError, match=match):
        render_galaxy(params, image_size=16)


def test_sampled_parameters_are_all_in_range():
    X, y, params = make_galaxies(300, image_size=8, random_state=3, return_params=True)
    for rec in params[::7]:
        render_galaxy(rec, image_size=8)  # no error


def test_return_params_must_be_a_bool():
    with pytest.raises(TypeError, match="return_params must be True or False; got 'no'"):
        make_galaxies(2, image_size=8, return_params="no")


def test_render_of_a_huge_image_is_refused_before_allocating():
    with pytest.raises(
        MemoryError, match=r"render_galaxy\(image_size=1000000\) would take .*smaller"
    ):
        render_galaxy({}, image_size=10**6)
