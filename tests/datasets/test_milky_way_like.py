"""load_milky_way(like=..., inclination=...): the Milky Way imaged as a given catalogue
would image it, at any viewing angle."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.exceptions import NotFittedError

from galaxysim.datasets import load_milky_way, make_galaxies
from galaxysim.preprocessing import SurveyImager
from galaxysim.preprocessing._survey import _central_source

MW_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "milky-way"
MW_424 = MW_DIR / "milky_way_faceon_nasa_jpl_rhurt_424.png"

CAT, _ = make_galaxies(60, image_size=40, random_state=0)
IMAGER = SurveyImager(random_state=0).fit(CAT)


def _axis_ratio(img, sky):
    """Axis ratio of the second moments of the light above the sky."""
    L = np.clip(img.astype(np.float64).mean(axis=-1) - sky, 0, None)
    L = np.where(np.greater(L, 0.1 * L.max()), L, 0.0)
    yy, xx = np.mgrid[: L.shape[0], : L.shape[1]]
    cov = np.cov(np.stack([xx.ravel(), yy.ravel()]), aweights=L.ravel() + 1e-12)
    lo, hi = np.linalg.eigvalsh(cov)
    return float(np.sqrt(lo / hi))


def _fake_illustration(size=300):
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx - size / 2, yy - size / 2) / (size / 2)
    disk = (np.exp(-r / 0.25) * (r < 0.95))[..., None] * np.array([150, 170, 230])
    bulge = np.exp(-((r / 0.06) ** 2))[..., None] * np.array([255, 230, 160])
    return np.clip(disk + bulge, 0, 255).astype(np.uint8)


def test_model_like_a_catalogue():
    mw = load_milky_way(like=IMAGER)
    assert mw.shape == (1, 40, 40, 3) and mw.dtype == np.uint8
    np.testing.assert_array_equal(mw, load_milky_way(like=IMAGER))
    # fitting on the images is the same as passing the imager fitted with the seed
    np.testing.assert_array_equal(mw, load_milky_way(like=CAT, random_state=0))
    # the catalogue's sky, and a galaxy of the catalogue's size in the middle
    border = mw[0, :2].reshape(-1, 3) / 255
    np.testing.assert_allclose(np.median(border, axis=0), IMAGER.sky_level_, atol=0.02)
    Y = mw.astype(np.float32) / 255 - IMAGER.sky_level_
    cy, cx, r_e = _central_source(Y.mean(axis=3), np.array([0.05]))
    assert abs(cy[0] - 19.5) < 1.5 and abs(cx[0] - 19.5) < 1.5
    assert r_e[0] == pytest.approx(IMAGER.half_light_radius_, rel=0.2)


def test_illustration_like_a_catalogue(tmp_path):
    path = tmp_path / "mw.png"
    Image.fromarray(_fake_illustration()).save(path)
    mw = load_milky_way(kind="illustration", path=path, like=IMAGER)
    assert mw.shape == (1, 40, 40, 3) and mw.dtype == np.uint8
    # the frame-filling picture is shrunk onto the catalogue's sky
    border = mw[0, :2].reshape(-1, 3) / 255
    np.testing.assert_allclose(np.median(border, axis=0), IMAGER.sky_level_, atol=0.02)
    assert mw[0, 18:22, 18:22].mean() > mw[0, :2].mean() + 40


def test_illustration_from_shared_file_like_a_catalogue():
    if not MW_424.is_file():
        pytest.skip("../shared/data/milky-way is not available")
    mw = load_milky_way(kind="illustration", path=MW_424, like=IMAGER)
    assert mw.shape == (1, 40, 40, 3)
    Y = mw.astype(np.float32) / 255 - IMAGER.sky_level_
    r_e = _central_source(Y.mean(axis=3), np.array([0.05]))[2][0]
    assert r_e == pytest.approx(IMAGER.half_light_radius_, rel=0.2)


def test_inclination_flattens_the_model():
    sky = np.median(load_milky_way()[0, :4].reshape(-1, 3).mean(axis=1))
    face_on = _axis_ratio(load_milky_way()[0], sky)
    inclined = _axis_ratio(load_milky_way(inclination=70)[0], sky)
    assert inclined < 0.7 * face_on
    assert load_milky_way(inclination=0.0).tobytes() == load_milky_way().tobytes()
    sky = 255 * float(IMAGER.sky_level_.mean())
    matched = [_axis_ratio(load_milky_way(like=IMAGER, inclination=i)[0], sky) for i in (0, 75)]
    assert matched[1] < 0.7 * matched[0]


def test_inclination_flattens_the_illustration(tmp_path):
    path = tmp_path / "mw.png"
    Image.fromarray(_fake_illustration()).save(path)
    flat = load_milky_way(kind="illustration", path=path, like=IMAGER, inclination=60)
    sky = 255 * float(IMAGER.sky_level_.mean())
    assert _axis_ratio(flat[0], sky) == pytest.approx(0.5, abs=0.15)  # cos 60
    assert _axis_ratio(load_milky_way(kind="illustration", path=path, like=IMAGER)[0], sky) > 0.85


@pytest.mark.parametrize("bad", [-1, 91, float("nan"), True, "45"])
def test_bad_inclination(bad):
    with pytest.raises(ValueError, match="inclination must be a number of degrees from 0"):
        load_milky_way(inclination=bad)


def test_bad_like():
    with pytest.raises(NotFittedError):
        load_milky_way(like=SurveyImager())
    with pytest.raises(TypeError, match="not a path"):
        load_milky_way(like="catalogue.h5")
    with pytest.raises(ValueError, match="like has float pixel values outside"):
        load_milky_way(like=np.full((3, 16, 16, 3), 2.0))
    with pytest.raises(ValueError, match="image_size=64 differs from the 40 px side"):
        load_milky_way(like=IMAGER, image_size=64)
    # the same side is fine
    assert load_milky_way(like=IMAGER, image_size=40).shape == (1, 40, 40, 3)
