"""Exact block-wise search and embedding on Dask: threads, processes and a real cluster."""

import csv
import logging
import os
import pickle
import signal
import subprocess
import sys
import time

import dask
import dask.array as da
import h5py
import numpy as np
import pytest
from distributed import Client, LocalCluster
from PIL import Image
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline

from galaxysim.datasets import load_galaxy10, open_catalogue
from galaxysim.neighbors import METRICS, NearestGalaxy, blockwise_topk, embed_blocks
from galaxysim.neighbors._kernels import topk
from galaxysim.pipeline import make_method_search
from galaxysim.preprocessing import CenterCrop, PixelFlatten


def _gallery_with_ties(dtype, seed=0):
    """Rows duplicated across blocks and coarse values: many exactly equal distances."""
    rng = np.random.default_rng(seed)
    base = (rng.integers(0, 3, size=(40, 12)) * 100).astype(np.uint8)
    G = np.concatenate([base, base[::-1], base[:7]])  # 87 rows, duplicates far apart
    Q = np.concatenate([base[:5], (rng.integers(0, 3, size=(3, 12)) * 100).astype(np.uint8)])
    if dtype == np.uint8:
        return Q, G
    return (Q / 255).astype(dtype), (G / 255).astype(dtype)


def _l1(a, b):
    return float(np.abs(a - b).sum())


@pytest.mark.parametrize("metric", [*METRICS, _l1])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize(("chunks", "k"), [(13, 9), (5, 9), (87, 87)])
def test_equals_in_memory_topk_ties_included(metric, dtype, chunks, k):
    Q, G = _gallery_with_ties(dtype)
    dist, ind = blockwise_topk(Q, da.from_array(G, chunks=(chunks, 4)), k, metric, split_every=2)
    ref_dist, ref_ind = topk(Q, G, k, metric)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_array_equal(dist, ref_dist)
    assert (dist[:5, 0] == 0).all()  # each query's duplicates tie at distance 0


def test_equals_the_pruned_in_memory_search():
    """A large uint8 gallery is pruned in memory, its blocks are not: same answer."""
    rng = np.random.default_rng(3)
    G = rng.integers(0, 256, size=(3000, 256), dtype=np.uint8)
    G[2500:2600] = G[:100]  # ties across blocks
    Q = G[[0, 5, 50, 99, 1000, 2000, 2999, 7]]
    for metric in ("mse", "euclidean"):
        dist, ind = blockwise_topk(Q, da.from_array(G, chunks=700), 10, metric)
        ref = topk(Q, G, 10, metric)
        np.testing.assert_array_equal(ind, ref[1])
        np.testing.assert_array_equal(dist, ref[0])


def test_queries_are_one_node_of_the_graph():
    rng = np.random.default_rng(1)
    Q = rng.random((500, 16))
    G = da.from_array(rng.random((400, 16)), chunks=50)
    delayed = blockwise_topk(Q, G, 3, "euclidean", compute=False)
    graph = dict(delayed.__dask_graph__())
    holding_q = [k for k, v in graph.items() if len(pickle.dumps(v)) >= Q.nbytes]
    assert len(holding_q) == 1  # 8 block tasks refer to it by key
    np.testing.assert_array_equal(delayed.compute()[1], topk(Q, G.compute(), 3, "euclidean")[1])


def test_processes_scheduler():
    Q, G = _gallery_with_ties(np.uint8)
    with dask.config.set(scheduler="processes", num_workers=2):
        dist, ind = blockwise_topk(Q, da.from_array(G, chunks=20), 6, "maxabs")
    np.testing.assert_array_equal(ind, topk(Q, G, 6, "maxabs")[1])


def test_search_errors():
    Q, G = _gallery_with_ties(np.uint8)
    Gd = da.from_array(G, chunks=20)
    with pytest.raises(TypeError, match="takes a Dask array.*dask.array.from_array"):
        blockwise_topk(Q, G, 3)
    with pytest.raises(ValueError, match=r"expected \(n_queries, 12\)"):
        blockwise_topk(Q[:, :5], Gd, 3)
    with pytest.raises(ValueError, match="k must be an int from 1 to the catalogue's 87 rows"):
        blockwise_topk(Q, Gd, 88)
    with pytest.raises(ValueError, match="Unknown metric 'l7'"):
        blockwise_topk(Q, Gd, 3, "l7")
    with pytest.raises(ValueError, match="2-D Dask array"):
        blockwise_topk(Q, Gd[None], 3)
    with pytest.raises(TypeError, match="catalogue's are int64.*astype"):
        blockwise_topk(Q, Gd.astype(np.int64), 3)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        blockwise_topk(Q, Gd[Gd[:, 0] > 0], 3)


def test_importing_galaxysim_needs_no_extra():
    code = (
        "import sys, galaxysim.datasets, galaxysim.neighbors; "
        "print(sorted(m for m in ('dask', 'distributed', 'faiss', 'zarr') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _images(n=30, size=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "make",
    [
        lambda X: make_pipeline(PixelFlatten(), PCA(5, random_state=0)).fit(X),  # 4-D -> 2-D
        lambda X: CenterCrop(16).fit(X),  # 4-D -> 4-D
    ],
)
def test_embed_blocks_equals_transform(make):
    X = _images()
    model = make(X)
    Xd = da.from_array(X, chunks=(7, 20, 40, 3))  # other axes are rechunked to whole
    out = embed_blocks(model, Xd)
    assert out.chunks[0] == (7, 7, 7, 7, 2)
    np.testing.assert_array_equal(out.compute(), model.transform(X))


def test_embed_blocks_errors():
    Xd = da.from_array(_images(), chunks=10)
    with pytest.raises(NotFittedError):
        embed_blocks(PCA(3), Xd)
    with pytest.raises(TypeError, match="transform method.*pipe\\[:-1\\]"):
        embed_blocks(NearestGalaxy().fit(np.zeros((3, 2))), Xd)
    with pytest.raises(TypeError, match="takes a Dask array"):
        embed_blocks(PixelFlatten().fit(_images()), _images())


# ---------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread; not the default scheduler of other tests."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        c.wait_for_workers(2)
        yield c


def _write_catalogue(path, n=40):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(n, 80, 80, 3), dtype=np.uint8)
    images[30:36] = images[:6]  # duplicates in another block: ties by catalogue index
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(4, 80, 80, 3), compression="gzip")
        f.create_dataset("ans", data=rng.integers(0, 10, size=n).astype(np.uint8))
    return images


def test_cluster_search_of_a_file_equals_in_memory(client, tmp_path):
    path = tmp_path / "cat.h5"
    _write_catalogue(path)
    ref = load_galaxy10(path, cache_dir=False, verbose=0)
    flatten = PixelFlatten().fit(ref.images[:2])
    G_mem = flatten.transform(ref.images)
    Q = G_mem[[0, 3, 5, 17]]
    with dask.config.set(scheduler=client):
        lazy = open_catalogue(path, block_size=8)
        G = embed_blocks(flatten, lazy.images)  # read, framed and flattened on the workers
        np.testing.assert_array_equal(G.compute(), G_mem)
        dist, ind = blockwise_topk(Q, G, 7, "mse", split_every=2)
    ref_dist, ref_ind = topk(Q, G_mem, 7, "mse")
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_array_equal(dist, ref_dist)
    assert ind[0, :2].tolist() == [0, 30]


def test_cluster_pipeline_fit_on_a_lazy_catalogue_equals_in_memory(client, tmp_path):
    path = tmp_path / "cat.h5"
    _write_catalogue(path)
    ref = load_galaxy10(path, cache_dir=False, verbose=0)
    mem = make_method_search("mse", n_neighbors=7).fit(ref.images, ref.target)
    queries = ref.images[[0, 3, 5, 17]]
    with dask.config.set(scheduler=client):
        lazy = open_catalogue(path, block_size=8)
        pipe = make_method_search("mse", n_neighbors=7).fit(lazy.images, lazy.target)
        assert isinstance(pipe[-1]._rows, da.Array)  # nothing computed but one image
        got = [pipe.kneighbors(queries), pipe.kneighbors(n_neighbors=3, within=[2, 5]),
               pipe.nearest_per_class(queries)]  # fmt: skip
    want = [
        mem.kneighbors(queries),
        mem.kneighbors(n_neighbors=3, within=[2, 5]),
        mem.nearest_per_class(queries),
    ]
    for (dist, ind), (ref_dist, ref_ind) in zip(got, want, strict=True):
        np.testing.assert_array_equal(ind, ref_ind)
        np.testing.assert_array_equal(dist, ref_dist)
    assert got[0][1][0, :2].tolist() == [0, 30]


class CountingScaler(TransformerMixin, BaseEstimator):
    """Writes the id of every process that unpickles it to ``log``."""

    def __init__(self, log=None):
        self.log = log

    def fit(self, X, y=None):
        self.scale_ = np.float32(0.5)
        return self

    def transform(self, X):
        return X.reshape(len(X), -1).astype(np.float32) * self.scale_

    def __setstate__(self, state):
        super().__setstate__(state)
        with open(state["log"], "a") as f:
            f.write(f"{os.getpid()}\n")


def test_cluster_model_is_sent_to_each_worker_once(client, tmp_path):
    log = tmp_path / "unpickled.txt"
    log.touch()
    model = CountingScaler(str(log)).fit(None)
    X = _images(n=48, size=8)
    Xd = da.from_array(X, chunks=4)  # 12 blocks
    with dask.config.set(scheduler=client):
        out = embed_blocks(model, Xd).compute()
    np.testing.assert_array_equal(out, model.transform(X))
    workers = set(client.run(os.getpid).values())
    loads = [int(p) for p in log.read_text().split()]
    on_workers = [p for p in loads if p in workers]
    assert 1 <= len(on_workers) <= len(workers), loads  # not once per block (12)


def test_cluster_corrupt_block_names_the_file_and_the_images(client, tmp_path):
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(9):
        Image.fromarray(_images(1, 32, seed=i)[0]).save(tmp_path / "img" / f"g{i}.png")
        rows.append([f"img/g{i}.png", i % 2])
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "label"], *rows])
    (tmp_path / "img" / "g7.png").write_bytes(b"\x89PNG truncated")
    lazy = open_catalogue(tmp_path, block_size=3)
    with (
        dask.config.set(scheduler=client),
        pytest.raises(
            ValueError,
            match=r"g7\.png \(catalogue image 7, in the block of catalogue images 6 to 8",
        ),
    ):
        lazy.images.compute()


def _slow_copy(block):
    time.sleep(0.3)
    return block.copy()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_cluster_killed_worker_does_not_change_the_result(client):
    Q, G = _gallery_with_ties(np.uint8)
    Gd = da.from_array(G, chunks=8).map_blocks(_slow_copy, dtype=G.dtype)  # 11 slow blocks
    future = client.compute(blockwise_topk(Q, Gd, 9, "maxabs", compute=False))
    pids = client.run(os.getpid)
    victim = None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline:
        busy = [w for w, keys in client.processing().items() if keys]
        victim = busy[0] if busy else None
        time.sleep(0.05)
    assert victim is not None and not future.done()
    os.kill(pids[victim], signal.SIGKILL)  # mid-compute: its tasks are rescheduled
    dist, ind = future.result(timeout=120)
    ref_dist, ref_ind = topk(Q, G, 9, "maxabs")
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_array_equal(dist, ref_dist)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the other tests
