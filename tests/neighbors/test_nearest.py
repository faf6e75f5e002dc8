import pickle

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import pairwise_distances as sk_pairwise

from galaxysim.neighbors import METRICS, NearestGalaxy, pairwise_distances

RNG = np.random.default_rng(42)
G8 = RNG.integers(0, 256, size=(300, 48), dtype=np.uint8)
Q8 = RNG.integers(0, 256, size=(7, 48), dtype=np.uint8)


def reference(Q, G, metric):
    """float64 reference on the [0, 1] scale.

    Computed on the 0-255 integers (exact in float64, so equal distances stay equal),
    then scaled: the same order and ties as the exact kernels must come out.
    """
    q, g = Q.astype(np.float64), G.astype(np.float64)
    if metric == "mse":
        return sk_pairwise(q, g, metric="sqeuclidean") / 255**2 / q.shape[1]
    if metric == "sqeuclidean":
        return sk_pairwise(q, g, metric="sqeuclidean") / 255**2
    if metric == "maxabs":
        return sk_pairwise(q, g, metric="chebyshev") / 255
    return sk_pairwise(q, g, metric=metric) / (1 if metric == "cosine" else 255)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_distances_match_float64_reference(metric, dtype):
    G = G8 if dtype == np.uint8 else (G8 / 255).astype(dtype)
    Q = Q8 if dtype == np.uint8 else (Q8 / 255).astype(dtype)
    got = pairwise_distances(Q, G, metric)
    rtol = 1e-12 if dtype != np.float32 else 1e-5
    np.testing.assert_allclose(got, reference(Q8, G8, metric), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("metric", ["mse", "maxabs", "euclidean"])
def test_kneighbors_equals_float64_reference_ranking(metric):
    search = NearestGalaxy(n_neighbors=10, metric=metric).fit(G8)
    dist, ind = search.kneighbors(Q8)
    ref = reference(Q8, G8, metric)
    # stable sort on (distance, index): the documented tie-break
    ref_ind = np.argsort(ref, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, np.take_along_axis(ref, ref_ind, 1), rtol=1e-12)


def test_uint8_and_float_catalogues_agree():
    a = NearestGalaxy(n_neighbors=5).fit(G8).kneighbors(Q8)
    b = NearestGalaxy(n_neighbors=5).fit(G8 / 255.0).kneighbors(Q8 / 255.0)
    c = NearestGalaxy(n_neighbors=5).fit(G8).kneighbors(Q8 / 255.0)  # mixed
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[1], c[1])
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12)


def test_known_answer_mse_and_maxabs():
    G = np.array([[0, 0, 0, 0], [255, 255, 255, 255], [0, 0, 0, 255]], dtype=np.uint8)
    q = np.array([[0, 0, 0, 0]], dtype=np.uint8)
    dist, ind = NearestGalaxy(n_neighbors=3, metric="mse").fit(G).kneighbors(q)
    np.testing.assert_array_equal(ind, [[0, 2, 1]])
    np.testing.assert_allclose(dist, [[0.0, 0.25, 1.0]])
    # maxabs: rows 1 and 2 both differ by 255 somewhere: a tie, broken by index
    dist, ind = NearestGalaxy(n_neighbors=3, metric="maxabs").fit(G).kneighbors(q)
    np.testing.assert_array_equal(ind, [[0, 1, 2]])
    np.testing.assert_allclose(dist, [[0.0, 1.0, 1.0]])


def test_ties_broken_by_catalogue_index():
    G = np.zeros((50, 6), dtype=np.uint8)
    G[::7] = 3  # rows 0, 7, 14, ... are identical
    q = np.full((1, 6), 3, np.uint8)
    _, ind = NearestGalaxy(n_neighbors=4).fit(G).kneighbors(q)
    np.testing.assert_array_equal(ind, [[0, 7, 14, 21]])
    _, ind = NearestGalaxy(n_neighbors=9).fit(G).kneighbors(np.zeros((1, 6), np.uint8))
    np.testing.assert_array_equal(ind, [[1, 2, 3, 4, 5, 6, 8, 9, 10]])


def test_self_query_excludes_each_row():
    search = NearestGalaxy(n_neighbors=3).fit(G8[:40])
    _, ind = search.kneighbors()
    assert not (ind == np.arange(40)[:, None]).any()
    _, ind_q = search.kneighbors(G8[:40], n_neighbors=4)
    np.testing.assert_array_equal(ind, ind_q[:, 1:])


def test_within_and_per_class():
    y = np.arange(len(G8)) % 3
    search = NearestGalaxy(n_neighbors=5).fit(G8, y)
    dist, ind = search.kneighbors(Q8, within=[2])
    assert (y[ind] == 2).all()
    ref = reference(Q8, G8, "mse")
    ref[:, y != 2] = np.inf
    np.testing.assert_array_equal(ind, np.argsort(ref, axis=1, kind="stable")[:, :5])
    d_pc, i_pc = search.nearest_per_class(Q8)
    assert d_pc.shape == (len(Q8), 3)
    for c in range(3):
        assert (y[i_pc[:, c]] == c).all()
        np.testing.assert_allclose(d_pc[:, c], search.kneighbors(Q8, 1, within=c)[0][:, 0])
    with pytest.raises(ValueError, match="Unknown labels"):
        search.kneighbors(Q8, within=[7])
    with pytest.raises(ValueError, match="fit with y"):
        NearestGalaxy().fit(G8).nearest_per_class(Q8)


def test_predict_and_score():
    G = np.repeat(np.array([[0], [100], [200]], np.uint8), 5, axis=0)
    y = np.repeat(["a", "b", "c"], 5)
    search = NearestGalaxy(n_neighbors=5).fit(G, y)
    np.testing.assert_array_equal(search.predict(np.array([[10], [190]], np.uint8)), ["a", "c"])
    assert search.score(np.array([[10], [110]], np.uint8), ["a", "b"]) == 1.0
    assert search.score(np.array([[10], [110]], np.uint8), ["a", "a"]) == 0.5


def test_callable_metric():
    def l1(a, b):
        return float(np.abs(a - b).sum())

    G = (G8 / 255.0)[:50]
    _, ind = NearestGalaxy(n_neighbors=3, metric=l1).fit(G).kneighbors(G[:2])
    _, ref = NearestGalaxy(n_neighbors=3, metric="manhattan").fit(G).kneighbors(G[:2])
    np.testing.assert_array_equal(ind, ref)


def test_pickle_round_trip():
    search = NearestGalaxy(n_neighbors=4, metric="maxabs").fit(G8, np.arange(300) % 2)
    again = pickle.loads(pickle.dumps(search))
    np.testing.assert_array_equal(search.kneighbors(Q8)[1], again.kneighbors(Q8)[1])


def test_n_jobs_does_not_change_results():
    a = NearestGalaxy(n_neighbors=6, n_jobs=1).fit(G8).kneighbors(Q8)
    b = NearestGalaxy(n_neighbors=6, n_jobs=-1).fit(G8).kneighbors(Q8)
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_neighbors": 0}, "'n_neighbors' parameter of NearestGalaxy must be an int"),
        ({"n_neighbors": True}, "'n_neighbors' parameter of NearestGalaxy must not be a bool"),
        ({"n_neighbors": 2.0}, "'n_neighbors' parameter"),
        ({"metric": "hamming"}, "'metric' parameter of NearestGalaxy must be a str among"),
        ({"n_jobs": 0}, "'n_jobs' parameter"),
        ({"n_jobs": 1.5}, "'n_jobs' parameter"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NearestGalaxy(**kwargs).fit(G8)


def test_is_a_search_estimator_scored_by_precision_at_k():
    from sklearn.base import is_classifier

    y = np.arange(len(G8)) % 3
    search = NearestGalaxy(n_neighbors=4).fit(G8, y)
    assert not is_classifier(search)
    ind = search.kneighbors(G8[:20], return_distance=False)
    expected = np.mean(y[ind] == y[:20, None])
    assert search.score(G8[:20], y[:20]) == pytest.approx(expected)


def test_bad_inputs():
    search = NearestGalaxy(n_neighbors=3).fit(G8)
    with pytest.raises(ValueError, match="PixelFlatten"):
        NearestGalaxy().fit(np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="features"):
        search.kneighbors(np.zeros((1, 5), np.uint8))
    with pytest.raises(ValueError, match="n_samples_fit = 300"):
        search.kneighbors(Q8, n_neighbors=301)
    with pytest.raises(ValueError, match="NaN"):
        search.kneighbors(np.full((1, 48), np.nan))
    with pytest.raises(NotFittedError):
        NearestGalaxy().kneighbors(Q8)
    with pytest.raises(ValueError, match="without labels"):
        search.predict(Q8)


@pytest.fixture(scope="module")
def galaxy_rows():
    from galaxysim.datasets import make_galaxies

    X, y = make_galaxies(2600, image_size=32, random_state=3)
    rows = X.reshape(len(X), -1)
    rows[100] = rows[7]  # an exact duplicate: a real tie
    return rows, y


@pytest.mark.parametrize("metric", ["mse", "euclidean"])
def test_pruned_batch_search_is_exact(galaxy_rows, metric):
    """Batched uint8 queries take the lower-bound pruning path: results must not change."""
    G, y = galaxy_rows
    Q = G[:40]
    search = NearestGalaxy(n_neighbors=10, metric=metric).fit(G, y)
    assert search._index.sums is not None
    dist, ind = search.kneighbors(Q)
    ref = reference(Q, G, metric)
    ref_ind = np.argsort(ref, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, np.take_along_axis(ref, ref_ind, 1), rtol=1e-12)
    # the duplicate pair: query 7 finds itself (0.0) then its copy, by index
    np.testing.assert_array_equal(ind[7, :2], [7, 100])
    # self-search excludes each row but keeps its duplicate
    _, ind_self = search.kneighbors(None, n_neighbors=5)
    assert ind_self[7, 0] == 100 and ind_self[100, 0] == 7
    assert not (ind_self == np.arange(len(G))[:, None]).any()
    ref_self = reference(G[:40], G, metric)
    ref_self[np.arange(40), np.arange(40)] = np.inf
    np.testing.assert_array_equal(ind_self[:40], np.argsort(ref_self, 1, kind="stable")[:, :5])
    # within a label, batched
    _, ind_w = search.kneighbors(Q, within=[5])
    ref_w = ref.copy()
    ref_w[:, y != 5] = np.inf
    np.testing.assert_array_equal(ind_w, np.argsort(ref_w, 1, kind="stable")[:, :10])


# ------------------------------------------------------------------ queries of another dtype
def test_integer_and_float_queries_follow_the_uint8_catalogue_convention():
    search = NearestGalaxy(n_neighbors=3).fit(G8)
    row = G8[7:8]
    for query in (row.astype(np.int64), row.astype(np.int16), (row / 255).astype(np.float32)):
        dist, ind = search.kneighbors(query)
        assert ind[0, 0] == 7
        assert dist[0, 0] == pytest.approx(0.0, abs=1e-12)
    maxabs = NearestGalaxy(n_neighbors=1, metric="maxabs").fit(G8)
    assert maxabs.kneighbors(row.astype(np.int16))[0][0, 0] == 0.0


@pytest.mark.parametrize(
    ("query", "match"),
    [
        (G8[7:8].astype(np.float32), r"floats from .* divide float ones by 255"),
        (G8[7:8].astype(np.int16) - 300, r"integers from -2.* uint8 pixels \(0-255\)"),
        (G8[7:8].astype(np.int64) + 1000, r"integers from .* uint8 pixels"),
    ],
)
def test_queries_off_the_catalogue_scale_are_refused(query, match):
    with pytest.raises(ValueError, match=match):
        NearestGalaxy(n_neighbors=3).fit(G8).kneighbors(query)


def test_within_compares_labels_without_casting():
    names = np.where(np.arange(len(G8)) % 2, "spiral", "elliptical")
    search = NearestGalaxy(n_neighbors=3).fit(G8, names)
    with pytest.raises(ValueError, match=r"Unknown labels \['ellipticalXYZ'\]"):
        search.kneighbors(Q8, within=["ellipticalXYZ"])
    with pytest.raises(ValueError, match="within is empty"):
        search.kneighbors(Q8, within=[])
    codes = NearestGalaxy(n_neighbors=3).fit(G8, np.arange(len(G8)) % 3)
    with pytest.raises(ValueError, match=r"Unknown labels \[1.9\]; the catalogue has \[0, 1, 2\]"):
        codes.kneighbors(Q8, within=[1.9])
    ind = codes.kneighbors(Q8, within=[np.int64(1), 2.0], return_distance=False)
    assert set((ind % 3).ravel().tolist()) <= {1, 2}


def test_ambiguous_query_rows_are_refused():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(20, 12), dtype=np.uint8)
    y = np.arange(20) % 2
    search = NearestGalaxy(n_neighbors=3).fit(X, y)
    with pytest.raises(TypeError, match="boolean rows"):
        search.kneighbors(X[:1] > 100)
    with pytest.raises(ValueError, match="n_neighbors must be a positive int"):
        search.kneighbors(X[:1], n_neighbors=True)
    with pytest.raises(ValueError, match=r"Unknown labels \[True\]"):
        search.kneighbors(X[:1], within=[True])
    floats = NearestGalaxy(n_neighbors=3).fit(X / 255.0, y)
    with pytest.raises(TypeError, match="compared as raw numbers"):
        floats.kneighbors(X[:1].astype(np.int64))
    # integer features fitted as such are searched as such
    ints = NearestGalaxy(n_neighbors=3).fit(X.astype(np.int64), y)
    assert ints.kneighbors(X[7:8].astype(np.int64))[1][0, 0] == 7


def test_text_and_non_finite_rows_are_refused_by_name():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(20, 12), dtype=np.uint8)
    search = NearestGalaxy(n_neighbors=3).fit(X)
    with pytest.raises(TypeError, match="rows of numbers.*string 'abc'"):
        search.kneighbors("abc")
    with pytest.raises(TypeError, match="rows of numbers.*dtype <U1"):
        search.kneighbors([["a"] * 12])
    with pytest.raises(ValueError, match="equal length"):
        search.kneighbors([[1] * 12, [2] * 11])
    F = X / 255.0
    F[[3, 9], 2] = np.nan
    with pytest.raises(ValueError, match=r"catalogue rows contain 2 NaN values.*\(index 3, 9\)"):
        NearestGalaxy(n_neighbors=3).fit(F)
    floats = NearestGalaxy(n_neighbors=3).fit(X / 255.0)
    Q = X[:3] / 255.0
    Q[1, 0] = np.inf
    with pytest.raises(ValueError, match=r"query rows contain 1 infinite value.*\(index 1\)"):
        floats.kneighbors(Q)
    # lists of numbers and object arrays of numbers still work
    assert floats.kneighbors((X[:2] / 255.0).tolist())[1][:, 0].tolist() == [0, 1]


def test_integer_features_are_searched_in_their_units():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(20, 12)).astype(np.int16)
    search = NearestGalaxy(n_neighbors=2, metric="maxabs").fit(X)
    dist, ind = search.kneighbors(X[7:8])
    assert ind[0, 0] == 7 and dist[0, 0] == 0
    expected = np.abs(X.astype(np.int64) - X[7].astype(np.int64)).max(axis=1)
    expected[7] = expected.max() + 1
    assert dist[0, 1] == expected.min()  # raw units, as documented (not / 255)
