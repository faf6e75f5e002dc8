"""Cross-validated retrieval quality of search methods."""

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, recall_score
from sklearn.model_selection import StratifiedKFold, check_cv
from sklearn.utils import check_consistent_length, column_or_1d

from galaxysim.metrics import mean_average_precision, precision_at_k, precision_at_k_per_class
from galaxysim.utils._progress import progress

__all__ = ["SearchCVResult", "cross_validate_search"]

# scores of the method's own classifier, present only where it predicts
_CLASSIFIER_SCORES = ("accuracy", "balanced_accuracy", "recall_per_class")


@dataclass(eq=False)
class SearchCVResult:
    """Cross-validated retrieval quality of one search method.

    Every query is a test-fold image searched against the training folds. Scores are
    computed per fold with :mod:`galaxysim.metrics`; a score *across folds* is the
    mean over folds of each fold's score (:meth:`mean`), with the standard deviation
    over folds (:meth:`sd`), as :func:`sklearn.model_selection.cross_validate` users
    average ``test_score``. Out-of-fold results are never pooled before scoring.

    Parameters
    ----------
    method : str
        Name of the method.
    k : int
        Neighbours per query.
    classes : ndarray of shape (n_classes,)
        Sorted labels of the whole data set; columns of the per-class scores.
    indices : ndarray of shape (n_queries,)
        Sample index of each query, fold after fold (every sample once for k-fold).
    test_fold : ndarray of shape (n_queries,)
        Fold of each query.
    y_true : ndarray of shape (n_queries,)
        Label of each query.
    neighbor_labels : ndarray of shape (n_queries, k)
        Labels of each query's ``k`` nearest training-fold images, nearest first.
    n_relevant : ndarray of shape (n_queries,)
        Training-fold images that share each query's label (for mean average precision).
    fit_time : ndarray of shape (n_folds,)
        Seconds to build and fit the search pipeline on each training fold (deep
        models trained there included).
    query_time : ndarray of shape (n_folds,)
        Seconds to search with each test fold.
    predictions : ndarray of shape (n_queries,) or None, default=None
        Class predicted for each query by the pipeline's classifier (a ``CNNScorer``),
        trained on that query's training folds; ``None`` where the pipeline has none.
    histories : list, default=[]
        ``history_`` of the pipeline's trained model on each fold (``None`` where the
        pipeline has no model with a history).

    Attributes
    ----------
    fold_scores : dict of str to ndarray
        Score of each fold (first axis), computed from the arrays above:

        - ``"precision_balanced"``, ``"precision_mean"``: precision@k averaged over
          classes (each class first) or over queries, shape ``(n_folds,)``;
        - ``"map_balanced"``, ``"map_mean"``: mean average precision@k, ``(n_folds,)``;
        - ``"precision_per_class"``: precision@k of each class, ``(n_folds, n_classes)``,
          NaN where a class has no query in a fold;
        - ``"precision_curve_balanced"``, ``"precision_curve_mean"``: precision@j for
          ``j = 1 .. k``, ``(n_folds, k)``;
        - with ``predictions`` only: ``"accuracy"``, ``"balanced_accuracy"``
          ``(n_folds,)`` and ``"recall_per_class"`` ``(n_folds, n_classes)``.
    n_folds : int
        Number of folds.
    score : float
        The headline figure: balanced precision@k, mean over folds.
    score_sd : float
        Its standard deviation over folds.

    See Also
    --------
    cross_validate_search : Builds these results.

    Examples
    --------
    >>> import numpy as np
    >>> res = SearchCVResult(
    ...     "toy", 1, classes=np.array([0, 1]), indices=np.arange(4),
    ...     test_fold=np.array([0, 0, 1, 1]), y_true=np.array([0, 1, 0, 1]),
    ...     neighbor_labels=np.array([[0], [0], [0], [1]]), n_relevant=np.ones(4, int),
    ...     fit_time=np.zeros(2), query_time=np.zeros(2))
    >>> res.fold_scores["precision_balanced"]
    array([0.5, 1. ])
    >>> res.score, res.mean("precision_per_class")
    (0.75, array([1. , 0.5]))
    """

    method: str
    k: int
    classes: np.ndarray = field(repr=False)
    indices: np.ndarray = field(repr=False)
    test_fold: np.ndarray = field(repr=False)
    y_true: np.ndarray = field(repr=False)
    neighbor_labels: np.ndarray = field(repr=False)
    n_relevant: np.ndarray = field(repr=False)
    fit_time: np.ndarray = field(repr=False)
    query_time: np.ndarray = field(repr=False)
    predictions: np.ndarray | None = field(default=None, repr=False)
    histories: list = field(default_factory=list, repr=False)
    fold_scores: dict = field(init=False, repr=False)

    def __post_init__(self):
        self.fold_scores = _fold_scores(self)

    @property
    def n_folds(self):
        return len(self.fit_time)

    def mean(self, name="precision_balanced"):
        """A score across folds: the mean over folds of each fold's score.

        Parameters
        ----------
        name : str, default="precision_balanced"
            A key of :attr:`fold_scores`.

        Returns
        -------
        mean : float or ndarray
            A float for per-fold scalars, an array for per-class scores and curves
            (folds where a class has no query are left out of its mean).
        """
        values = self._fold(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a class in no test fold
            out = np.nanmean(values, axis=0)
        return float(out) if np.ndim(out) == 0 else out

    def sd(self, name="precision_balanced"):
        """The standard deviation over folds of a score (``ddof=1``; NaN for one fold).

        Parameters
        ----------
        name : str, default="precision_balanced"
            A key of :attr:`fold_scores`.

        Returns
        -------
        sd : float or ndarray
        """
        values = self._fold(name)
        if len(values) < 2:
            out = np.full(values.shape[1:], np.nan)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out = np.nanstd(values, axis=0, ddof=1)
        return float(out) if np.ndim(out) == 0 else out

    @property
    def score(self):
        return self.mean("precision_balanced")

    @property
    def score_sd(self):
        return self.sd("precision_balanced")

    def confusion_matrix(self):
        """Out-of-fold confusion matrix of the predictions, every fold's queries summed.

        Returns
        -------
        matrix : ndarray of shape (n_classes, n_classes) or None
            Rows are true classes, columns predicted ones, in the order of ``classes``;
            ``None`` without predictions.
        """
        if self.predictions is None:
            return None
        return confusion_matrix(self.y_true, self.predictions, labels=self.classes)

    def _fold(self, name):
        if name not in self.fold_scores:
            raise KeyError(
                f"{self.method!r} has no score {name!r}; it has {', '.join(self.fold_scores)}."
            )
        return self.fold_scores[name]

    def __repr__(self):
        return (
            f"SearchCVResult(method={self.method!r}, k={self.k}, n_folds={self.n_folds}, "
            f"balanced precision@{self.k}={self.score:.3f} +- {self.score_sd:.3f})"
        )


def _per_class(values, classes):
    return np.array([values.get(c, np.nan) for c in classes.tolist()], dtype=float)


def _fold_scores(res):
    """Each fold's scores, by galaxysim.metrics (the one definition of every metric)."""
    folds = range(res.n_folds)
    scores = {name: [] for name in ("precision_balanced", "precision_mean", "map_balanced")}
    scores.update({name: [] for name in ("map_mean", "precision_per_class")})
    scores.update(precision_curve_balanced=[], precision_curve_mean=[])
    if res.predictions is not None:
        scores.update({name: [] for name in _CLASSIFIER_SCORES})
    for f in folds:
        rows = res.test_fold == f
        yt, nl, nrel = res.y_true[rows], res.neighbor_labels[rows], res.n_relevant[rows]
        for average in ("balanced", "mean"):
            scores[f"precision_{average}"].append(precision_at_k(yt, nl, average=average))
            scores[f"map_{average}"].append(
                mean_average_precision(yt, nl, n_relevant=nrel, average=average)
            )
            scores[f"precision_curve_{average}"].append(
                [precision_at_k(yt, nl, k=j, average=average) for j in range(1, res.k + 1)]
            )
        scores["precision_per_class"].append(
            _per_class(precision_at_k_per_class(yt, nl), res.classes)
        )
        if res.predictions is not None:
            pred = res.predictions[rows]
            scores["accuracy"].append(float(np.mean(pred == yt)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # predicted a class absent here
                scores["balanced_accuracy"].append(float(balanced_accuracy_score(yt, pred)))
            scores["recall_per_class"].append(
                recall_score(yt, pred, labels=res.classes, average=None, zero_division=np.nan)
            )
    n_classes = len(res.classes)
    shapes = {"precision_per_class": (n_classes,), "recall_per_class": (n_classes,)}
    shapes.update(precision_curve_balanced=(res.k,), precision_curve_mean=(res.k,))
    return {
        name: np.asarray(v, dtype=float).reshape(res.n_folds, *shapes.get(name, ()))
        for name, v in scores.items()
    }


def _splits(cv, X, y, groups, random_state):
    if isinstance(cv, bool):
        raise TypeError(f"cv must be an int, a CV splitter or (train, test) pairs; got {cv!r}.")
    if isinstance(cv, Integral):
        if cv < 2:
            raise ValueError(f"cv must be at least 2 folds; got {cv}.")
        cv = StratifiedKFold(int(cv), shuffle=True, random_state=random_state)
    else:
        cv = check_cv(cv, y, classifier=True)
    splits = [
        (_fold_indices(tr, len(y), f, "train"), _fold_indices(te, len(y), f, "test"))
        for f, (tr, te) in enumerate(cv.split(X, y, groups))
    ]
    if not splits:
        raise ValueError("cv gave no (train, test) split.")
    for f, (train, test) in enumerate(splits):
        if len(np.unique(test)) != len(test):
            raise ValueError(f"The test fold {f} names some images more than once.")
        shared = np.intersect1d(train, test)
        if len(shared):
            raise ValueError(
                f"The test fold {f} shares {len(shared)} images with its training fold (for "
                f"example image {int(shared[0])}): they would find themselves, and the "
                "scores would be too good. Give disjoint (train, test) index arrays."
            )
    return splits


def _fold_indices(idx, n, fold, part):
    """A fold's indices as int64, from integer indices or a boolean mask of length n."""
    idx = np.asarray(idx)
    if idx.dtype == np.bool_:
        if idx.shape != (n,):
            raise ValueError(
                f"The {part} mask of fold {fold} has shape {idx.shape}; a boolean mask needs "
                f"one entry per image ({n},)."
            )
        idx = np.flatnonzero(idx)
    if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
        raise ValueError(
            f"The {part} indices of fold {fold} must be a 1-D array of integer indices (or a "
            f"boolean mask); got dtype {idx.dtype}, shape {idx.shape}."
        )
    if idx.size == 0:
        raise ValueError(f"The {part} part of fold {fold} is empty; every fold needs images.")
    bad = idx[(idx < -n) | (idx >= n)]
    if len(bad):
        raise ValueError(
            f"The {part} indices of fold {fold} hold {bad[0]}, outside the {n} images "
            f"(0 to {n - 1})."
        )
    return np.where(idx < 0, idx + n, idx).astype(np.int64)


def _trained_model(pipe):
    """(position, model) of the first step that is a classifier or kept a training
    history (a deep model, possibly frozen), or (None, None)."""
    steps = getattr(pipe, "steps", [])[:-1]
    for i, (_, step) in enumerate(steps):
        model = step.estimator if isinstance(step, FrozenEstimator) else step
        if is_classifier(model) or hasattr(model, "history_"):
            return i, model
    return None, None


def cross_validate_search(
    searches, X, y, *, cv=5, k=10, groups=None, random_state=None, verbose=0, callback=None
):
    """Cross-validate the retrieval quality of one or more search methods.

    For every fold, each method's search pipeline is fitted on the training fold and
    queried with every test-fold image; the labels of its ``k`` nearest training-fold
    images give precision@k and mean average precision (:mod:`galaxysim.metrics`),
    per fold and per class. A score across folds is the mean over folds of each
    fold's score (:meth:`SearchCVResult.mean`), with the standard deviation over folds.

    Parameters
    ----------
    searches : dict of str to search pipeline or callable
        Method name -> either an unfitted search pipeline (anything with ``fit`` and
        ``kneighbors``, such as :func:`~galaxysim.pipeline.make_search_pipeline`'s),
        cloned for every fold, or a callable ``build(X_train, y_train)`` returning one
        (deep models are trained inside it, on the training fold only, and returned
        frozen). Within a fold every callable receives the same ``X_train`` and
        ``y_train`` objects, so builders may share a model trained once per fold.
    X : array-like of shape (n_samples, ...)
        Images (or whatever the pipelines take).
    y : array-like of shape (n_samples,)
        Labels.
    cv : int, CV splitter or iterable of (train, test) index arrays, default=5
        An int is the number of folds of ``StratifiedKFold(cv, shuffle=True,
        random_state=random_state)``. Every method is scored on the same splits.
    k : int, default=10
        Neighbours per query.
    groups : array-like of shape (n_samples,), default=None
        Group labels, for group-aware splitters.
    random_state : int, RandomState instance or None, default=None
        Shuffling of the folds when ``cv`` is an int.
    verbose : int, default=0
        Show a progress bar (one step per method and fold).
    callback : callable, default=None
        Called as ``callback(method, fold)`` after each method is scored on each fold
        (``fold`` counts from 0).

    Returns
    -------
    results : dict of str to SearchCVResult
        One result per method, in the order of ``searches``.

    See Also
    --------
    SearchCVResult : Per-fold, per-class and out-of-fold results of one method.
    galaxysim.metrics.retrieval_scorer : The same precision@k as a ``GridSearchCV`` scorer.

    Examples
    --------
    >>> from galaxysim.datasets import make_galaxies
    >>> from galaxysim.neighbors import NearestGalaxy
    >>> from galaxysim.pipeline import make_search_pipeline
    >>> from galaxysim.preprocessing import PixelFlatten
    >>> X, y = make_galaxies(60, image_size=16, random_state=0)
    >>> pixels = make_search_pipeline(PixelFlatten(), NearestGalaxy(metric="mse"))
    >>> results = cross_validate_search({"mse": pixels}, X, y, cv=3, k=5, random_state=0)
    >>> res = results["mse"]
    >>> res.neighbor_labels.shape, res.fold_scores["precision_per_class"].shape
    ((60, 5), (3, 10))
    >>> res.fold_scores["precision_balanced"]
    array([0.2 , 0.12, 0.24])
    >>> res.score, res.mean("precision_per_class").shape
    (0.1866..., (10,))
    """
    if not isinstance(searches, Mapping) or not searches:
        raise TypeError("searches must be a non-empty dict of method name -> search pipeline.")
    for name, search in searches.items():
        if not (hasattr(search, "fit") and hasattr(search, "kneighbors")) and not callable(search):
            raise TypeError(
                f"searches[{name!r}] must be a search pipeline (with fit and kneighbors) "
                f"or a callable build(X_train, y_train); got {type(search).__name__}."
            )
        steps = getattr(search, "steps", None) or []
        frozen = [n for n, step in steps if type(step).__name__ == "FrozenEstimator"]
        if frozen:
            raise ValueError(
                f"searches[{name!r}] holds a frozen, already fitted step ({frozen[0]!r}): "
                "it would not be refitted on the training folds, so the test folds would "
                "leak into it. Pass an unfitted pipeline, or a callable "
                "build(X_train, y_train) that trains the model on the training fold."
            )
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be an int >= 1; got {k!r}.")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(method, fold); got {callback!r}.")
    k = int(k)
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    if y is None:
        raise ValueError(
            "cross_validate_search scores searches by their labels: pass y, one label per image."
        )
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    classes = np.unique(y)
    splits = _splits(cv, X, y, groups, random_state)
    for f, (train, _) in enumerate(splits):
        if k > len(train):
            raise ValueError(f"k={k} exceeds the {len(train)} training images of fold {f}.")

    n_queries = sum(len(te) for _, te in splits)
    state = {
        name: {
            "neighbor_labels": np.empty((n_queries, k), dtype=y.dtype),
            "n_relevant": np.empty(n_queries, dtype=np.int64),
            "predictions": None,
            "predicted_folds": 0,
            "fit_time": [],
            "query_time": [],
            "histories": [],
        }
        for name in searches
    }
    indices = np.concatenate([te for _, te in splits])
    test_fold = np.repeat(np.arange(len(splits)), [len(te) for _, te in splits])
    bar = progress(total=len(splits) * len(searches), desc="cross-validate", verbose=verbose)
    with bar:
        start = 0
        for f, (train, test) in enumerate(splits):
            # one copy of the fold for every method (and the same objects for builders)
            X_train, y_train, X_test = X[train], y[train], X[test]
            rows = slice(start, start + len(test))
            start += len(test)
            labs, cnt = np.unique(y_train, return_counts=True)
            count_of = dict(zip(labs.tolist(), cnt.tolist(), strict=True))
            n_rel = [count_of.get(v, 0) for v in y[test].tolist()]
            for name, search in searches.items():
                bar.set_description(f"cross-validate {name}")
                st = state[name]
                t0 = time.perf_counter()
                if hasattr(search, "fit") and hasattr(search, "kneighbors"):
                    pipe = clone(search)
                else:
                    pipe = search(X_train, y_train)
                    if not (hasattr(pipe, "fit") and hasattr(pipe, "kneighbors")):
                        raise TypeError(
                            f"searches[{name!r}] is a builder, but build(X_train, y_train) "
                            f"returned {type(pipe).__name__}; it must return a search "
                            "pipeline (with fit and kneighbors)."
                        )
                pipe.fit(X_train, y_train)
                t1 = time.perf_counter()
                ind = pipe.kneighbors(X_test, k, return_distance=False)
                t2 = time.perf_counter()
                st["neighbor_labels"][rows] = y_train[ind]
                st["n_relevant"][rows] = n_rel
                st["fit_time"].append(t1 - t0)
                st["query_time"].append(t2 - t1)
                pos, model = _trained_model(pipe)
                st["histories"].append(getattr(model, "history_", None))
                if model is not None and is_classifier(model):
                    if st["predictions"] is None:
                        st["predictions"] = np.empty(n_queries, dtype=y.dtype)
                    Xt = pipe[:pos].transform(X_test) if pos else X_test
                    st["predictions"][rows] = model.predict(Xt)
                    st["predicted_folds"] += 1
                del pipe
                bar.update(1)
                if callback is not None:
                    callback(name, f)
    return {
        name: SearchCVResult(
            name,
            k,
            classes=classes,
            indices=indices,
            test_fold=test_fold,
            y_true=y[indices],
            neighbor_labels=st["neighbor_labels"],
            n_relevant=st["n_relevant"],
            fit_time=np.asarray(st["fit_time"]),
            query_time=np.asarray(st["query_time"]),
            predictions=st["predictions"] if st["predicted_folds"] == len(splits) else None,
            histories=st["histories"],
        )
        for name, st in state.items()
    }
