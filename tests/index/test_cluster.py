"""Indexes built on a real distributed cluster: two worker processes of one thread."""

import logging
import os
import signal
import sys
import threading
import time

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream
from PIL import Image
from sklearn.utils import Bunch

from galaxysim.datasets import open_catalogue
from galaxysim.index import SearchIndex, build_index
from galaxysim.pipeline import make_method_search


@pytest.fixture(scope="module")
def client():
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


def test_cluster_index_equals_in_memory_search(client, tmp_path, data, models, write_h5):
    X, y = data
    src = write_h5(tmp_path / "cat.h5", X, y)
    kw = {"crop": None, "image_size": None, "block_size": 25, "verbose": 0}
    methods = ["mse", "ae", "cnn"]
    chosen = {m: models[m] for m in ("ae", "cnn")}
    on_cluster = build_index(src, methods, tmp_path / "c", models=chosen, client=client, **kw)
    on_threads = build_index(src, methods, tmp_path / "t", models=chosen, **kw)
    index = SearchIndex.open(on_cluster, verify=True)
    queries = X[[0, 20, 101, 7]]
    for method in methods:
        ref = make_method_search(method, model=models.get(method)).fit(X, y)
        for within in (None, [0, 2]):
            dist, ind = index.kneighbors(queries, method=method, k=8, within=within)
            ref_dist, ref_ind = ref.kneighbors(queries, 8, within=within)
            np.testing.assert_array_equal(ind, ref_ind)
            np.testing.assert_array_equal(dist, ref_dist)
        rows = index.manifest["methods"][method]["rows"]
        assert (on_cluster / rows).read_bytes() == (on_threads / rows).read_bytes()
    assert index.kneighbors(queries, method="mse", k=2)[1][0].tolist() == [0, 100]  # a tie


def test_active_distributed_scheduler_is_used(client, tmp_path, data, write_h5):
    X, y = data
    src = write_h5(tmp_path / "cat.h5", X, y)
    with dask.config.set(scheduler=client), get_task_stream(client) as tasks:
        path = build_index(src, "maxabs", tmp_path / "i", crop=None, image_size=None,
                           block_size=30, verbose=0)  # fmt: skip
    np.testing.assert_array_equal(SearchIndex.open(path).embeddings(), X.reshape(len(X), -1))
    writes = [t for t in tasks.data if str(t["key"]).startswith("galaxysim-index-write")]
    assert len(writes) == 5  # one per block, on the workers


def test_cluster_corrupt_image_leaves_no_index_and_rerun_works(client, tmp_path, data):
    X, _ = data
    (tmp_path / "cat").mkdir()
    for i in range(9):
        Image.fromarray(X[i]).save(tmp_path / "cat" / f"g{i}.png")
    good = (tmp_path / "cat" / "g4.png").read_bytes()
    (tmp_path / "cat" / "g4.png").write_bytes(b"\x89PNG truncated")
    out = tmp_path / "index"
    kw = {"image_size": None, "block_size": 3, "client": client, "verbose": 0}
    with pytest.raises(ValueError, match=r"g4\.png \(catalogue image 4, in the block of catalogue"):
        build_index(tmp_path / "cat", "mse", out, **kw)
    assert not out.exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".index.")] == []
    (tmp_path / "cat" / "g4.png").write_bytes(good)
    index = SearchIndex.open(build_index(tmp_path / "cat", "mse", out, **kw))
    np.testing.assert_array_equal(index.neighbour_images([4, 0]), X[[4, 0]])


def _slow_copy(block):
    time.sleep(0.3)
    return block.copy()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_cluster_killed_worker_does_not_change_the_index(client, tmp_path, data, write_h5):
    X, y = data
    cat = open_catalogue(write_h5(tmp_path / "cat.h5", X, y), crop=None, image_size=None,
                         block_size=10)  # fmt: skip
    slow = Bunch(**{**cat, "images": cat.images.map_blocks(_slow_copy, dtype=np.uint8)})
    failure = []

    def build():
        try:
            build_index(slow, "mse", tmp_path / "i", client=client, verbose=0)
        except BaseException as exc:  # pragma: no cover - reported below
            failure.append(exc)

    builder = threading.Thread(target=build)
    builder.start()
    pids = client.run(os.getpid)
    victim = None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline:
        busy = [w for w, keys in client.processing().items() if keys]
        victim = busy[0] if busy else None
        time.sleep(0.05)
    assert victim is not None and builder.is_alive()
    os.kill(pids[victim], signal.SIGKILL)  # mid-build: its tasks are rescheduled
    builder.join(120)
    assert not builder.is_alive() and failure == []
    np.testing.assert_array_equal(
        SearchIndex.open(tmp_path / "i", verify=True).embeddings(), X.reshape(len(X), -1)
    )
    client.wait_for_workers(2, timeout=60)
