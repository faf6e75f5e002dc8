"""Retrieval metrics: known answers computed by hand, errors, and the GridSearchCV scorer."""

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score

from galaxysim.metrics import (
    mean_average_precision,
    precision_at_k,
    precision_at_k_per_class,
    retrieval_scorer,
)
from galaxysim.neighbors import NearestGalaxy
from galaxysim.pipeline import make_search_pipeline
from galaxysim.preprocessing import CenterCrop, PixelFlatten

# Four queries with labels 0, 1, 1, 2 and the labels of their 3 ranked neighbours.
#   hits                per-query precision@3    precision@1   precision@2
#   q0 [1, 1, 0]        2/3                      1             1
#   q1 [1, 0, 1]        2/3                      1             1/2
#   q2 [0, 0, 0]        0                        0             0
#   q3 [1, 1, 1]        1                        1             1
Y = np.array([0, 1, 1, 2])
NL = np.array([[0, 0, 1], [1, 0, 1], [0, 0, 0], [2, 2, 2]])


# ------------------------------------------------------------------ precision@k
def test_precision_at_k_mean():
    assert precision_at_k(Y, NL) == pytest.approx((2 / 3 + 2 / 3 + 0 + 1) / 4)  # 7/12


def test_precision_at_k_balanced():
    # per class: 0 -> 2/3, 1 -> (2/3 + 0) / 2 = 1/3, 2 -> 1
    assert precision_at_k(Y, NL, average="balanced") == pytest.approx((2 / 3 + 1 / 3 + 1) / 3)


def test_precision_at_k_per_query():
    np.testing.assert_allclose(precision_at_k(Y, NL, average=None), [2 / 3, 2 / 3, 0, 1])


@pytest.mark.parametrize("k, expected", [(1, 3 / 4), (2, 2.5 / 4), (3, 7 / 12)])
def test_precision_at_k_first_k(k, expected):
    assert precision_at_k(Y, NL, k=k) == pytest.approx(expected)


def test_precision_at_k_string_labels_and_lists():
    y = ["Barred Spiral", "Merging"]
    nl = [["Barred Spiral", "Merging"], ["Merging", "Merging"]]
    assert precision_at_k(y, nl) == pytest.approx(0.75)


def test_precision_at_k_returns_python_float():
    assert isinstance(precision_at_k(Y, NL), float)


def test_precision_at_k_per_class():
    got = precision_at_k_per_class(Y, NL)
    assert list(got) == [0, 1, 2]
    assert got == pytest.approx({0: 2 / 3, 1: 1 / 3, 2: 1.0})
    assert precision_at_k_per_class(Y, NL, k=1) == pytest.approx({0: 1.0, 1: 0.5, 2: 1.0})
    assert all(type(label) is int for label in got)


# ------------------------------------------------------------------ mean average precision
# AP of one query: sum of precision@i over the ranks i holding a hit, divided by the hits
# found (or by min(k, n_relevant)):
#   q0 hits [1, 1, 0]: (1 + 1) / 2 = 1
#   q1 hits [1, 0, 1]: (1 + 2/3) / 2 = 5/6
#   q2 no hit: 0
#   q3 hits [1, 1, 1]: 3 / 3 = 1
def test_map_without_n_relevant():
    np.testing.assert_allclose(mean_average_precision(Y, NL, average=None), [1, 5 / 6, 0, 1])
    assert mean_average_precision(Y, NL) == pytest.approx((1 + 5 / 6 + 0 + 1) / 4)


def test_map_with_n_relevant():
    # denominators min(3, n_relevant) = 3, 2, 3, 3
    n_relevant = [4, 2, 3, 3]
    np.testing.assert_allclose(
        mean_average_precision(Y, NL, n_relevant=n_relevant, average=None),
        [2 / 3, 5 / 6, 0, 1],
    )
    assert mean_average_precision(Y, NL, n_relevant=n_relevant) == pytest.approx(15 / 24)


def test_map_with_k():
    # first two neighbours: q0 [1, 1] -> 1, q1 [1, 0] -> 1, q2 -> 0, q3 -> 1
    assert mean_average_precision(Y, NL, k=2) == pytest.approx(3 / 4)
    # with n_relevant the denominator is min(k, n_relevant) = 2 for all: q1 -> 1/2
    np.testing.assert_allclose(
        mean_average_precision(Y, NL, k=2, n_relevant=[4, 2, 3, 3], average=None),
        [1, 0.5, 0, 1],
    )


def test_map_balanced():
    # per class: 0 -> 1, 1 -> (5/6 + 0) / 2 = 5/12, 2 -> 1
    assert mean_average_precision(Y, NL, average="balanced") == pytest.approx((1 + 5 / 12 + 1) / 3)


def test_map_zero_relevant_is_zero():
    assert mean_average_precision([0], [[1, 1]], n_relevant=[0]) == 0.0


def test_map_docstring_example():
    assert mean_average_precision([0], [[0, 1, 0]]) == pytest.approx((1 + 2 / 3) / 2)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("fn", [precision_at_k, precision_at_k_per_class, mean_average_precision])
def test_errors(fn):
    with pytest.raises(ValueError, match=r"neighbor_labels must be 2-D \(n_queries, n_neighbors\)"):
        fn(Y, NL[:, 0])
    with pytest.raises(ValueError, match="y_true must be 1-D with one label per query"):
        fn(Y[:3], NL)
    with pytest.raises(ValueError, match="y_true must be 1-D"):
        fn(Y[:, None], NL)
    with pytest.raises(ValueError, match="No queries: y_true is empty"):
        fn([], np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]; got 0"):
        fn(Y, NL, k=0)
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]; got 4"):
        fn(Y, NL, k=4)


@pytest.mark.parametrize("fn", [precision_at_k, mean_average_precision])
def test_bad_average(fn):
    with pytest.raises(
        ValueError, match="average must be 'mean', 'balanced' or None; got 'median'"
    ):
        fn(Y, NL, average="median")


def test_scorer_bad_metric():
    with pytest.raises(ValueError, match="metric must be 'precision' or 'map'; got 'recall'"):
        retrieval_scorer(metric="recall")


# ------------------------------------------------------------------ scorer
RNG = np.random.default_rng(0)


def _rows(n_per_class=20, n_features=12):
    """Three well separated clusters of uint8 rows, labels 0, 1, 2, and some noise."""
    centres = np.array([40, 128, 215])
    y = np.repeat([0, 1, 2], n_per_class)
    X = centres[y][:, None] + RNG.integers(-30, 31, size=(len(y), n_features))
    return X.astype(np.uint8), y


def test_scorer_with_nearest_galaxy():
    X, y = _rows()
    Q, yq = _rows(5)
    est = NearestGalaxy(n_neighbors=5).fit(X, y)
    ind = est.kneighbors(Q, 5, return_distance=False)
    scorer = retrieval_scorer(k=5)
    assert scorer.__name__ == "precision_at_5"
    assert scorer(est, Q, yq) == pytest.approx(precision_at_k(yq, y[ind]))
    # and equals NearestGalaxy.score, which is mean precision@k with k = n_neighbors
    assert scorer(est, Q, yq) == pytest.approx(est.score(Q, yq))
    m = retrieval_scorer(k=5, metric="map", average="balanced")
    assert m.__name__ == "map_at_5"
    assert m(est, Q, yq) == pytest.approx(mean_average_precision(yq, y[ind], average="balanced"))


def test_scorer_ignores_n_neighbors_of_the_estimator():
    X, y = _rows()
    est = NearestGalaxy(n_neighbors=2).fit(X, y)
    ind = est.kneighbors(X[:10], 7, return_distance=False)
    assert retrieval_scorer(k=7)(est, X[:10], y[:10]) == pytest.approx(
        precision_at_k(y[:10], y[ind])
    )


def test_scorer_uses_catalogue_labels_not_codes():
    X, _ = _rows()
    names = np.array(["Merging", "Barred Spiral", "Round Smooth"])[np.repeat([0, 1, 2], 20)]
    est = NearestGalaxy(n_neighbors=3).fit(X, names)
    score = retrieval_scorer(k=3)(est, X[:20], names[:20])
    assert score == pytest.approx(1.0)


def test_scorer_with_search_pipeline():
    X, y = _rows(n_features=8 * 8 * 3)
    images = X.reshape(-1, 8, 8, 3)
    pipe = make_search_pipeline(CenterCrop(size=6), PixelFlatten(), NearestGalaxy(n_neighbors=4))
    pipe.fit(images, y)
    rows = images[:, 1:7, 1:7].reshape(len(images), -1)
    by_hand = NearestGalaxy(n_neighbors=4).fit(rows, y)
    ind = by_hand.kneighbors(rows[::3], 4, return_distance=False)
    scorer = retrieval_scorer(k=4)
    assert scorer(pipe, images[::3], y[::3]) == pytest.approx(precision_at_k(y[::3], y[ind]))
    # usable wherever sklearn takes a scorer
    scores = cross_val_score(pipe, images, y, cv=3, scoring=scorer)
    assert scores.shape == (3,)
    assert np.all((scores >= 0) & (scores <= 1))


# ------------------------------------------------------------------ audit siblings (issue 10)
@pytest.mark.parametrize("fn", [precision_at_k, precision_at_k_per_class, mean_average_precision])
@pytest.mark.parametrize("k", [True, 1.5, "2", float("nan")])
def test_k_must_be_an_int(fn, k):
    with pytest.raises(ValueError, match=rf"k must be an int in \[1, 3\] or None; got {k!r}"):
        fn(Y, NL, k=k)
    assert fn(Y, NL, k=np.int64(2)) == fn(Y, NL, k=2)


@pytest.mark.parametrize("fn", [precision_at_k, precision_at_k_per_class, mean_average_precision])
def test_missing_labels_are_refused(fn):
    with pytest.raises(
        ValueError, match=r"y_true holds missing labels \(NaN or None\) in 1 of 2 rows \(row 1\)"
    ):
        fn(np.array([0.0, np.nan]), np.array([[0.0, 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"neighbor_labels holds missing labels .* \(row 0\)"):
        fn(np.array([0, 1], dtype=object), np.array([[0, None], [1, 1]], dtype=object))


@pytest.mark.parametrize("fn", [precision_at_k, precision_at_k_per_class, mean_average_precision])
def test_shapes_and_label_kinds(fn):
    with pytest.raises(ValueError, match="neighbor_labels has no columns"):
        fn(Y, np.zeros((4, 0), int))
    with pytest.raises(ValueError, match=r"rows have different lengths"):
        fn([0, 1], [[0, 1], [1]])
    with pytest.raises(
        ValueError, match=r"y_true holds strings \(<U21\) but neighbor_labels holds numbers"
    ):
        fn(Y.astype(str), NL)


@pytest.mark.parametrize(
    "n_relevant, match",
    [
        ([1, 2], r"n_relevant must be 1-D with one count per query; got shape \(2,\) for 4"),
        ([[3, 3, 3, 3]], "n_relevant must be 1-D"),
        ([-1, 5, 5, 5], r"whole numbers >= 0; got \[-1\] \(query 0\)"),
        ([np.nan, 5, 5, 5], r"whole numbers >= 0; got \[nan\]"),
        ([1.5, 5, 5, 5], r"whole numbers >= 0; got \[1.5\]"),
        (["a", "b", "c", "d"], "n_relevant must hold counts"),
        ([1, 5, 5, 5], r"query 0: n_relevant=1, but 2 of its neighbours carry its label"),
    ],
)
def test_map_n_relevant_is_checked(n_relevant, match):
    with pytest.raises(ValueError, match=match):
        mean_average_precision(Y, NL, n_relevant=n_relevant)
    assert mean_average_precision(Y, NL, n_relevant=[2.0, 5, 5, 5]) == mean_average_precision(
        Y, NL, n_relevant=[2, 5, 5, 5]
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be an int >= 1"),
        ({"k": True}, "k must be an int >= 1"),
        ({"k": "a"}, "k must be an int >= 1"),
        ({"k": None}, "k must be an int >= 1; got None"),
        ({"average": "foo"}, "average must be 'mean' or 'balanced'; got 'foo'"),
        ({"average": None}, "average must be 'mean' or 'balanced'; got None"),
    ],
)
def test_scorer_parameters_are_checked_when_made(kwargs, match):
    with pytest.raises(ValueError, match=match):
        retrieval_scorer(**kwargs)


def test_scorer_needs_labels_and_a_search():
    X = np.arange(8, dtype=np.uint8)[:, None]
    est = NearestGalaxy(n_neighbors=2).fit(X, [0, 0, 1, 1, 0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"score with labels y \(GridSearchCV.fit\(X, y\)\)"):
        retrieval_scorer(k=2)(est, X, None)
    with pytest.raises(TypeError, match="scores a search .*got PixelFlatten"):
        retrieval_scorer(k=2)(PixelFlatten(), X, [0] * 8)
