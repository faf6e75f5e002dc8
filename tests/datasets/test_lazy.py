"""Lazy catalogues: open_catalogue over HDF5, Zarr and folders, block by block."""

import contextlib
import csv
import os
import pickle
import sys
import tracemalloc
import zlib

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
    chunks = (64, 32, 32, 3)  # the 64 px crop is 2x2 chunks: little is decompressed
    zeros = zlib.compress(bytes(int(np.prod(chunks))))  # the gzip filter's stream
    with h5py.File(path, "w") as f:  # every chunk written (unwritten ones are refused)
        d = f.create_dataset(
            "images", shape=(n, 256, 256, 3), dtype=np.uint8, chunks=chunks, compression="gzip"
        )
        for s in range(0, n, chunks[0]):
            for i in range(0, 256, chunks[1]):
                for j in range(0, 256, chunks[2]):
                    d.id.write_direct_chunk((s, i, j, 0), zeros)  # a 5 MB file
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
    with pytest.raises(ValueError, match=r"no 'kind' dataset; keys found: \['ans', 'dec'"):
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
    with pytest.raises(ValueError, match=r"no 'images' dataset; keys found: \['pixels'\]"):
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


# ------------------------------------------- one way: the lazy loader checks as the eager
def _bad_h5(tmp_path, kind):
    """A file that load_galaxy10 refuses, for each kind of fault."""
    path = tmp_path / "bad.h5"
    if kind == "fifo":
        os.mkfifo(path)
        return path
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    ans = np.arange(6, dtype=np.uint8)
    with h5py.File(path, "w") as f:
        if kind == "virtual-source-missing":
            with h5py.File(tmp_path / "src.h5", "w") as g:
                g.create_dataset("data", data=images)
            layout = h5py.VirtualLayout(shape=images.shape, dtype=np.uint8)
            layout[:] = h5py.VirtualSource("src.h5", "data", shape=images.shape)
            f.create_virtual_dataset("images", layout, fillvalue=0)
        elif kind == "dangling-link":
            f["images"] = h5py.SoftLink("/nowhere")
        elif kind == "chunks-never-written":
            d = f.create_dataset(
                "images", shape=images.shape, dtype=np.uint8, chunks=(2, 16, 16, 3)
            )
            d[:2] = images[:2]
        elif kind == "nan-pixels":
            pixels = images / np.float32(255)
            pixels[4, 1, 1, 1] = np.nan
            f.create_dataset("images", data=pixels)
        else:
            f.create_dataset("images", data=images)
        if kind == "labels-out-of-range":
            ans[2] = 12
        elif kind == "labels-not-whole":
            ans = ans + np.float32(0.5)
        f.create_dataset("ans", data=ans)
        if kind == "bad-class-names":
            f["ans"].attrs["class_names"] = ["a", ""]
        if kind == "short-column":
            f.create_dataset("ra", data=np.zeros(5))
        if kind == "column-of-strings":
            f.create_dataset("dec", data=np.array([b"1"] * 6))
    if kind == "virtual-source-missing":
        (tmp_path / "src.h5").unlink()
    return path


@pytest.mark.parametrize(
    "kind",
    [
        "labels-out-of-range",
        "labels-not-whole",
        "bad-class-names",
        "short-column",
        "column-of-strings",
        "fifo",
        "virtual-source-missing",
        "dangling-link",
        "chunks-never-written",
        "nan-pixels",
    ],
)
def test_hdf5_refused_as_load_galaxy10_refuses_it(tmp_path, kind, unblock_fifo_later):
    path = _bad_h5(tmp_path, kind)
    with unblock_fifo_later(path) if kind == "fifo" else contextlib.nullcontext():
        with pytest.raises(Exception) as eager:
            load_galaxy10(path, crop=None, image_size=None, cache_dir=False, verbose=0)
        with pytest.raises(type(eager.value)) as lazy:
            open_catalogue(path, crop=None, image_size=None)
    assert str(lazy.value) == str(eager.value)
    assert str(path) in str(lazy.value)


def test_hdf5_float_images_are_scaled_alike_in_every_block(tmp_path):
    # 0-255 floats whose first images are dark (<= 1): blocks must not be scaled apart
    path = tmp_path / "f.h5"
    images = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8, 3)).astype(np.float32)
    images[:2] = np.round(images[:2] / 255)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("ans", data=np.zeros(6, np.uint8))
    data = open_catalogue(path, crop=None, image_size=None, block_size=2)
    ref = load_galaxy10(path, crop=None, image_size=None, cache_dir=False, verbose=0)
    np.testing.assert_array_equal(data.images.compute(), images.astype(np.uint8))
    np.testing.assert_array_equal(data.images.compute(), ref.images)


def test_hdf5_other_label_array_is_checked_the_same_way(tmp_path):
    path = tmp_path / "g.h5"
    _write_h5(path, n=6, size=16, chunks=None, labels="morph")
    with h5py.File(path, "a") as f:
        f["morph"][...] = [0, 2, 1, 2, 0, 1]
    data = open_catalogue(path, crop=None, label_column="morph")
    assert data.target.tolist() == [0, 2, 1, 2, 0, 1]
    assert data.target_names.tolist() == ["0", "1", "2"]  # no class_names: codes as names
    with h5py.File(path, "a") as f:
        f["morph"].attrs["class_names"] = ["E", "S"]
    with pytest.raises(
        ValueError, match=r"'morph' holds 2 of 6 labels outside the codes 0-1 of the file's"
    ):
        open_catalogue(path, crop=None, label_column="morph")
    with h5py.File(path, "a") as f:
        del f["morph"]
        f.create_dataset("morph", data=np.array([0, -1, 1, 2, 0, 1], np.int8))
    with pytest.raises(ValueError, match=r"'morph' holds 1 of 6 labels outside the codes >= 0"):
        open_catalogue(path, crop=None, label_column="morph")


def test_each_task_checks_every_file_it_reads(tmp_path):
    """A virtual dataset's source changed after opening: the task refuses it."""
    images = np.random.default_rng(3).integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "src.h5", "w") as g:
        g.create_dataset("data", data=images)
    layout = h5py.VirtualLayout(shape=images.shape, dtype=np.uint8)
    layout[:] = h5py.VirtualSource("src.h5", "data", shape=images.shape)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_virtual_dataset("images", layout, fillvalue=0)
    data = open_catalogue(tmp_path / "v.h5", crop=None, image_size=None, block_size=3)
    np.testing.assert_array_equal(data.images.compute(), images)
    with h5py.File(tmp_path / "src.h5", "w") as g:  # the source, now 3 images
        g.create_dataset("data", data=images[:3])
    with pytest.raises(ValueError, match="source data in .*src.h5 has shape .*too small"):
        data.images.compute()  # re-opened through the checked opener
    with h5py.File(tmp_path / "src.h5", "w") as g:  # same shape, other pixels
        g.create_dataset("data", data=images[::-1])
    with pytest.raises(ValueError, match="changed since the catalogue was opened"):
        data.images.compute()


def _zarr(tmp_path, n=6, labels=None, names=None, **columns):
    rng = np.random.default_rng(2)
    g = zarr.open_group(tmp_path / "cat.zarr", mode="w")
    g.create_array("images", data=rng.integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8))
    if labels is not None:
        g.create_array("labels", data=np.asarray(labels))
    if names is not None:
        g.attrs["target_names"] = names
    for k, v in columns.items():
        g.create_array(k, data=v)
    return tmp_path / "cat.zarr"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"labels": [0, 1, 2, 3, 1, 0], "names": ["E", "S", "Edge-on"]},
            r"'labels' holds 1 of 6 labels outside the codes 0-2 of the store's target_names "
            r"\(values 3; row 3\)",
        ),
        ({"labels": [0, 1, -2, 1, 1, 0]}, r"1 of 6 labels outside the codes >= 0 \(values -2"),
        ({"labels": [0, 1, 0.5, 1, 1, 0]}, r"1 of 6 labels that are not whole numbers"),
        ({"labels": [0, 1, 1, 1, 1, 0], "names": "ES"}, r"attribute 'target_names' of the store"),
        ({"ra": np.zeros(5)}, r"the column 'ra' has shape \(5,\) but 'images' holds 6 images"),
        ({"labels": [0, 1, 1]}, r"'labels' has shape \(3,\) but 'images' holds 6 images"),
    ],
)
def test_zarr_labels_and_columns_checked_as_hdf5(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        open_catalogue(_zarr(tmp_path, **kwargs))


def test_zarr_float_images_are_scaled_alike_in_every_block(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8, 3)).astype(np.float32)
    images[:2] = np.round(images[:2] / 255)
    g = zarr.open_group(tmp_path / "f.zarr", mode="w")
    g.create_array("images", data=images, chunks=(2, 8, 8, 3))
    data = open_catalogue(tmp_path / "f.zarr", image_size=None, block_size=2)
    np.testing.assert_array_equal(data.images.compute(), images.astype(np.uint8))


def _bad_folder(tmp_path, kind):
    """A folder that load_image_folder refuses, for each fault of the CSV or the files."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(4)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)).save(data / name)
    rows = [["a.png", "spiral"], ["b.png", "elliptical"]]
    if kind == "duplicate-names":
        rows.append(["./a.png", "spiral"])
    elif kind == "path-outside":
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "secret.png")
        rows.append(["../secret.png", "spiral"])
    elif kind == "symlink-outside":
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "secret.png")
        (data / "c.png").symlink_to(tmp_path / "secret.png")
        rows.append(["c.png", "spiral"])
    elif kind == "missing-file":
        rows.append(["gone.png", "spiral"])
    elif kind == "fifo-named":
        os.mkfifo(data / "pipe.png")
        rows.append(["pipe.png", "spiral"])
    elif kind == "empty-file-cell":
        rows.append(["", "spiral"])
    if kind == "fifo-csv":
        os.mkfifo(data / "labels.csv")
        return data
    text = "".join(f"{f},{label}\n" for f, label in [["file", "label"], *rows])
    if kind == "latin-1":
        text = text.replace("spiral", "spirale barrée")
    (data / "labels.csv").write_bytes(text.encode("latin-1" if kind == "latin-1" else "utf-8"))
    return data


@pytest.mark.parametrize(
    "kind",
    [
        "duplicate-names",
        "path-outside",
        "symlink-outside",
        "missing-file",
        "fifo-named",
        "fifo-csv",
        "empty-file-cell",
        "latin-1",
    ],
)
def test_folder_refused_as_load_image_folder_refuses_it(tmp_path, kind):
    data = _bad_folder(tmp_path, kind)
    with pytest.raises(Exception) as eager:
        load_image_folder(data, verbose=0)
    with pytest.raises(type(eager.value)) as lazy:
        open_catalogue(data)
    # the same message, less the hint to pass on_error='skip' (open_catalogue has none)
    assert str(lazy.value) == str(eager.value).replace(
        ", or pass on_error='skip' to load the others", ""
    )
    assert "on_error" not in str(lazy.value)


def test_folder_options_are_load_image_folders(tmp_path):
    data = _bad_folder(tmp_path, "latin-1")
    lazy = open_catalogue(data, encoding="latin-1", image_size=None)
    ref = load_image_folder(data, encoding="latin-1", image_size=None, verbose=0)
    assert (
        lazy.target_names.tolist() == ref.target_names.tolist() == ["elliptical", "spirale barrée"]
    )
    np.testing.assert_array_equal(lazy.images.compute(), ref.images)
    (tmp_path / "x").mkdir()
    data = _bad_folder(tmp_path / "x", "path-outside")
    lazy = open_catalogue(data, allow_outside=True)
    assert lazy.file.tolist() == ["a.png", "b.png", "../secret.png"]
    np.testing.assert_array_equal(
        lazy.images.compute(), load_image_folder(data, allow_outside=True, verbose=0).images
    )
    # the decompression-bomb guard of the one image reader, per block
    lazy = open_catalogue(data, allow_outside=True, max_pixels=1000, block_size=2)
    with pytest.raises(
        ValueError,
        match=r"a\.png \(catalogue image 0, in the block of catalogue images 0 to 1\)"
        r": 40x40 pixels, more than the 1,000 pixels accepted.*larger max_pixels=",
    ):
        lazy.images.blocks[0].compute()
    with pytest.raises(ValueError, match="max_pixels, encoding are for folders of images"):
        open_catalogue(_bad_h5(tmp_path, "none"), max_pixels=10, encoding="latin-1")
