"""Lazy catalogues: open_catalogue over HDF5, Zarr and folders, block by block."""

import csv
import os
import pickle
import sys
import tracemalloc

import h5py
import numpy as np
import pytest
import zarr
from PIL import Image

from galaxysim import GALAXY10_CLASSES
from galaxysim.datasets import load_galaxy10, load_image_folder, open_catalogue
from galaxysim.utils._image import frame_images


def _write_h5(path, n=23, size=80, chunks=(4, 80, 80, 3), seed=0, labels="ans"):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "images", data=images, chunks=chunks, compression="gzip" if chunks else None
        )
        if labels:
            f.create_dataset(labels, data=rng.integers(0, 10, size=n).astype(np.uint8))
        f.create_dataset("ra", data=rng.uniform(0, 360, size=n))
        f.create_dataset("dec", data=rng.uniform(-30, 60, size=n))
        f.create_dataset("redshift", data=np.full(n, np.nan))
    return images


@pytest.fixture
def h5file(tmp_path):
    path = tmp_path / "Galaxy10_DECals.h5"
    return path, _write_h5(path)


@pytest.fixture
def folder(tmp_path):
    """Seven PNGs of two sizes' worth of content, with a labels CSV."""
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    arrays, rows = [], []
    for i in range(7):
        a = rng.integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
        name = f"images/g{i}.png"
        Image.fromarray(a).save(tmp_path / name)
        arrays.append(a)
        rows.append([name, ["spiral", "elliptical"][i % 2]])
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "morphology"], *rows])
    return tmp_path, np.stack(arrays), rows


@pytest.mark.parametrize(
    ("crop", "image_size", "block_size"), [("auto", 64, 5), (None, 32, 8), (40, None, 100)]
)
def test_hdf5_equals_load_galaxy10(h5file, crop, image_size, block_size):
    path, _ = h5file
    data = open_catalogue(path, crop=crop, image_size=image_size, block_size=block_size)
    ref = load_galaxy10(
        path, crop=64 if crop == "auto" else crop, image_size=image_size, cache_dir=False,
        verbose=0,
    )  # fmt: skip
    assert data.kind == "hdf5" and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images.compute(), ref.images)
    np.testing.assert_array_equal(data.target, ref.target)
    assert data.target_names.tolist() == list(GALAXY10_CLASSES)
    assert data.identifiers == ("index", "ra", "dec", "redshift")  # pxscale absent
    np.testing.assert_array_equal(data.index, np.arange(23))
    np.testing.assert_array_equal(data.ra, ref.ra)
    # blocks are whole storage chunks (4 rows): 5 -> 8
    expected = -(-block_size // 4) * 4
    assert data.images.chunks[0][0] == min(expected, 23)
    assert data.label_column == "ans"


def test_hdf5_unchunked_without_labels(tmp_path):
    path = tmp_path / "plain.h5"
    images = _write_h5(path, n=9, chunks=None, labels=None)
    data = open_catalogue(path, crop=None, image_size=None, block_size=4)
    assert data.images.chunks[0] == (4, 4, 1)
    np.testing.assert_array_equal(data.images.compute(), images)
    assert data.target is None and data.target_names is None


def test_zarr_store(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(11, 48, 48, 3), dtype=np.uint8)
    g = zarr.open_group(tmp_path / "cat.zarr", mode="w")
    g.create_array("images", data=images, chunks=(3, 48, 48, 3))
    g.create_array("labels", data=np.arange(11) % 3)
    g.create_array("ra", data=np.linspace(0, 1, 11))
    g.attrs["target_names"] = ["E", "S", "Edge-on"]
    data = open_catalogue(tmp_path / "cat.zarr", image_size=32, block_size=4)
    assert data.kind == "zarr"
    assert data.images.chunks[0] == (6, 5)  # whole chunks of 3 rows
    np.testing.assert_array_equal(data.images.compute(), frame_images(images, image_size=32))
    assert data.target.tolist() == (np.arange(11) % 3).tolist()
    assert data.target_names.tolist() == ["E", "S", "Edge-on"]
    assert data.identifiers == ("index", "ra")


def test_folder_equals_load_image_folder(folder):
    path, _, rows = folder
    data = open_catalogue(path, crop=64, image_size=32, block_size=3)
    ref = load_image_folder(path, crop=64, image_size=32, verbose=0)
    assert data.kind == "folder" and data.images.chunks[0] == (3, 3, 1)
    np.testing.assert_array_equal(data.images.compute(), ref.images)
    np.testing.assert_array_equal(data.target, ref.target)
    assert data.target_names.tolist() == ref.target_names.tolist()
    assert data.file.tolist() == [r[0] for r in rows]
    assert data.identifiers == ("index", "file")
    assert data.label_column == "morphology"


def test_folder_without_csv_keeps_the_whole_frame(folder):
    path, arrays, _ = folder
    data = open_catalogue(path, labels_csv=False, image_size=None, block_size=4)
    assert data.images.shape == (7, 96, 96, 3) and data.target is None
    np.testing.assert_array_equal(data.images.compute(), arrays)
    assert data.file.tolist() == [f"images/g{i}.png" for i in range(7)]


def test_tasks_are_picklable_and_hold_no_open_file(h5file, folder):
    for data in (open_catalogue(h5file[0], block_size=8), open_catalogue(folder[0])):
        # plain pickle (no cloudpickle) of the whole graph, as process workers need
        restored = pickle.loads(pickle.dumps(data.images))
        np.testing.assert_array_equal(
            restored.compute(scheduler="synchronous"), data.images.compute()
        )


def test_the_same_catalogue_gets_the_same_name(h5file):
    a = open_catalogue(h5file[0], block_size=8)
    b = open_catalogue(h5file[0], block_size=8)
    c = open_catalogue(h5file[0], block_size=8, image_size=32)
    assert a.images.name == b.images.name != c.images.name


def test_memory_is_bounded_whatever_the_catalogue_size(tmp_path):
    """20,000 images of 256x256 (3.9 GB raw) read in blocks: peak stays a few blocks."""
    path = tmp_path / "big.h5"
    n = 20000
    with h5py.File(path, "w") as f:  # chunks never written read as zeros: a tiny file
        f.create_dataset("images", shape=(n, 256, 256, 3), dtype=np.uint8, chunks=(16, 256, 256, 3))
        f.create_dataset("ans", data=np.zeros(n, np.uint8))
    data = open_catalogue(path, block_size=512)
    block_bytes = 512 * 64 * 64 * 3  # 6.3 MB
    tracemalloc.start()
    try:
        total = 0
        for b in range(data.images.numblocks[0]):  # blocks computed one by one
            total += int(data.images.blocks[b].compute(scheduler="synchronous").sum())
        assert int(data.images.max().compute(scheduler="synchronous")) == 0  # a reduction
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 0
    assert peak < 6 * block_bytes, f"peak {peak / 1e6:.1f} MB"
    assert data.images.nbytes > 6 * 6 * block_bytes  # even framed, the catalogue is far larger


def test_corrupt_image_names_the_file_and_the_images(folder):
    path, _, _ = folder
    (path / "images" / "g4.png").write_bytes(b"not a png at all")
    data = open_catalogue(path, block_size=3)  # opening reads no pixels
    data.images.blocks[0].compute()  # the other blocks still read
    with pytest.raises(
        ValueError, match=r"g4\.png \(catalogue image 4, in the block of catalogue images 3 to 5\)"
    ):
        data.images.compute()


def test_corrupt_hdf5_chunk_names_the_file_and_the_images(h5file):
    path, _ = h5file
    with h5py.File(path, "r") as f:
        info = f["images"].id.get_chunk_info(2)  # rows 8-11
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns))
    data = open_catalogue(path, block_size=4)
    data.images.blocks[1].compute()
    with pytest.raises(OSError, match=r"images 8 to 11 of .*Galaxy10_DECals\.h5.*corrupt"):
        data.images.blocks[2].compute()


def test_a_file_changed_after_opening_is_refused(h5file):
    path, _ = h5file
    data = open_catalogue(path)
    _write_h5(path, seed=5)
    with pytest.raises(ValueError, match="changed since the catalogue was opened"):
        data.images.compute()


def test_errors(tmp_path, h5file, folder):
    path, _ = h5file
    with pytest.raises(FileNotFoundError, match="Catalogue not found"):
        open_catalogue(tmp_path / "nope.h5")
    with pytest.raises(ValueError, match=r"no array 'kind'.*keys found: \['ans', 'dec'"):
        open_catalogue(path, label_column="kind")
    with pytest.raises(ValueError, match="crop=100 is larger than the 80x80 images"):
        open_catalogue(path, crop=100)
    with pytest.raises(ValueError, match="labels_csv is for folders"):
        open_catalogue(path, labels_csv="labels.csv")
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        open_catalogue(path, block_size=0)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("pixels", data=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"no 'images' array; keys found: \['pixels'\]"):
        open_catalogue(other)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="neither an HDF5 file, a Zarr store nor a folder"):
        open_catalogue(text)
    fpath, _, _ = folder
    os.remove(fpath / "images" / "g2.png")
    with pytest.raises(FileNotFoundError, match=r"1 of the 7 files named in .*g2\.png"):
        open_catalogue(fpath)


def test_missing_dask_names_the_extra(h5file, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"pip install galaxysim\[dask\]"):
        open_catalogue(h5file[0])
