"""build_index and SearchIndex: the persisted search equals the in-memory one."""

import csv
import json
import os
import tracemalloc

import dask
import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from PIL import Image

import galaxysim.index._build as build_module
from galaxysim.datasets import open_catalogue
from galaxysim.index import SearchIndex, build_index
from galaxysim.neighbors import ApproximateIndex
from galaxysim.pipeline import METHODS, make_method_search

QUERIES = [0, 3, 20, 101, 144, 77]  # duplicated images among them: ties at distance 0


@pytest.fixture(scope="module")
def built(tmp_path_factory, data, models, write_h5):
    X, y = data
    d = tmp_path_factory.mktemp("built")
    src = write_h5(d / "cat.h5", X, y)
    path = build_index(
        src, METHODS, d / "index", models=models, crop=None, image_size=None,
        block_size=25, verbose=0,
    )  # fmt: skip
    return path, SearchIndex.open(path, verify=True)


@pytest.mark.parametrize("within", [None, [1, 3]], ids=["all", "within"])
@pytest.mark.parametrize("method", METHODS)
def test_index_search_equals_the_in_memory_recipe(built, data, models, method, within):
    X, y = data
    _, index = built
    ref = make_method_search(method, model=models.get(method)).fit(X, y)
    dist, ind = index.kneighbors(X[QUERIES], method=method, k=9, within=within)
    ref_dist, ref_ind = ref.kneighbors(X[QUERIES], 9, within=within)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_array_equal(dist, ref_dist)
    if method in ("mse", "maxabs") and within is None:
        assert ind[0, :2].tolist() == [0, 100]  # the tie, by catalogue index
    per_class = index.nearest_per_class(X[QUERIES[:2]], method=method)
    for a, b in zip(per_class, ref.nearest_per_class(X[QUERIES[:2]]), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["ae", "cnn"])
def test_stored_rows_are_the_recipes_rows_bitwise(built, data, models, method):
    """Blocks of 30 images are regrouped into whole inference batches (48), so each image
    is embedded in the batch it has in memory; without that the last bits differ."""
    X, y = data
    _, index = built
    ref = make_method_search(method, model=models[method]).fit(X, y)
    np.testing.assert_array_equal(index.embeddings(method), ref[:-1].transform(X))


def test_unaligned_blocks_would_change_the_rows(tmp_path, data, models, monkeypatch, write_h5):
    # the check above can fail: blocks of 50 give other last bits for the "cnn" rows
    X, y = data
    monkeypatch.setattr(build_module, "_batch_aligned", lambda images, model: images)
    src = write_h5(tmp_path / "cat.h5", X, y, chunks=50)
    path = build_index(src, "cnn", tmp_path / "i", models={"cnn": models["cnn"]}, crop=None,
                       image_size=None, block_size=50, verbose=0)  # fmt: skip
    rows = SearchIndex.open(path).embeddings("cnn")
    ref = make_method_search("cnn", model=models["cnn"]).fit(X, y)[:-1].transform(X)
    assert not np.array_equal(rows, ref)


def test_layout_and_manifest(built, data):
    path, index = built
    X, _ = data
    names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert names == [
        ".galaxysim-index", "identifiers.parquet", "manifest.json", "models/ae.safetensors",
        "models/cnn.safetensors", "models/vae.safetensors", "rows/ae.npy", "rows/cnn.npy",
        "rows/pixels.npy", "rows/vae.npy",
    ]  # fmt: skip
    m = json.loads((path / "manifest.json").read_text())
    assert (m["format"], m["format_version"]) == ("galaxysim-search-index", 1)
    assert {"galaxysim", "numpy", "torch", "faiss"} <= set(m["versions"])
    cat = m["catalogue"]
    assert cat["path"] == str(path.parent / "cat.h5") and cat["kind"] == "hdf5"
    assert cat["size"] == os.path.getsize(path.parent / "cat.h5")
    assert cat["shape"] == [150, 16, 16, 3] and len(cat["sample_sha256"]) == 64
    assert m["framing"] == {"crop": None, "image_size": None}
    assert m["methods"]["mse"]["rows"] == m["methods"]["maxabs"]["rows"] == "rows/pixels.npy"
    assert m["methods"]["maxabs"]["metric"] == "maxabs"
    assert m["methods"]["ae"]["model"]["class"] == "AEEncoder"
    assert m["methods"]["ae"]["fitted_steps"]["standardscaler"]["attributes"]["mean_"]
    assert index.embeddings("mse").dtype == np.uint8
    assert index.embeddings("vae").dtype == np.float32
    np.testing.assert_array_equal(index.embeddings("maxabs"), X.reshape(len(X), -1))
    assert m["files"]["rows/pixels.npy"]["bytes"] == os.path.getsize(path / "rows/pixels.npy")
    assert m["created"].endswith("+00:00")


def test_identifier_table(built, data):
    path, index = built
    _, y = data
    table = pq.read_table(path / "identifiers.parquet")
    assert table.column_names == [
        "index", "file", "ra", "dec", "redshift", "pxscale", "label", "label_name"
    ]  # fmt: skip
    ids = index.identifiers
    np.testing.assert_array_equal(ids["index"], np.arange(150))
    np.testing.assert_allclose(ids["ra"], np.linspace(10, 20, 150))
    assert np.isnan(ids["redshift"]).all() and set(ids["file"]) == {""}
    np.testing.assert_array_equal(ids["label"], y)
    np.testing.assert_array_equal(index.target, y)
    assert ids["label_name"][1] == "Merging" and index.target_names[3] == ids["label_name"][3]


def test_neighbour_images_read_only_those_images(built, data):
    X, _ = data
    _, index = built
    _, ind = index.kneighbors(X[QUERIES], method="mse", k=4)
    np.testing.assert_array_equal(index.neighbour_images(ind), X[ind])
    assert index.neighbour_images([]).shape == (0, 16, 16, 3)


def test_search_maps_the_rows_without_copying_them(tmp_path, make_images, write_h5):
    X, y = make_images(n=80_000, size=8, seed=1)
    src = write_h5(tmp_path / "cat.h5", X, y, chunks=4000)
    path = build_index(src, "mse", tmp_path / "i", crop=None, image_size=None, verbose=0)
    SearchIndex.open(path).kneighbors(X[:2], k=2)  # imports and compiled kernels
    tracemalloc.start()
    try:
        index = SearchIndex.open(path)
        _, ind = index.kneighbors(X[:2], method="mse", k=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ind[0, 0] == 0
    assert isinstance(index.embeddings(), np.memmap)
    # the kernels' precomputations and bounded temporaries take 0.64 times the rows'
    # 15 MB; a copy of the rows would add 1, a float32 upcast 4
    assert peak < X.nbytes, (peak, X.nbytes)


def test_approximate_methods_use_the_saved_faiss_index(tmp_path, data, models, write_h5):
    X, y = data
    src = write_h5(tmp_path / "cat.h5", X, y)
    params = {"M": 8, "n_jobs": 1}
    path = build_index(
        src, ["ae", "mse"], tmp_path / "i", models={"ae": models["ae"]},
        algorithm={"ae": "hnsw"}, approximate_params=params, crop=None, image_size=None,
        verbose=0,
    )  # fmt: skip
    assert (path / "faiss" / "ae.npz").is_file() and not (path / "faiss" / "mse.npz").exists()
    index = SearchIndex.open(path)
    ref = make_method_search("ae", model=models["ae"]).fit(X, y)
    Q = ref[:-1].transform(X[QUERIES])
    in_memory = ApproximateIndex("hnsw", "cosine", **params).build(ref[:-1].transform(X))
    dist, ind = index.kneighbors(X[QUERIES], method="ae", k=5)
    ref_dist, ref_ind = in_memory.search(Q, 5)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_array_equal(dist, ref_dist)
    # within: an exact search of the chosen images' rows
    dist, ind = index.kneighbors(X[QUERIES], method="ae", k=5, within=[2])
    ref_dist, ref_ind = ref.kneighbors(X[QUERIES], 5, within=[2])
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_array_equal(dist, ref_dist)


def _folder_catalogue(root, X, y):
    (root / "img").mkdir(parents=True)
    rows = [["file", "label"]]
    for i, img in enumerate(X):
        Image.fromarray(img).save(root / "img" / f"g{i:03d}.png")
        rows.append([f"img/g{i:03d}.png", f"class{y[i]}"])
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return root


def test_opened_folder_catalogue_on_processes(tmp_path, data):
    X, y = data
    X, y = X[:40], y[:40]
    root = _folder_catalogue(tmp_path / "cat", X, y)
    cat = open_catalogue(root, image_size=None, block_size=16)
    with dask.config.set(scheduler="processes", num_workers=2):
        path = build_index(cat, "mse", tmp_path / "i", verbose=0)
    index = SearchIndex.open(path)
    assert index.identifiers["file"][3] == "img/g003.png"
    assert index.identifiers["label_name"][3] == f"class{y[3]}"
    dist, ind = index.kneighbors(X[:3], k=4)
    ref = make_method_search("mse").fit(X, cat.target).kneighbors(X[:3], 4)
    np.testing.assert_array_equal(ind, ref[1])
    np.testing.assert_array_equal(dist, ref[0])
    np.testing.assert_array_equal(index.neighbour_images(ind[0]), X[ind[0]])


def test_progress_bar_of_blocks(tmp_path, data, capsys, write_h5):
    X, y = data
    src = write_h5(tmp_path / "cat.h5", X, y)
    build_index(src, "mse", tmp_path / "a", crop=None, image_size=None, block_size=50)
    assert "index: blocks" in capsys.readouterr().err
    build_index(src, "mse", tmp_path / "b", crop=None, image_size=None, verbose=0)
    assert capsys.readouterr().err == ""


def test_rebuild_replaces_the_index_whole(tmp_path, data, models, write_h5):
    X, y = data
    src = write_h5(tmp_path / "cat.h5", X, y)
    out = tmp_path / "i"
    build_index(src, "cnn", out, models={"cnn": models["cnn"]}, crop=None, image_size=None,
                verbose=0)  # fmt: skip
    build_index(src, "mse", out, crop=None, image_size=None, verbose=0)
    assert sorted(os.listdir(out / "rows")) == ["pixels.npy"] and not (out / "models").exists()
    assert SearchIndex.open(out).methods == ("mse",)
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".i.")] == []


def test_catalogue_take(tmp_path, data, write_h5):
    X, y = data
    cat = open_catalogue(write_h5(tmp_path / "c.h5", X, y), crop=8, image_size=4)
    want = cat.images.compute()[[5, 3, 4, 5, 149]]
    np.testing.assert_array_equal(cat.take([5, 3, 4, 5, 149]), want)
    with pytest.raises(ValueError, match="indices 0 to 149"):
        cat.take([150])
    assert open_catalogue(cat.source, **cat.open_params).images.shape == cat.images.shape


def test_zarr_catalogue(tmp_path, data):
    X, y = data
    group = zarr.open_group(str(tmp_path / "cat.zarr"), mode="w")
    group.create_array("images", data=X, chunks=(20, 16, 16, 3))
    group.create_array("labels", data=y.astype(np.int64))
    path = build_index(tmp_path / "cat.zarr", "maxabs", tmp_path / "i", image_size=None,
                       block_size=40, verbose=0)  # fmt: skip
    index = SearchIndex.open(path)
    assert index.manifest["catalogue"]["kind"] == "zarr"
    dist, ind = index.kneighbors(X[QUERIES], k=6)
    ref = make_method_search("maxabs").fit(X, y).kneighbors(X[QUERIES], 6)
    np.testing.assert_array_equal(ind, ref[1])
    np.testing.assert_array_equal(dist, ref[0])
    np.testing.assert_array_equal(index.neighbour_images(ind), X[ind])
