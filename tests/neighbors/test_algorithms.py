"""NearestGalaxy(algorithm="ivf" | "hnsw"): faiss behind the estimator's API."""

import pickle
import sys

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from galaxysim.neighbors import ApproximateIndex, NearestGalaxy
from galaxysim.utils._sklearn_compat import InvalidParameterError


@pytest.fixture(scope="module")
def blobs():
    """Float32 rows in 20 Gaussian clusters, labels = cluster, queries near the rows."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4, size=(20, 16))
    y = rng.integers(0, 20, size=4000)
    X = (centres[y] + rng.normal(size=(4000, 16))).astype(np.float32)
    Q = (centres[rng.integers(0, 20, size=100)] + rng.normal(size=(100, 16))).astype(np.float32)
    return X, y, Q


def _recall(ind, ref):
    return np.mean([len(set(a) & set(b)) / ref.shape[1] for a, b in zip(ind, ref, strict=True)])


@pytest.mark.parametrize(
    ("params", "metric"),
    [
        ({"algorithm": "ivf", "nlist": 32, "nprobe": 8, "random_state": 0}, "euclidean"),
        ({"algorithm": "hnsw", "n_jobs": 1}, "cosine"),
    ],
)
def test_recall_against_brute_and_distances_on_its_scale(blobs, params, metric):
    X, y, Q = blobs
    exact = NearestGalaxy(10, metric=metric).fit(X, y)
    approx = NearestGalaxy(10, metric=metric, **params).fit(X, y)
    assert isinstance(approx.approximate_index_, ApproximateIndex)
    assert exact.approximate_index_ is None
    ref_dist, ref_ind = exact.kneighbors(Q)
    dist, ind = approx.kneighbors(Q)
    assert _recall(ind, ref_ind) >= 0.95
    same = ind == ref_ind
    np.testing.assert_allclose(dist[same], ref_dist[same], rtol=1e-5, atol=1e-6)
    assert approx.score(Q, approx.predict(Q)) > 0.9  # predict and score go through faiss


def test_search_time_parameters_need_no_refit(blobs):
    X, _, Q = blobs
    ref = NearestGalaxy(10, metric="sqeuclidean").fit(X).kneighbors(Q)[1]
    search = NearestGalaxy(
        10, metric="sqeuclidean", algorithm="ivf", nlist=64, nprobe=1, random_state=0, n_jobs=1
    )
    search.fit(X)
    built = search.approximate_index_
    low = _recall(search.kneighbors(Q)[1], ref)
    search.set_params(nprobe=64)  # every list: exact
    np.testing.assert_array_equal(search.kneighbors(Q)[1], ref)
    assert low < 0.9 and search.approximate_index_ is built


@pytest.mark.parametrize("algorithm", ["ivf", "hnsw"])
def test_self_query_drops_each_row_itself(algorithm):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    X[10:15] = X[10]  # five equal rows: each finds the other four at distance 0
    search = NearestGalaxy(2, algorithm=algorithm, nlist=4, nprobe=4, n_jobs=1).fit(X)
    dist, ind = search.kneighbors()
    assert ind.shape == (300, 2)
    assert not (ind == np.arange(300)[:, None]).any()
    for row in range(10, 15):
        assert set(ind[row]) < set(range(10, 15)) - {row}, ind[row]
        np.testing.assert_array_equal(dist[row], 0)
    exact = NearestGalaxy(2).fit(X).kneighbors()
    assert _recall(ind[20:], exact[1][20:]) >= 0.95


def test_within_and_nearest_per_class_are_exact(blobs):
    X, y, Q = blobs
    exact = NearestGalaxy(5, metric="euclidean").fit(X, y)
    approx = NearestGalaxy(5, metric="euclidean", algorithm="hnsw", M=4, ef_search=5).fit(X, y)
    pairs = zip(
        approx.kneighbors(Q, within=[3, 7]), exact.kneighbors(Q, within=[3, 7]), strict=True
    )
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    for a, b in zip(approx.kneighbors(within=[3]), exact.kneighbors(within=[3]), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(approx.nearest_per_class(Q), exact.nearest_per_class(Q), strict=True):
        np.testing.assert_array_equal(a, b)


def test_pickle_and_a_saved_index_give_the_same_search(blobs, tmp_path):
    X, y, Q = blobs
    search = NearestGalaxy(5, metric="mse", algorithm="ivf", nlist=16, random_state=0).fit(X, y)
    expected = search.kneighbors(Q)
    copy = pickle.loads(pickle.dumps(search))
    search.approximate_index_.save(tmp_path / "ivf.npz")
    again = NearestGalaxy(5, metric="mse", algorithm="ivf", nlist=16)
    again.fit(X, y, approximate_index=ApproximateIndex.load(tmp_path / "ivf.npz"))
    for other in (copy, again):
        for got, want in zip(other.kneighbors(Q), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_approximate_index_must_match_the_estimator(blobs):
    X, _, _ = blobs
    index = ApproximateIndex("hnsw", "cosine", M=8).build(X[:500])
    with pytest.raises(ValueError, match="for algorithm='ivf' or 'hnsw'.*brute"):
        NearestGalaxy().fit(X[:500], approximate_index=index)
    with pytest.raises(
        ValueError, match=r"built with \{'kind': 'hnsw', 'metric': 'cosine', 'M': 8"
    ):
        NearestGalaxy(algorithm="hnsw", metric="cosine").fit(X[:500], approximate_index=index)
    with pytest.raises(ValueError, match=r"holds 500 rows of 16 features, but X has shape \(400"):
        NearestGalaxy(algorithm="hnsw", metric="cosine", M=8).fit(X[:400], approximate_index=index)
    with pytest.raises(TypeError, match="must be an ApproximateIndex; got dict"):
        NearestGalaxy(algorithm="hnsw").fit(X, approximate_index={})


def test_rows_and_metrics_approximate_search_refuses(blobs):
    X, _, _ = blobs
    pixels = (np.abs(X[:200]) * 40).astype(np.uint8)
    with pytest.raises(ValueError, match="uint8 pixels, which faiss would copy as float32"):
        NearestGalaxy(algorithm="hnsw").fit(pixels)
    with pytest.raises(ValueError, match=r"supports the metrics .*got 'maxabs'.*brute"):
        NearestGalaxy(metric="maxabs", algorithm="ivf").fit(X)
    with pytest.raises(ValueError, match=r"got 'l1'.*algorithm='brute'"):
        NearestGalaxy(metric=l1, algorithm="ivf").fit(X)


def l1(a, b):
    return float(np.abs(a - b).sum())


@pytest.mark.parametrize(
    "params",
    [{"algorithm": "annoy"}, {"M": 1}, {"nprobe": 0}, {"nlist": 2.5}, {"ef_search": True}],
)
def test_parameter_constraints(blobs, params):
    with pytest.raises(InvalidParameterError, match=f"'{next(iter(params))}' parameter"):
        NearestGalaxy(**params).fit(blobs[0])


def test_missing_faiss_names_the_extra(blobs, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    NearestGalaxy(metric="euclidean").fit(blobs[0])  # brute needs no faiss
    with pytest.raises(ImportError, match=r"pip install galaxysim\[faiss\]"):
        NearestGalaxy(metric="euclidean", algorithm="hnsw").fit(blobs[0])


def test_grid_search_tunes_the_search_parameters(blobs):
    X, y, _ = blobs
    grid = GridSearchCV(
        NearestGalaxy(5, metric="euclidean", algorithm="ivf", nlist=8, random_state=0),
        {"nprobe": [1, 8]},
        cv=2,
    ).fit(X[:1000], y[:1000])
    assert grid.best_params_["nprobe"] in (1, 8)
    assert grid.best_score_ > 0.9
