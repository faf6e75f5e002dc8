"""NearestGalaxy: exact brute-force search of a catalogue by image distance."""

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from galaxysim.neighbors._kernels import METRICS, GalleryIndex, topk
from galaxysim.utils._sklearn_compat import (
    ParamsValidationMixin,
    StrOptions,
    fit_context,
    n_jobs_constraint,
    positive_int,
    positive_real,
)

__all__ = ["NearestGalaxy"]


class NearestGalaxy(ParamsValidationMixin, BaseEstimator):
    """Rank a catalogue by distance to query images (exact brute force).

    A search estimator, like scikit-learn's
    :class:`~sklearn.neighbors.NearestNeighbors`, not a classifier: :meth:`score` is
    retrieval precision@k (the share of each query's ``n_neighbors`` nearest rows that
    carry its label), which is what ``GridSearchCV`` maximises by default.
    :meth:`predict` gives the majority label of the neighbours, for convenience.

    Each row is one image flattened by :class:`~galaxysim.preprocessing.PixelFlatten`
    (or a feature vector such as CNN scores or autoencoder latents). ``uint8`` rows are
    kept as ``uint8`` and searched in exact integer arithmetic; other rows are kept as
    ``float32``/``float64``. uint8 values count as ``value / 255``, so distances are on
    the [0, 1] pixel scale whatever the dtype.

    Parameters
    ----------
    n_neighbors : int, default=10
        Number of neighbours returned by :meth:`kneighbors` and used by
        :meth:`predict` and :meth:`score`.
    metric : {"mse", "maxabs", "euclidean", "sqeuclidean", "manhattan", "cosine"} or \
callable, default="mse"
        ``"mse"``: mean squared difference; ``"maxabs"``: the largest absolute pixel
        difference (the "minimal maximum difference" search); ``"euclidean"``,
        ``"sqeuclidean"``, ``"manhattan"``: the usual norms; ``"cosine"``: one minus the
        cosine similarity. A callable takes two rows and returns a float (slow).
    n_jobs : int, default=None
        Threads of the distance kernels, with joblib's meaning (``-1``: all cores).
        ``None`` keeps numba's setting: all cores unless configured otherwise (like the
        OpenMP kernels of scikit-learn's brute-force search). Matrix products run on
        one BLAS thread between the parallel kernels, as in scikit-learn's search;
        BLAS's setting is restored afterwards.
    working_memory : float, default=None
        Memory in MiB that the temporary distance tiles of a search may take, like
        scikit-learn's ``working_memory``; ``None``: 256. Queries are compared with
        the catalogue in tiles of queries x rows sized to it and the best rows of each
        query are kept as the tiles pass, so a search needs about this much besides
        its result, whatever the size of the catalogue. Results do not depend on it.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Labels seen in ``fit`` (absent when fitted without ``y``).
    n_features_in_ : int
        Number of features (pixels x channels) of each row.
    n_samples_fit_ : int
        Number of catalogue rows.

    See Also
    --------
    galaxysim.pipeline.make_search_pipeline : Pipelines that reach ``kneighbors``.

    Notes
    -----
    Ties are broken by catalogue index: among equal distances the lower index comes
    first, so results never depend on thread scheduling or tile sizes.

    Float rows are compared in float64: sums of squared or absolute differences, and
    dot products for ``"cosine"``. Under ``"mse"``, ``"euclidean"``, ``"sqeuclidean"``
    and ``"cosine"``, a matrix product (BLAS, in the rows' dtype) first bounds every
    distance, with a rigorous margin for its rounding; only the rows that can still
    rank are computed exactly, so results are the same as without it. A search
    ``within`` some labels reads only their rows: it never copies the selection (the
    matrix products gather at most one tile of it).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0, 0], [10, 10], [200, 200], [250, 250]], dtype=np.uint8)
    >>> y = np.array([0, 0, 1, 1])
    >>> search = NearestGalaxy(n_neighbors=2, metric="maxabs").fit(X, y)
    >>> dist, ind = search.kneighbors(np.array([[12, 8]], np.uint8))
    >>> ind
    array([[1, 0]])
    >>> search.predict(np.array([[240, 240]], np.uint8))
    array([1])
    >>> search.kneighbors(np.array([[12, 8]], np.uint8), within=[1])[1]
    array([[2, 3]])
    """

    _parameter_constraints = {
        "n_neighbors": [positive_int()],
        "metric": [StrOptions(set(METRICS)), callable],
        "n_jobs": n_jobs_constraint(),
        "working_memory": [None, positive_real()],
    }

    def __init__(self, n_neighbors=10, *, metric="mse", n_jobs=None, working_memory=None):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.n_jobs = n_jobs
        self.working_memory = working_memory

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        tags.input_tags.allow_nan = False
        return tags

    def _validate_rows(self, X, *, reset):
        if getattr(X, "ndim", 2) > 2 or (hasattr(X, "shape") and len(X.shape) > 2):
            raise ValueError(
                f"{type(self).__name__} expects 2-D rows (n_samples, n_features); got an "
                f"array of shape {X.shape}. Put PixelFlatten() (or an encoder) before it, "
                "for example make_search_pipeline(Crop64(), PixelFlatten(), NearestGalaxy())."
            )
        dtype = getattr(X, "dtype", None)
        if dtype == np.uint8:
            X = validate_data(self, X, reset=reset, dtype=None)
        elif not reset and self._index.X.dtype == np.uint8 and _is_int(dtype):
            # integer queries of a uint8 (0-255 pixel) catalogue: the same convention
            X = validate_data(self, X, reset=reset, dtype=None)
            X = _as_uint8_pixels(X)
        else:
            X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
            if not reset and self._index.X.dtype == np.uint8:
                _check_unit_range(X)
        return np.ascontiguousarray(X)

    @fit_context
    def fit(self, X, y=None):
        """Store the catalogue.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Catalogue rows (uint8 pixels or floats).
        y : array-like of shape (n_samples,), default=None
            Labels, needed by :meth:`predict`, :meth:`score` and label-restricted search.

        Returns
        -------
        self : NearestGalaxy
        """
        X = self._validate_rows(X, reset=True)
        self._index = GalleryIndex(X)
        self.n_samples_fit_ = X.shape[0]
        if y is not None:
            y = column_or_1d(y, warn=True)
            if len(y) != len(X):
                raise ValueError(f"y has {len(y)} labels but X has {len(X)} rows.")
            check_classification_targets(y)
            self.classes_, self._y = np.unique(y, return_inverse=True)
        else:
            self._y = None
        return self

    def _n(self, n_neighbors, available, *, self_query=False):
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"n_neighbors must be a positive int; got {k!r}.")
        if k > available:
            others = " besides each row itself" if self_query else ""
            raise ValueError(
                f"Expected n_neighbors <= n_samples_fit, but n_neighbors = {k}, "
                f"n_samples_fit = {available}: the catalogue (or the chosen labels) has "
                f"only {available} candidates{others}."
            )
        return int(k)

    def _label_mask(self, within):
        if self._y is None:
            raise ValueError("Searching within labels needs labels: fit with y.")
        # compare the values themselves: casting to the labels' dtype would cut
        # "ellipticalXYZ" to "elliptical" and 1.9 to 1
        wanted = np.atleast_1d(np.asarray(within, dtype=object)).ravel().tolist()
        if not wanted:
            raise ValueError(
                f"within is empty; give one or more labels of {self.classes_.tolist()}."
            )
        code_of = {c: i for i, c in enumerate(self.classes_.tolist())}
        unknown = [v for v in wanted if not _hashable(v) or v not in code_of]
        if unknown:
            raise ValueError(
                f"Unknown labels {unknown}; the catalogue has {self.classes_.tolist()}."
            )
        return np.isin(self._y, [code_of[v] for v in wanted])

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True, *, within=None):
        """Find the nearest catalogue rows of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Queries. ``None`` searches the catalogue itself, never returning a row as
            its own neighbour (as scikit-learn does).
        n_neighbors : int, default=None
            Number of neighbours; defaults to the constructor's ``n_neighbors``.
        return_distance : bool, default=True
            Also return the distances.
        within : label or list of labels, default=None
            Search only catalogue rows with these labels (for example the closest
            galaxy within "Unbarred Loose Spiral"). Indices still refer to the catalogue.

        Returns
        -------
        dist : ndarray of shape (n_queries, n_neighbors)
            Distances, ascending (only with ``return_distance=True``).
        ind : ndarray of shape (n_queries, n_neighbors)
            Catalogue indices; equal distances are ordered by index.
        """
        check_is_fitted(self, "n_samples_fit_")
        self_query = X is None
        X = self._index.X if self_query else self._validate_rows(X, reset=False)
        rows = None if within is None else np.flatnonzero(self._label_mask(within))
        n_candidates = self.n_samples_fit_ if rows is None else len(rows)
        # a self-query excludes each row; some rows are always among the candidates
        k = self._n(n_neighbors, n_candidates - int(self_query), self_query=self_query)
        dist, ind = self._search(X, k, rows, exclude_self=self_query)
        return (dist, ind) if return_distance else ind

    def nearest_per_class(self, X, *, return_distance=True):
        """The closest catalogue row of every label, for each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Queries.
        return_distance : bool, default=True
            Also return the distances.

        Returns
        -------
        dist : ndarray of shape (n_queries, n_classes)
            Distance to the closest row of each label in ``classes_`` order.
        ind : ndarray of shape (n_queries, n_classes)
            Catalogue index of that row.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0], [10], [200], [250]], dtype=np.uint8)
        >>> s = NearestGalaxy(n_neighbors=1).fit(X, ["a", "a", "b", "b"])
        >>> s.nearest_per_class(np.array([[100]], np.uint8), return_distance=False)
        array([[1, 2]])
        """
        check_is_fitted(self, "n_samples_fit_")
        if self._y is None:
            raise ValueError("nearest_per_class needs labels: fit with y.")
        X = self._validate_rows(X, reset=False)
        dist = np.empty((len(X), len(self.classes_)))
        ind = np.empty((len(X), len(self.classes_)), dtype=np.intp)
        # each label's rows, in catalogue order: every row is read once in all
        order = np.argsort(self._y, kind="stable")
        bounds = np.cumsum(np.bincount(self._y, minlength=len(self.classes_)))[:-1]
        for c, rows in enumerate(np.split(order, bounds)):
            d, i = self._search(X, 1, rows)
            dist[:, c], ind[:, c] = d[:, 0], i[:, 0]
        return (dist, ind) if return_distance else ind

    def _search(self, X, k, rows, *, exclude_self=False):
        """Exact top-k of validated queries among catalogue ``rows`` (None: all).

        The rows are searched in place (no copy); indices refer to the whole catalogue.
        """
        return topk(
            X,
            self._index,
            k,
            self.metric,
            rows=rows,
            exclude_self=exclude_self,
            n_jobs=self.n_jobs,
            working_memory=self.working_memory,
        )

    def catalogue_labels(self):
        """Labels of the catalogue rows, as given to ``fit``.

        Returns
        -------
        labels : ndarray of shape (n_catalogue,)
        """
        check_is_fitted(self, "n_samples_fit_")
        if self._y is None:
            raise ValueError(f"{type(self).__name__} was fitted without labels.")
        return self.classes_[self._y]

    def _neighbor_labels(self, X):
        if self._y is None:
            raise ValueError(
                f"{type(self).__name__} was fitted without labels; fit(X, y) to predict or score."
            )
        ind = self.kneighbors(X, min(self.n_neighbors, self.n_samples_fit_), False)
        return self._y[ind]

    def predict(self, X):
        """Majority label of the ``n_neighbors`` nearest rows (ties: the lower label).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Queries.

        Returns
        -------
        y_pred : ndarray of shape (n_queries,)
        """
        check_is_fitted(self, "n_samples_fit_")
        labels = self._neighbor_labels(X)
        counts = np.zeros((len(labels), len(self.classes_)), dtype=np.intp)
        np.add.at(counts, (np.arange(len(labels))[:, None], labels), 1)
        return self.classes_[counts.argmax(axis=1)]

    def score(self, X, y, sample_weight=None):
        """Mean precision@k: the share of each query's neighbours that carry its label.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Queries.
        y : array-like of shape (n_queries,)
            True labels of the queries.
        sample_weight : array-like of shape (n_queries,), default=None
            Weights of the queries in the mean.

        Returns
        -------
        score : float
            In [0, 1]; 1 when every neighbour has the query's label.
        """
        check_is_fitted(self, "n_samples_fit_")
        labels = self.classes_[self._neighbor_labels(X)]
        hits = (labels == np.asarray(y).reshape(-1, 1)).mean(axis=1)
        return float(np.average(hits, weights=sample_weight))


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _is_int(dtype):
    return dtype is not None and (np.issubdtype(dtype, np.integer) or dtype == np.bool_)


def _as_uint8_pixels(X):
    """Integer query rows of a uint8 catalogue: 0-255 pixel values, as uint8."""
    if X.dtype == np.bool_:
        return X.astype(np.uint8) * np.uint8(255)
    lo, hi = (int(X.min()), int(X.max())) if X.size else (0, 0)
    if lo < 0 or hi > 255:
        raise ValueError(
            f"The query rows are integers from {lo} to {hi}, but the catalogue holds uint8 "
            "pixels (0-255). Pass queries on the catalogue's scale: uint8 0-255, or floats "
            "in [0, 1]."
        )
    return X.astype(np.uint8)


def _check_unit_range(X):
    """Float query rows of a uint8 catalogue count as [0, 1] pixels: refuse other ranges."""
    lo, hi = (float(X.min()), float(X.max())) if X.size else (0.0, 0.0)
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"The query rows are floats from {lo:.4g} to {hi:.4g}, but the catalogue holds "
            "uint8 pixels, which float queries match on the [0, 1] scale. Pass uint8 "
            "queries (0-255), or divide float ones by 255."
        )
