"""Approximate search with faiss: recall against the exact search, scales, persistence."""

import pickle
import sys

import dask.array as da
import faiss
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from galaxysim.neighbors import ApproximateIndex, pairwise_distances
from galaxysim.neighbors._kernels import topk


@pytest.fixture(scope="module")
def data():
    """i.i.d. Gaussian rows: no clusters to help the index (a hard case)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 16)).astype(np.float32)
    Q = rng.normal(size=(200, 16)).astype(np.float32)
    return X, Q


def _recall(ind, ref):
    return np.mean([len(set(a) & set(b)) / ref.shape[1] for a, b in zip(ind, ref, strict=True)])


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_ivf_recall_at_10(data, metric):
    X, Q = data
    ref = topk(Q, X, 10, metric)[1]
    index = ApproximateIndex("ivf", metric, nlist=64, nprobe=24).build(X)
    assert _recall(index.search(Q, 10)[1], ref) >= 0.95
    index.nprobe = 2  # read at search time: fewer lists, faster, lower recall
    assert _recall(index.search(Q, 10)[1], ref) < 0.8


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_hnsw_recall_at_10_with_the_defaults(data, metric):
    X, Q = data
    ref = topk(Q, X, 10, metric)[1]
    index = ApproximateIndex("hnsw", metric).build(X)  # M=32, ef_search=64
    assert _recall(index.search(Q, 10)[1], ref) >= 0.95
    sparse = ApproximateIndex("hnsw", metric, M=4, ef_search=10).build(X)  # fast, poor
    assert _recall(sparse.search(Q, 10)[1], ref) < 0.8


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "mse", "cosine"])
@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_distances_on_the_exact_scale(data, kind, metric):
    X, Q = data
    U = (np.abs(X[:600]) * 60).clip(0, 255).astype(np.uint8)  # uint8 rows count as v / 255
    for rows, queries in ((X[:1500], Q), (U, U[:20])):
        index = ApproximateIndex(kind, metric, nlist=8, nprobe=8).build(rows)
        dist, ind = index.search(queries, 5)
        assert dist.dtype == np.float64 and ind.dtype == np.int64
        assert (np.diff(dist, axis=1) >= 0).all()
        exact = pairwise_distances(queries, rows, metric)
        np.testing.assert_allclose(dist, np.take_along_axis(exact, ind, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_pickle_and_save_round_trips_give_identical_results(data, kind, tmp_path):
    X, Q = data
    index = ApproximateIndex(kind, "euclidean", nlist=32, nprobe=np.int64(4)).build(X)
    expected = index.search(Q, 10)
    for copy in (
        pickle.loads(pickle.dumps(index)),
        (index.save(tmp_path / "a.npz"), ApproximateIndex.load(tmp_path / "a.npz"))[1],
    ):
        assert (copy.kind, copy.metric, copy.n_samples_, copy.nlist_) == (
            kind, "euclidean", 5000, index.nlist_,
        )  # fmt: skip
        for got, want in zip(copy.search(Q, 10), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_seeded_training_is_reproducible_and_dask_rows_match(data):
    X, Q = data
    a = ApproximateIndex("ivf", nlist=32, random_state=3).build(X)
    b = ApproximateIndex("ivf", nlist=32, random_state=3).build(da.from_array(X, chunks=700))
    np.testing.assert_array_equal(faiss.serialize_index(a.index_), faiss.serialize_index(b.index_))
    np.testing.assert_array_equal(a.search(Q, 10)[1], b.search(Q, 10)[1])


def test_thread_count_is_set_for_the_call_only(data, monkeypatch):
    X, Q = data
    before = faiss.omp_get_max_threads()
    calls = []
    real = faiss.omp_set_num_threads
    monkeypatch.setattr(faiss, "omp_set_num_threads", lambda n: (calls.append(n), real(n)))
    index = ApproximateIndex("hnsw", n_jobs=1).build(X[:500])
    index.search(Q, 3)
    assert calls == [1, before, 1, before]
    assert faiss.omp_get_max_threads() == before
    calls.clear()
    ApproximateIndex("hnsw").build(X[:500]).search(Q, 3)  # n_jobs=None: left alone
    assert calls == []


def test_errors(data, tmp_path):
    X, Q = data
    with pytest.raises(ValueError, match=r"supports the metrics .*got 'maxabs'.*brute"):
        ApproximateIndex(metric="maxabs").build(X)
    with pytest.raises(ValueError, match="kind must be one of"):
        ApproximateIndex("lsh").build(X)
    with pytest.raises(NotFittedError, match="not built yet"):
        ApproximateIndex().search(Q, 3)
    index = ApproximateIndex("ivf", nlist=50, nprobe=1).build(X[:100])
    with pytest.raises(ValueError, match="k=101 is more than the 100 indexed rows"):
        index.search(Q, 101)
    with pytest.raises(ValueError, match="Queries have 3 features but the index has 16"):
        index.search(Q[:, :3], 2)
    with pytest.raises(ValueError, match=r"neighbours were reached.*Raise nprobe"):
        index.search(Q, 10)  # 50 lists of about two rows, one probed
    bad = X[:100].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        ApproximateIndex("hnsw").build(bad)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="Cannot read .*junk.npz as a saved approximate index"):
        ApproximateIndex.load(tmp_path / "junk.npz")


def test_missing_faiss_names_the_extra(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"pip install galaxysim\[faiss\]"):
        ApproximateIndex().build(data[0])
