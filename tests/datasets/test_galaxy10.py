import io
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


def test_cache_hit_does_not_read_images(decals, cache, monkeypatch):
    path, _, _ = decals
    first = load_galaxy10(path, cache_dir=cache, verbose=0)
    assert len(list(cache.glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the images were read despite a valid cache")

    monkeypatch.setattr(g10mod, "_read_images", fail)
    second = load_galaxy10(path, cache_dir=cache, verbose=0)
    for k in ("images", "target", "ra", "dec", "redshift", "pxscale"):
        np.testing.assert_array_equal(first[k], second[k])
    # another framing is another cache entry, so it needs the images
    with pytest.raises(AssertionError, match="images were read"):
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


@pytest.mark.parametrize("present", [("ans", "ra"), ()])
def test_missing_datasets_list_keys(tmp_path, present):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        for k in present:
            f.create_dataset(k, data=np.zeros((3, 8, 8, 3) if k == "images" else 3, np.uint8))
        f.create_dataset("other", data=[1])
    with pytest.raises(KeyError, match=r"keys found: \[.*'other'.*\]"):
        load_galaxy10(path, cache_dir=False, verbose=0)


def test_file_without_ans_loads_unlabelled(tmp_path):
    # like a folder without labels: target and target_names None, said in DESCR
    path = tmp_path / "g.h5"
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("ra", data=np.arange(4.0))
    for cache_dir in (False, tmp_path / "cache", tmp_path / "cache"):  # no cache, write, read
        data = load_galaxy10(path, cache_dir=cache_dir, verbose=0)
        assert data.target is None and data.target_names is None
        np.testing.assert_array_equal(data.images, images)
        np.testing.assert_array_equal(data.ra, np.arange(4.0))
        assert "without labels (the file has no 'ans' dataset" in data.DESCR
    X, y = load_galaxy10(path, cache_dir=False, return_X_y=True, verbose=0)
    assert y is None and X.shape == (4, 64, 64, 3)


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


# --------------------------------------------------------------- labels are checked
def _write(path, images=None, ans=None, n=6, **extra):
    """A small Galaxy10-like file: 32x32 images, labels and any extra datasets."""
    rng = np.random.default_rng(0)
    if images is None:
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    if ans is None:
        ans = np.arange(len(images)) % 10
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("ans", data=ans)
        for k, v in extra.items():
            f.create_dataset(k, data=v)
    return images


def _load(path, **kwargs):
    return load_galaxy10(path, crop=None, image_size=None, cache_dir=False, verbose=0, **kwargs)


@pytest.mark.parametrize(
    "ans, match",
    [
        (
            [0.0, 1.0, np.nan, 3.0, 4.0, 5.0],
            r"'ans' holds 1 of 6 labels that are not whole numbers \(row 2: nan\)",
        ),
        (
            [0.5, 1.5, 2.0, 3.0, 4.0, 5.0],
            r"2 of 6 labels that are not whole numbers \(rows 0, 1: 0\.5, 1\.5\)",
        ),
        ([40, 41, 42, 43, 44, 45], r"6 of 6 labels outside the Galaxy10 codes 0-9 \(values 40"),
        (
            [-5, -4, -3, -2, 3, 4],
            r"4 of 6 labels outside the Galaxy10 codes 0-9 \(values -5, -4, -3, -2; rows 0, 1, 2, 3\)",
        ),
        ([0, 1, 2, 3, 4, np.inf], r"1 of 6 labels that are not whole numbers \(row 5: inf\)"),
        ([True, False, True, False, True, True], r"'ans' has dtype bool"),
    ],
)
def test_labels_must_be_class_codes(tmp_path, ans, match):
    path = tmp_path / "g.h5"
    _write(path, ans=np.array(ans))
    with pytest.raises(ValueError, match=match):
        _load(path)


def test_many_bad_labels_are_summarised(tmp_path):
    path = tmp_path / "g.h5"
    ans = np.arange(20) + 5  # 5..24: 15 of 20 outside 0-9
    _write(path, images=np.zeros((20, 8, 8, 3), np.uint8), ans=ans)
    with pytest.raises(
        ValueError,
        match=r"15 of 20 labels .*values 10, 11, 12, 13, 14, \.\.\.; rows 5, 6, 7, 8, 9 and 10 more",
    ):
        _load(path)


def test_whole_float_labels_are_read_as_ints(tmp_path):
    path = tmp_path / "g.h5"
    _write(path, ans=np.array([0.0, 9.0, 5.0, 1.0, 2.0, 3.0], np.float32))
    _, y = _load(path, return_X_y=True)
    assert y.dtype == np.int64 and y.tolist() == [0, 9, 5, 1, 2, 3]


@pytest.mark.parametrize("dtype", ["S2", "vlen-bytes", "vlen-str"])
def test_digit_string_labels_are_parsed(tmp_path, dtype):
    path = tmp_path / "g.h5"
    labels = ["5", "0", " 9", "3", "+1", "2"]
    if dtype == "S2":
        ans = np.array([v.strip().encode() for v in labels], dtype="S2")
    elif dtype == "vlen-bytes":
        ans = np.array([v.encode() for v in labels], dtype=h5py.string_dtype("ascii"))
    else:
        ans = np.array(labels, dtype=h5py.string_dtype())
    _write(path, ans=ans)
    data = _load(path)
    assert data.target.dtype == np.int64
    assert data.target.tolist() == [5, 0, 9, 3, 1, 2]
    assert data.target_names[data.target[0]] == "Barred Spiral"


@pytest.mark.parametrize(
    "labels, match",
    [
        (
            [b"Spiral", b"0", b"1", b"x", b"2.5", b""],
            r"4 of 6 are not integers \(rows 0, 3, 4, 5: 'Spiral', 'x', '2\.5', ''\)",
        ),
        (
            [b"12", b"0", b"1", b"2", b"3", b"4"],
            r"1 of 6 labels outside the Galaxy10 codes 0-9 \(values 12; row 0\)",
        ),
    ],
)
def test_bad_string_labels(tmp_path, labels, match):
    path = tmp_path / "g.h5"
    _write(path, ans=np.array(labels, dtype="S6"))
    with pytest.raises(ValueError, match=match):
        _load(path)


@pytest.mark.parametrize("on", ["ans", "file"])
def test_file_declares_its_class_names(tmp_path, on):
    path = tmp_path / "g.h5"
    _write(path, ans=np.array([0, 1, 2, 2, 1, 0], np.uint8))
    with h5py.File(path, "a") as f:
        (f["ans"] if on == "ans" else f).attrs["class_names"] = ["elliptical", "spiral", "merger"]
    data = _load(path)
    assert data.target_names.tolist() == ["elliptical", "spiral", "merger"]
    assert data.target_names[data.target[2]] == "merger"
    assert "3 morphological classes" in data.DESCR and "class 0-2" in data.DESCR
    with h5py.File(path, "a") as f:
        f["ans"][0] = 3
    with pytest.raises(
        ValueError, match=r"outside the codes 0-2 of the file's class_names \(values 3; row 0\)"
    ):
        _load(path)


def test_bad_class_names_attribute(tmp_path):
    path = tmp_path / "g.h5"
    _write(path)
    with h5py.File(path, "a") as f:
        f["ans"].attrs["class_names"] = np.zeros((2, 2))
    with pytest.raises(
        ValueError, match="attribute 'class_names' of 'ans'.*list of non-empty strings"
    ):
        _load(path)


# ----------------------------------------------------------------- columns are checked
@pytest.mark.parametrize("column", ["ra", "dec", "redshift", "pxscale"])
def test_shorter_column_is_an_error(tmp_path, column):
    path = tmp_path / "g.h5"
    _write(path, **{column: np.zeros(5)})  # 6 images
    with pytest.raises(
        ValueError, match=rf"the column '{column}' has shape \(5,\) but 'images' holds 6 images"
    ):
        _load(path)


def test_column_of_strings_or_group_is_an_error(tmp_path):
    path = tmp_path / "g.h5"
    _write(path, ra=np.array([b"1"] * 6))
    with pytest.raises(ValueError, match=r"the column 'ra' has dtype \|S1; expected numbers"):
        _load(path)
    _write(path)
    with h5py.File(path, "a") as f:
        f.create_group("dec")
    with pytest.raises(ValueError, match="'dec' is a group, not a dataset"):
        _load(path)


def test_integer_column_is_read_as_float(tmp_path):
    path = tmp_path / "g.h5"
    _write(path, ra=np.arange(6))
    data = _load(path)
    assert data.ra.dtype == np.float64 and data.ra.tolist() == [0, 1, 2, 3, 4, 5]
    assert np.isnan(data.dec).all()


# ------------------------------------------------- data that is not there is not zeros
def _write_virtual(path, source, n=6, name="data"):
    images = np.random.default_rng(3).integers(1, 256, size=(n, 16, 16, 3), dtype=np.uint8)
    with h5py.File(source, "w") as f:
        f.create_dataset(name, data=images)
    layout = h5py.VirtualLayout(shape=images.shape, dtype=np.uint8)
    layout[:] = h5py.VirtualSource(source.name, name, shape=images.shape)
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("images", layout, fillvalue=0)
        f.create_dataset("ans", data=np.arange(n) % 10)
    return images


def test_virtual_dataset_reads_its_source(tmp_path, monkeypatch):
    images = _write_virtual(tmp_path / "g.h5", tmp_path / "src.h5")
    monkeypatch.chdir(tmp_path.parent)  # found beside the virtual file, as HDF5 does
    X, _ = _load(tmp_path / "g.h5", return_X_y=True)
    np.testing.assert_array_equal(X, images)


def test_virtual_dataset_with_missing_source_is_an_error(tmp_path):
    _write_virtual(tmp_path / "g.h5", tmp_path / "src.h5")
    (tmp_path / "src.h5").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"'images' is a virtual dataset whose source file src\.h5 is missing .*zeros for rows 0-5",
    ):
        _load(tmp_path / "g.h5")


def test_virtual_dataset_with_missing_or_small_source_dataset(tmp_path):
    _write_virtual(tmp_path / "g.h5", tmp_path / "src.h5")
    with h5py.File(tmp_path / "src.h5", "a") as f:
        del f["data"]
    with pytest.raises(ValueError, match=r"source data in .*src\.h5 does not exist"):
        _load(tmp_path / "g.h5")
    with h5py.File(tmp_path / "src.h5", "a") as f:
        f.create_dataset("data", data=np.ones((3, 16, 16, 3), np.uint8))  # 3 of 6 images
    with pytest.raises(ValueError, match=r"has shape \(3, 16, 16, 3\), too small"):
        _load(tmp_path / "g.h5")


def test_chunks_never_written_are_an_error(tmp_path):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("images", shape=(6, 16, 16, 3), dtype=np.uint8, chunks=(2, 16, 16, 3))
        d[:2] = 7  # an interrupted write: 4 images never reached the file
        f.create_dataset("ans", data=np.zeros(6, np.uint8))
    with pytest.raises(ValueError, match=r"'images' only 1 of its 3 HDF5 chunks were ever written"):
        _load(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(6, 16, 16, 3), dtype=np.uint8)  # contiguous, empty
        f.create_dataset("ans", data=np.zeros(6, np.uint8))
    with pytest.raises(ValueError, match=r"'images' its data were never written"):
        _load(path)


def test_external_storage_short_or_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # HDF5 finds external raw files from the working dir
    images = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    images.tofile("raw.bin")
    with h5py.File("g.h5", "w") as f:
        f.create_dataset(
            "images", shape=images.shape, dtype=np.uint8, external=[("raw.bin", 0, images.nbytes)]
        )
        f.create_dataset("ans", data=np.zeros(4, np.uint8))
    X, _ = _load(tmp_path / "g.h5", return_X_y=True)
    np.testing.assert_array_equal(X, images)
    with open("raw.bin", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(
        ValueError, match=r"external file .*raw\.bin, which holds 100 bytes but should hold 768"
    ):
        _load(tmp_path / "g.h5")
    os.remove("raw.bin")
    with pytest.raises(FileNotFoundError, match=r"external file raw\.bin, which is missing"):
        _load(tmp_path / "g.h5")


# ---------------------------------------------------------------- links and odd files
def _links(path, **links):
    with h5py.File(path, "a") as f:
        for k, v in links.items():
            f[k] = v


def test_soft_and_external_links_to_data_are_followed(tmp_path):
    images = _write(tmp_path / "data.h5")
    with h5py.File(tmp_path / "data.h5", "a") as f:
        f.create_group("real")
        f.move("images", "real/images")
        f["alias"] = h5py.SoftLink("/real")
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["images"] = h5py.ExternalLink("data.h5", "/alias/images")  # external, then soft
        f["ans"] = h5py.ExternalLink("data.h5", "ans")
    data = _load(tmp_path / "g.h5")
    np.testing.assert_array_equal(data.images, images)
    assert data.target.tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "kind, match",
    [
        ("soft-loop", r"'images' is a loop of HDF5 links .*'images' -> /a -> /images"),
        ("self-external", r"'images' is a loop of HDF5 links .*g\.h5:/images"),
        ("external-loop", r"'images' is a loop of HDF5 links .*other\.h5:/images -> g\.h5:/images"),
        ("chain", r"'images' is a chain of more than 16 HDF5 links"),
        ("dangling-soft", r"'images' is a link to /nowhere, which does not exist"),
        ("dangling-external", r"'images' is an external link to gone\.h5, which is missing"),
    ],
)
def test_bad_links_are_clear_errors(tmp_path, kind, match):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("ans", data=np.zeros(3, np.uint8))
        if kind == "soft-loop":
            f["images"], f["a"] = h5py.SoftLink("/a"), h5py.SoftLink("/images")
        elif kind == "self-external":
            f["images"] = h5py.ExternalLink("g.h5", "/images")
        elif kind == "external-loop":
            f["images"] = h5py.ExternalLink("other.h5", "/images")
            with h5py.File(tmp_path / "other.h5", "w") as g:
                g["images"] = h5py.ExternalLink("g.h5", "/images")
        elif kind == "chain":
            f["images"] = h5py.SoftLink("/l0")
            for i in range(30):
                f[f"l{i}"] = h5py.SoftLink(f"/l{i + 1}")
        elif kind == "dangling-soft":
            f["images"] = h5py.SoftLink("/nowhere")
        else:
            f["images"] = h5py.ExternalLink("gone.h5", "/images")
    with pytest.raises(ValueError, match=match):
        _load(path)


def test_images_group_or_odd_dtype(tmp_path):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_group("images").create_dataset("x", data=[1])
        f.create_dataset("ans", data=np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="'images' is a group, not a dataset"):
        _load(path)
    for dtype in (np.bool_, np.complex64, "S1"):
        _write(path, images=np.zeros((3, 8, 8, 3), dtype=dtype), ans=np.zeros(3, np.uint8))
        with pytest.raises(ValueError, match=r"'images' has dtype .*; expected uint8"):
            _load(path)


def test_float_images_with_nan(tmp_path):
    path = tmp_path / "g.h5"
    images = np.full((4, 8, 8, 3), 0.5, np.float32)
    images[2, 1, 1, 0] = np.nan
    _write(path, images=images, ans=np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match=r"NaN or infinite pixels in 1 of 4 images \(image 2\)"):
        _load(path)


def test_float_images_are_scaled_alike_in_every_chunk(tmp_path):
    # 0-255 floats whose first images are dark (<= 1): chunks must not be scaled apart
    path = tmp_path / "g.h5"
    images = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8, 3)).astype(np.float32)
    images[:2] = np.round(images[:2] / 255)
    _write(path, images=images, ans=np.zeros(6, np.uint8))
    X, _ = _load(path, chunk_size=2, return_X_y=True)
    np.testing.assert_array_equal(X, images.astype(np.uint8))


def test_fifo_is_refused_before_opening(tmp_path, unblock_fifo_later):
    fifo = tmp_path / "f.h5"
    os.mkfifo(fifo)
    with unblock_fifo_later(fifo) as late:
        with pytest.raises(ValueError, match=r"f\.h5 is a named pipe \(FIFO\), not a regular file"):
            load_galaxy10(fifo, verbose=0)
        assert not late()  # refused at once, not after blocking


def test_external_link_to_fifo_is_refused(tmp_path, unblock_fifo_later):
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["images"] = h5py.ExternalLink("pipe.h5", "/images")
        f.create_dataset("ans", data=np.zeros(3, np.uint8))
    with unblock_fifo_later(fifo) as late:
        with pytest.raises(
            ValueError, match=r"pipe\.h5 is a named pipe \(FIFO\), not a regular file"
        ):
            _load(tmp_path / "g.h5")
        assert not late()


# ------------------------------------------------------------ the cache keys on content
def _same_stat(path, like):
    st = os.stat(like)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("sampled", [False, True])
def test_cache_tells_files_of_same_size_and_mtime_apart(tmp_path, cache, monkeypatch, sampled):
    if sampled:  # the 2.5 GB case: only blocks spread over the file are hashed
        monkeypatch.setattr(g10mod, "_SAMPLE_BYTES", 1024)
    path = tmp_path / "g.h5"
    old_images, ans = _write_decals(path, seed=0)
    st = os.stat(path)
    old = load_galaxy10(path, cache_dir=cache, verbose=0)
    np.testing.assert_array_equal(old.images, old_images[:, 96:160, 96:160])
    # `cp -p other.h5 g.h5`: same size, same time stamp, same labels, other images
    rng = np.random.default_rng(1)
    new_images = rng.integers(0, 256, size=old_images.shape, dtype=np.uint8)
    with h5py.File(path, "r+") as f:
        f["images"][...] = new_images
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size
    new = load_galaxy10(path, cache_dir=cache, verbose=0)
    np.testing.assert_array_equal(new.images, new_images[:, 96:160, 96:160])
    np.testing.assert_array_equal(new.target, ans)


def test_cache_tells_labels_apart(tmp_path, cache):
    path = tmp_path / "g.h5"
    _write_decals(path, seed=0)
    st = os.stat(path)
    load_galaxy10(path, cache_dir=cache, verbose=0)
    with h5py.File(path, "r+") as f:
        f["ans"][0] = (f["ans"][0] + 1) % 10
        new_ans = f["ans"][()]
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    data = load_galaxy10(path, cache_dir=cache, verbose=0)
    np.testing.assert_array_equal(data.target, new_ans)


def test_cache_of_older_version_is_rebuilt_quietly(decals, cache):
    path, images, _ = decals
    load_galaxy10(path, cache_dir=cache, verbose=0)
    (cache_file,) = cache.glob("*.npz")
    np.savez(cache_file, signature=np.zeros(3, np.int64), images=np.zeros((1, 64, 64, 3), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_galaxy10(path, cache_dir=cache, verbose=0)
    np.testing.assert_array_equal(data.images, images[:, 96:160, 96:160])


def test_content_key_reads_a_sample_of_large_files(tmp_path, monkeypatch):
    # a sparse 2.5 GB file: only the 64 sampled blocks (4 MiB) are read
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(2_500_000_000)
    read = []

    class Counting(io.FileIO):
        def read(self, size=-1):
            data = super().read(size)
            read.append(len(data))
            return data

    monkeypatch.setattr(g10mod, "open", lambda p, mode: Counting(p, mode), raising=False)
    g10mod._file_sample(str(big))
    assert len(read) == 64 and sum(read) == 64 * 64 * 1024


# ------------------------------------------------------------------------ memory
def test_memory_is_checked_before_reading(decals, monkeypatch):
    import galaxysim.utils._memory as memory

    path, _, _ = decals
    monkeypatch.setattr(memory, "available_memory", lambda: 10 * 64 * 64 * 3)
    monkeypatch.setattr(g10mod, "_float_scale", None)  # nothing is read before the check
    with pytest.raises(
        MemoryError, match=r"23 images framed at 64x64\) would take .*\(room for about \d+ images\)"
    ):
        load_galaxy10(path, cache_dir=False, verbose=0)
