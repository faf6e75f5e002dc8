"""Retrieval metrics: how many of a query's nearest galaxies share its label."""

import numpy as np

__all__ = [
    "mean_average_precision",
    "precision_at_k",
    "precision_at_k_per_class",
    "retrieval_scorer",
]


def _check(y_true, neighbor_labels, k):
    y_true = np.asarray(y_true)
    neighbor_labels = np.asarray(neighbor_labels)
    if neighbor_labels.ndim != 2:
        raise ValueError(
            "neighbor_labels must be 2-D (n_queries, n_neighbors); got shape "
            f"{neighbor_labels.shape}."
        )
    if y_true.ndim != 1 or len(y_true) != len(neighbor_labels):
        raise ValueError(
            f"y_true must be 1-D with one label per query; got shape {y_true.shape} for "
            f"{len(neighbor_labels)} queries."
        )
    if len(y_true) == 0:
        raise ValueError("No queries: y_true is empty.")
    if k is not None:
        if not 1 <= k <= neighbor_labels.shape[1]:
            raise ValueError(f"k must be in [1, {neighbor_labels.shape[1]}]; got {k}.")
        neighbor_labels = neighbor_labels[:, :k]
    return y_true, neighbor_labels == y_true[:, None]


def _average(per_query, y_true, average):
    if average is None:
        return per_query
    if average == "mean":
        return float(per_query.mean())
    if average == "balanced":
        classes = np.unique(y_true)
        return float(np.mean([per_query[y_true == c].mean() for c in classes]))
    raise ValueError(f"average must be 'mean', 'balanced' or None; got {average!r}.")


def precision_at_k(y_true, neighbor_labels, *, k=None, average="mean"):
    """Share of each query's first ``k`` neighbours that carry the query's label.

    Parameters
    ----------
    y_true : array-like of shape (n_queries,)
        Label of each query.
    neighbor_labels : array-like of shape (n_queries, n_neighbors)
        Labels of the ranked neighbours, nearest first.
    k : int, default=None
        Use the first ``k`` neighbours (default: all columns).
    average : {"mean", "balanced"} or None, default="mean"
        ``"mean"`` over queries, ``"balanced"``: mean of the per-class means (fair
        under class imbalance), ``None``: one value per query.

    Returns
    -------
    precision : float or ndarray of shape (n_queries,)

    Examples
    --------
    >>> precision_at_k([0, 1], [[0, 0, 1], [0, 1, 1]])
    0.666...
    >>> precision_at_k([0, 1], [[0, 0, 1], [0, 1, 1]], k=1, average=None)
    array([1., 0.])
    """
    y_true, hits = _check(y_true, neighbor_labels, k)
    return _average(hits.mean(axis=1), y_true, average)


def precision_at_k_per_class(y_true, neighbor_labels, *, k=None):
    """Mean precision@k of the queries of each label.

    Parameters
    ----------
    y_true : array-like of shape (n_queries,)
        Label of each query.
    neighbor_labels : array-like of shape (n_queries, n_neighbors)
        Labels of the ranked neighbours, nearest first.
    k : int, default=None
        Use the first ``k`` neighbours (default: all columns).

    Returns
    -------
    per_class : dict
        ``{label: precision}``, labels sorted.

    Examples
    --------
    >>> precision_at_k_per_class([0, 1, 1], [[0, 1], [1, 1], [0, 0]])
    {0: 0.5, 1: 0.5}
    """
    y_true, hits = _check(y_true, neighbor_labels, k)
    per_query = hits.mean(axis=1)
    return {c.item(): float(per_query[y_true == c].mean()) for c in np.unique(y_true)}


def mean_average_precision(y_true, neighbor_labels, *, k=None, n_relevant=None, average="mean"):
    """Mean average precision of ranked neighbour lists.

    The average precision of one query is the mean of precision@i over the ranks ``i``
    that hold a relevant neighbour (same label), divided by ``min(k, n_relevant)``
    relevant items when ``n_relevant`` is given and by the number found otherwise.

    Parameters
    ----------
    y_true : array-like of shape (n_queries,)
        Label of each query.
    neighbor_labels : array-like of shape (n_queries, n_neighbors)
        Labels of the ranked neighbours, nearest first.
    k : int, default=None
        Use the first ``k`` neighbours (default: all columns).
    n_relevant : array-like of shape (n_queries,), default=None
        Number of catalogue items with each query's label.
    average : {"mean", "balanced"} or None, default="mean"
        As in :func:`precision_at_k`.

    Returns
    -------
    map : float or ndarray of shape (n_queries,)

    Examples
    --------
    >>> mean_average_precision([0], [[0, 1, 0]])
    0.833...
    """
    y_true, hits = _check(y_true, neighbor_labels, k)
    ranks = np.arange(1, hits.shape[1] + 1)
    prec = np.cumsum(hits, axis=1) / ranks
    total = (prec * hits).sum(axis=1)
    if n_relevant is None:
        denom = hits.sum(axis=1)
    else:
        denom = np.minimum(np.asarray(n_relevant), hits.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(denom > 0, total / np.maximum(denom, 1), 0.0)
    return _average(ap, y_true, average)


def retrieval_scorer(k=10, *, metric="precision", average="mean"):
    """A scorer for ``GridSearchCV(scoring=...)`` that measures retrieval quality.

    The scorer calls ``estimator.kneighbors(X, k)`` (a ``NearestGalaxy`` or a
    :class:`~galaxysim.pipeline.SearchPipeline`) and compares the labels of the
    catalogue neighbours with ``y``.

    Parameters
    ----------
    k : int, default=10
        Number of neighbours.
    metric : {"precision", "map"}, default="precision"
        Precision@k or mean average precision@k.
    average : {"mean", "balanced"}, default="mean"
        Mean over queries or over classes.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, larger is better.

    Examples
    --------
    >>> import numpy as np
    >>> from galaxysim.neighbors import NearestGalaxy
    >>> X = np.array([[0], [1], [100], [101]], dtype=np.uint8)
    >>> est = NearestGalaxy(n_neighbors=2).fit(X, [0, 0, 1, 1])
    >>> retrieval_scorer(k=2)(est, np.array([[2], [99]], np.uint8), [0, 1])
    1.0
    """
    if metric not in ("precision", "map"):
        raise ValueError(f"metric must be 'precision' or 'map'; got {metric!r}.")

    def scorer(estimator, X, y, sample_weight=None):
        ind = estimator.kneighbors(X, k, return_distance=False)
        labels = estimator.catalogue_labels()[ind]
        fn = precision_at_k if metric == "precision" else mean_average_precision
        return fn(np.asarray(y), labels, average=average)

    scorer.__name__ = f"{metric}_at_{k}"
    return scorer
