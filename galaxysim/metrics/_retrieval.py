"""Retrieval metrics: how many of a query's nearest galaxies share its label."""

import numbers

import numpy as np

__all__ = [
    "mean_average_precision",
    "precision_at_k",
    "precision_at_k_per_class",
    "retrieval_scorer",
]


def _check_k(k, name="k"):
    """``k`` as an int >= 1 (``None`` passes); bools, floats and strings are refused."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"{name} must be an int >= 1 or None; got {k!r}.")
    return int(k)


def _check_average(average, allowed=("mean", "balanced", None)):
    if not any(average is a or (isinstance(average, str) and average == a) for a in allowed):
        shown = ", ".join(repr(a) for a in allowed[:-1]) + f" or {allowed[-1]!r}"
        raise ValueError(f"average must be {shown}; got {average!r}.")


def _missing(values):
    """Positions of None and NaN among labels (they equal nothing, not even themselves)."""
    if values.dtype.kind == "f":
        return np.flatnonzero(np.isnan(values).reshape(len(values), -1).any(axis=1))
    if values.dtype == object:
        flat = values.reshape(len(values), -1)
        return np.array(
            [
                i
                for i, row in enumerate(flat)
                if any(v is None or (isinstance(v, float) and v != v) for v in row)
            ],
            dtype=np.intp,
        )
    return np.empty(0, dtype=np.intp)


def _as_array(values, name):
    try:
        return np.asarray(values)
    except ValueError:  # a ragged list of lists
        raise ValueError(
            f"{name} must be a rectangular array (n_queries, n_neighbors); its rows have "
            "different lengths. Give every query the same number of neighbours."
        ) from None


def _check(y_true, neighbor_labels, k):
    y_true = _as_array(y_true, "y_true")
    neighbor_labels = _as_array(neighbor_labels, "neighbor_labels")
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
    if neighbor_labels.shape[1] == 0:
        raise ValueError("neighbor_labels has no columns: each query needs at least 1 neighbour.")
    for values, name in ((y_true, "y_true"), (neighbor_labels, "neighbor_labels")):
        bad = _missing(values)
        if len(bad):
            raise ValueError(
                f"{name} holds missing labels (NaN or None) in {len(bad)} of {len(values)} "
                f"rows (row {', '.join(map(str, bad[:5].tolist()))}); a missing label matches "
                "nothing, not even itself. Drop those queries or label them."
            )
    kinds = {
        "U": "strings",
        "S": "strings",
        "i": "numbers",
        "u": "numbers",
        "f": "numbers",
        "b": "numbers",
    }
    kt, kn = kinds.get(y_true.dtype.kind), kinds.get(neighbor_labels.dtype.kind)
    if kt and kn and kt != kn:
        raise ValueError(
            f"y_true holds {kt} ({y_true.dtype}) but neighbor_labels holds {kn} "
            f"({neighbor_labels.dtype}), so no label could match; give both the same kind of "
            "labels (the catalogue's)."
        )
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise ValueError(
                f"k must be an int in [1, {neighbor_labels.shape[1]}] or None; got {k!r}."
            )
        if not 1 <= k <= neighbor_labels.shape[1]:
            raise ValueError(f"k must be in [1, {neighbor_labels.shape[1]}]; got {k}.")
        neighbor_labels = neighbor_labels[:, : int(k)]
    return y_true, neighbor_labels == y_true[:, None]


def _average(per_query, y_true, average):
    if average is None:
        return per_query
    if average == "mean":
        return float(per_query.mean())
    classes = np.unique(y_true)
    return float(np.mean([per_query[y_true == c].mean() for c in classes]))


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
    _check_average(average)
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
        Number of catalogue items with each query's label (whole numbers, at least
        the relevant neighbours in each list).
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
    _check_average(average)
    y_true, hits = _check(y_true, neighbor_labels, k)
    ranks = np.arange(1, hits.shape[1] + 1)
    prec = np.cumsum(hits, axis=1) / ranks
    total = (prec * hits).sum(axis=1)
    if n_relevant is None:
        denom = hits.sum(axis=1)
    else:
        denom = np.minimum(_check_n_relevant(n_relevant, hits), hits.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(denom > 0, total / np.maximum(denom, 1), 0.0)
    return _average(ap, y_true, average)


def _check_n_relevant(n_relevant, hits):
    """``n_relevant`` as int64, one whole number per query, at least the relevant
    neighbours already found (an average precision above 1 otherwise)."""
    n_relevant = _as_array(n_relevant, "n_relevant")
    n = len(hits)
    if n_relevant.ndim != 1 or len(n_relevant) != n:
        raise ValueError(
            f"n_relevant must be 1-D with one count per query; got shape {n_relevant.shape} "
            f"for {n} queries."
        )
    if not (np.issubdtype(n_relevant.dtype, np.number) and n_relevant.dtype.kind != "c"):
        raise ValueError(
            f"n_relevant must hold counts (whole numbers); got dtype {n_relevant.dtype}."
        )
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(n_relevant) & (n_relevant == np.round(n_relevant)) & (n_relevant >= 0)
    if not whole.all():
        bad = np.flatnonzero(~whole)
        raise ValueError(
            f"n_relevant must hold whole numbers >= 0; got {n_relevant[bad[:5]].tolist()} "
            f"(query {', '.join(map(str, bad[:5].tolist()))})."
        )
    n_relevant = n_relevant.astype(np.int64)
    found = hits.sum(axis=1)
    short = np.flatnonzero(n_relevant < found)
    if len(short):
        i = int(short[0])
        raise ValueError(
            f"n_relevant is smaller than the relevant neighbours found for {len(short)} of {n} "
            f"queries (query {i}: n_relevant={int(n_relevant[i])}, but {int(found[i])} of its "
            "neighbours carry its label). It counts the catalogue items with each query's "
            "label; a query from the catalogue counts itself only if it can be its own neighbour."
        )
    return n_relevant


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
    k = _check_k(k)
    if k is None:
        raise ValueError("k must be an int >= 1; got None.")
    _check_average(average, allowed=("mean", "balanced"))

    def scorer(estimator, X, y, sample_weight=None):
        if y is None:
            raise ValueError(
                "retrieval_scorer compares the neighbours' labels with the queries' labels: "
                "score with labels y (GridSearchCV.fit(X, y))."
            )
        if not hasattr(estimator, "catalogue_labels"):
            raise TypeError(
                f"retrieval_scorer scores a search (NearestGalaxy or a SearchPipeline); got "
                f"{type(estimator).__name__}, which has no catalogue_labels."
            )
        catalogue = estimator.catalogue_labels()
        ind = estimator.kneighbors(X, k, return_distance=False)
        labels = catalogue[ind]
        fn = precision_at_k if metric == "precision" else mean_average_precision
        return fn(np.asarray(y), labels, average=average)

    scorer.__name__ = f"{metric}_at_{k}"
    return scorer
