import os
import warnings

import h5py
import numpy as np
import pytest

import galaxysim.datasets._galaxy10 as g10mod
from galaxysim import GALAXY10_CLASSES
from galaxysim.datasets import load_galaxy10
from galaxysim.utils._image import frame_images

N_DECALS = 23  # not a multiple of the chunk sizes used below


def _write_decals(path, n=N_DECALS, size=256, seed=0, chunks=None):
    """A small file in the exact Galaxy10 DECaLS layout (astroNN's Galaxy10_DECals.h5)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    ans = rng.integers(0, 10, size=n).astype(np.uint8)
    redshift = rng.uniform(0.01, 0.2, size=n)
    redshift[::5] = np.nan
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "images", data=images, chunks=chunks, compression="gzip" if chunks else None
        )
        f.create_dataset("ans", data=ans)
        f.create_dataset("ra", data=rng.uniform(0, 360, size=n))
        f.create_dataset("dec", data=rng.uniform(-30, 60, size=n))
        f.create_dataset("redshift", data=redshift)
        f.create_dataset("pxscale", data=rng.choice([0.262, 0.524], size=n))
    return images, ans


def _write_sdss(path, n=17, seed=1):
    """A small file in the Galaxy10 SDSS layout: 69x69 images and ``ans`` only."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 69, 69, 3), dtype=np.uint8)
    ans = rng.integers(0, 10, size=n).astype(np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("ans", data=ans)
    return images, ans


@pytest.fixture
def decals(tmp_path):
    path = tmp_path / "Galaxy10_DECals.h5"
    images, ans = _write_decals(path)
    return path, images, ans


@pytest.fixture
def sdss(tmp_path):
    path = tmp_path / "Galaxy10.h5"
    images, ans = _write_sdss(path)
    return path, images, ans


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def _forbid_h5(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the HDF5 file was opened despite a valid cache")

    monkeypatch.setattr(h5py, "File", fail)


def test_decals_default_framing(decals, cache):
    path, images, ans = decals
    data = load_galaxy10(path, cache_dir=cache, verbose=0)
    assert data.images.dtype == np.uint8
    assert data.images.shape == (N_DECALS, 64, 64, 3)
    # the reference framing: the central 64x64 pixels, no resize
    np.testing.assert_array_equal(data.images, images[:, 96:160, 96:160])
    np.testing.assert_array_equal(data.target, ans)
    assert list(data.target_names) == list(GALAXY10_CLASSES)
    with h5py.File(path) as f:
        for k in ("ra", "dec", "redshift", "pxscale"):
            np.testing.assert_array_equal(data[k], f[k][()])
    assert np.isnan(data.redshift[0])
    assert data.filename == str(path.absolute())
    assert "DECaLS" in data.DESCR


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 512])
@pytest.mark.parametrize(
    "crop, image_size", [(64, 64), (128, 64), (100, 48), (None, 64), (96, None)]
)
def test_chunked_equals_whole_array(tmp_path, chunk_size, crop, image_size):
    path = tmp_path / "g.h5"
    images, _ = _write_decals(path, n=11, size=128 if crop != 100 else 160)
    X, y = load_galaxy10(
        path,
        crop=crop,
        image_size=image_size,
        chunk_size=chunk_size,
        cache_dir=False,
        return_X_y=True,
        verbose=0,
    )
    np.testing.assert_array_equal(X, frame_images(images, crop=crop, image_size=image_size))
    assert X.dtype == np.uint8


def test_chunked_hdf5_layout(tmp_path):
    # a compressed, chunked dataset (as astroNN writes) reads the same
    path = tmp_path / "g.h5"
    images, ans = _write_decals(path, n=10, size=128, chunks=(3, 128, 128, 3))
    X, y = load_galaxy10(path, chunk_size=4, cache_dir=False, return_X_y=True, verbose=0)
    np.testing.assert_array_equal(X, frame_images(images, crop=64, image_size=64))
    np.testing.assert_array_equal(y, ans)


def test_sdss_missing_columns_are_nan(sdss, cache):
    path, images, ans = sdss
    data = load_galaxy10(path, crop=None, image_size=None, cache_dir=cache, verbose=0)
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.target, ans)
    for k in ("ra", "dec", "redshift", "pxscale"):
        assert data[k].shape == (len(ans),)
        assert np.isnan(data[k]).all()
    assert "SDSS" in data.DESCR
    X, _ = load_galaxy10(path, cache_dir=cache, return_X_y=True, verbose=0)
    np.testing.assert_array_equal(X, images[:, 2:66, 2:66])


def test_return_X_y(decals, cache):
    path, images, ans = decals
    X, y = load_galaxy10(path, crop=128, image_size=32, cache_dir=cache, return_X_y=True, verbose=0)
    assert X.shape == (N_DECALS, 32, 32, 3)
    np.testing.assert_array_equal(y, ans)


def test_cache_hit_does_not_open_hdf5(decals, cache, monkeypatch):
    path, _, _ = decals
    first = load_galaxy10(path, cache_dir=cache, verbose=0)
    assert len(list(cache.glob("*.npz"))) == 1
    _forbid_h5(monkeypatch)
    second = load_galaxy10(path, cache_dir=cache, verbose=0)
    for k in ("images", "target", "ra", "dec", "redshift", "pxscale"):
        np.testing.assert_array_equal(first[k], second[k])
    # another framing is another cache entry, so it needs the file
    with pytest.raises(AssertionError, match="HDF5 file was opened"):
        load_galaxy10(path, crop=128, image_size=64, cache_dir=cache, verbose=0)


def test_cache_dir_from_environment(decals, tmp_path, monkeypatch):
    path, _, _ = decals
    monkeypatch.setenv("GALAXYSIM_CACHE", str(tmp_path / "envcache"))
    load_galaxy10(path, verbose=0)
    assert len(list((tmp_path / "envcache").glob("galaxy10_*.npz"))) == 1


def test_cache_disabled(decals, cache, monkeypatch):
    path, _, _ = decals
    monkeypatch.setenv("GALAXYSIM_CACHE", str(cache))
    load_galaxy10(path, cache_dir=False, verbose=0)
    assert not cache.exists()


def test_stale_cache_rebuilt(tmp_path, cache):
    path = tmp_path / "g.h5"
    _write_decals(path, seed=0)
    old = load_galaxy10(path, cache_dir=cache, verbose=0)
    new_images, new_ans = _write_decals(path, seed=1)  # same size, new content
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    new = load_galaxy10(path, cache_dir=cache, verbose=0)
    assert not np.array_equal(old.images, new.images)
    np.testing.assert_array_equal(new.images, new_images[:, 96:160, 96:160])
    np.testing.assert_array_equal(new.target, new_ans)
    assert len(list(cache.glob("*.npz"))) == 1  # overwritten, not piled up


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_cache_rebuilt_with_warning(decals, cache, damage):
    path, images, _ = decals
    load_galaxy10(path, cache_dir=cache, verbose=0)
    (cache_file,) = cache.glob("*.npz")
    raw = cache_file.read_bytes()
    if damage == "truncate":
        cache_file.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        cache_file.write_bytes(b"not a zip file" * 100)
    else:
        cache_file.write_bytes(b"")
    with pytest.warns(RuntimeWarning, match="cache .* is corrupt.*rebuilding"):
        data = load_galaxy10(path, cache_dir=cache, verbose=0)
    np.testing.assert_array_equal(data.images, images[:, 96:160, 96:160])
    # rebuilt: the next call is a clean cache hit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_galaxy10(path, cache_dir=cache, verbose=0)
    assert cache_file.stat().st_size == len(raw)


def test_interrupted_cache_write_leaves_nothing(decals, cache, monkeypatch):
    path, _, _ = decals
    real_savez = np.savez

    def savez_then_crash(f, **arrays):
        real_savez(f, **arrays)  # part of the data reached the temporary file
        raise KeyboardInterrupt

    monkeypatch.setattr(g10mod.np, "savez", savez_then_crash)
    with pytest.raises(KeyboardInterrupt):
        load_galaxy10(path, cache_dir=cache, verbose=0)
    assert list(cache.iterdir()) == []  # no cache file, no temporary left behind
    monkeypatch.undo()
    data = load_galaxy10(path, cache_dir=cache, verbose=0)
    assert data.images.shape == (N_DECALS, 64, 64, 3)


def test_unwritable_cache_warns_and_loads(decals, tmp_path):
    path, _, _ = decals
    blocker = tmp_path / "file_not_dir"
    blocker.write_text("x")
    with pytest.warns(RuntimeWarning, match="Could not write the galaxysim cache"):
        data = load_galaxy10(path, cache_dir=blocker / "sub", verbose=0)
    assert data.images.shape == (N_DECALS, 64, 64, 3)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Galaxy10 file not found: .*nope.h5"):
        load_galaxy10(tmp_path / "nope.h5", verbose=0)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(IsADirectoryError, match="load_image_folder"):
        load_galaxy10(tmp_path, verbose=0)


def test_not_hdf5(tmp_path):
    path = tmp_path / "fake.h5"
    path.write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(OSError, match="truncated or corrupt.*download it again"):
        load_galaxy10(path, cache_dir=False, verbose=0)


def test_truncated_hdf5(decals):
    path, _, _ = decals
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(OSError, match="truncated or corrupt.*download it again"):
        load_galaxy10(path, cache_dir=False, verbose=0)


@pytest.mark.parametrize("present", [("images",), ("ans", "ra"), ()])
def test_missing_datasets_list_keys(tmp_path, present):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        for k in present:
            f.create_dataset(k, data=np.zeros((3, 8, 8, 3) if k == "images" else 3, np.uint8))
        f.create_dataset("other", data=[1])
    with pytest.raises(KeyError, match=r"keys found: \[.*'other'.*\]"):
        load_galaxy10(path, cache_dir=False, verbose=0)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((4, 64, 64), r"'images' has shape \(4, 64, 64\)"),
        ((4, 64, 64, 4), r"expected \(n_samples, height, width, 3\)"),
        ((0, 64, 64, 3), r"'images' has shape \(0, 64, 64, 3\)"),
    ],
)
def test_wrong_image_shape(tmp_path, shape, match):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros(shape, np.uint8))
        f.create_dataset("ans", data=np.zeros(shape[0], np.uint8))
    with pytest.raises(ValueError, match=match):
        load_galaxy10(path, cache_dir=False, verbose=0)


def test_labels_do_not_match_images(tmp_path):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((4, 64, 64, 3), np.uint8))
        f.create_dataset("ans", data=np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="'ans' has shape .*holds 4 images"):
        load_galaxy10(path, cache_dir=False, verbose=0)


def test_crop_larger_than_images(sdss):
    path, _, _ = sdss
    with pytest.raises(ValueError, match=r"crop=128 is larger than the 69x69 images"):
        load_galaxy10(path, crop=128, cache_dir=False, verbose=0)


@pytest.mark.parametrize("param", ["crop", "image_size"])
@pytest.mark.parametrize("value", [0, -3, 2.5, "64"])
def test_bad_sizes(decals, param, value):
    path, _, _ = decals
    with pytest.raises(ValueError, match=f"{param} must be a positive int or None"):
        load_galaxy10(path, cache_dir=False, verbose=0, **{param: value})


def test_float_images_are_converted(tmp_path):
    path = tmp_path / "g.h5"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 64, 64, 3)).astype(np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images.astype(np.float32) / 255)
        f.create_dataset("ans", data=np.zeros(3, np.uint8))
    X, _ = load_galaxy10(path, cache_dir=False, return_X_y=True, verbose=0)
    np.testing.assert_array_equal(X, images)
