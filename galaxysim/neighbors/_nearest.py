"""NearestGalaxy: search of a catalogue by image distance, exact or approximate (faiss)."""

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from galaxysim.neighbors import _dask
from galaxysim.neighbors._approximate import APPROXIMATE_METRICS, ApproximateIndex
from galaxysim.neighbors._kernels import METRICS, GalleryIndex, topk
from galaxysim.utils._sklearn_compat import (
    Integral,
    Interval,
    ParamsValidationMixin,
    StrOptions,
    fit_context,
    n_jobs_constraint,
    positive_int,
    positive_real,
)

__all__ = ["NearestGalaxy"]

ALGORITHMS = ("brute", "ivf", "hnsw")
_SELF_QUERY_ROWS = 65536  # catalogue rows converted for faiss at a time in a self-query


class NearestGalaxy(ParamsValidationMixin, BaseEstimator):
    """Rank a catalogue by distance to query images: exact, or approximate with faiss.

    A search estimator, like scikit-learn's
    :class:`~sklearn.neighbors.NearestNeighbors`, not a classifier: :meth:`score` is
    retrieval precision@k (the share of each query's ``n_neighbors`` nearest rows that
    carry its label), which is what ``GridSearchCV`` maximises by default.
    :meth:`predict` gives the majority label of the neighbours, for convenience.

    Each row is one image flattened by :class:`~galaxysim.preprocessing.PixelFlatten`
    (or a feature vector such as CNN scores or autoencoder latents). ``uint8`` rows are
    kept as ``uint8`` and searched in exact integer arithmetic; other rows are kept as
    ``float32``/``float64``. uint8 values count as ``value / 255``, so distances between
    pixels are on the [0, 1] pixel scale whether they are uint8 or floats.

    Other integer rows (``int16``, ``int64``, ...) are taken as integer features
    (counts, codes), not pixels: they are searched as raw numbers (in float64), and
    distances are in their units (an ``int16`` catalogue under ``"maxabs"`` gives
    differences such as ``184.0``, not ``184 / 255``). Queries of such a catalogue
    may be integers too. To search integer pixels on the [0, 1] scale, pass them as
    ``uint8`` (0-255) or as floats divided by their maximum. Rows of text or other
    non-numbers, and NaN or infinite values, are refused with the rows named.

    The catalogue may be a Dask array of rows (for example
    :func:`~galaxysim.neighbors.embed_blocks` of a lazy catalogue): it stays lazy, and
    each exact search runs block by block on the active Dask scheduler
    (:func:`~galaxysim.neighbors.blockwise_topk`), with the in-memory result.

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
    algorithm : {"brute", "ivf", "hnsw"}, default="brute"
        ``"brute"``: exact search, every row compared. ``"ivf"`` and ``"hnsw"``:
        approximate search with faiss (the optional extra ``faiss``), for large sets
        of float rows (embeddings), under ``"mse"``, ``"euclidean"``,
        ``"sqeuclidean"`` or ``"cosine"``: ``fit`` builds a faiss ``IndexIVFFlat``
        (k-means lists, of which each query scans the ``nprobe`` nearest) or
        ``IndexHNSWFlat`` (a graph linking each row to about ``M`` others) with
        :class:`~galaxysim.neighbors.ApproximateIndex`. It returns what faiss finds:
        usually the exact neighbours, not always (the parameters below trade recall
        for speed), with their distances computed in float32. uint8 rows (pixels) are
        refused: faiss would hold a float32 copy, four times the catalogue, and the
        exact uint8 search is the fast one for them. Searches ``within`` labels,
        self-queries' exclusion of the row itself, and :meth:`nearest_per_class` are
        described in :meth:`kneighbors`.
    nlist : int or None, default=None
        ``"ivf"``: number of k-means lists. ``None``: about ``4 * sqrt(n_samples)``
        (at most ``n_samples / 39``). More lists make each scan shorter and need a
        larger ``nprobe`` for the same recall.
    nprobe : int, default=16
        ``"ivf"``: lists scanned per query (all of them is exact). Recall rises, and
        speed falls, with it. Read at each search: ``set_params`` needs no refit.
    M : int, default=32
        ``"hnsw"``: links per row (at least 2). More: higher recall, more memory
        (about ``8 * M`` bytes per row besides the rows) and a slower build.
    ef_construction : int, default=40
        ``"hnsw"``: candidates kept while building; higher builds a better graph,
        slower.
    ef_search : int, default=64
        ``"hnsw"``: candidates kept while searching (at least ``n_neighbors``). Recall
        rises, and speed falls, with it. Read at each search.
    n_jobs : int, default=None
        Threads of the distance kernels (and of faiss), with joblib's meaning
        (``-1``: all cores). ``None`` keeps numba's (faiss's) setting: all cores
        unless configured otherwise (like the OpenMP kernels of scikit-learn's
        brute-force search). Matrix products run on one BLAS thread between the
        parallel kernels, as in scikit-learn's search; BLAS's setting is restored
        afterwards. On a Dask catalogue, ``None`` runs each block's search on one
        thread (Dask's workers run the blocks in parallel).
    working_memory : float, default=None
        Memory in MiB that the temporary distance tiles of a search may take, like
        scikit-learn's ``working_memory``; ``None``: 256. Queries are compared with
        the catalogue in tiles of queries x rows sized to it and the best rows of each
        query are kept as the tiles pass, so a search needs about this much besides
        its result, whatever the size of the catalogue. Results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        ``"ivf"``: seeds the choice of the k-means training rows and faiss's k-means,
        so that two fits give the same index. Not used by the other algorithms.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Labels seen in ``fit`` (absent when fitted without ``y``).
    n_features_in_ : int
        Number of features (pixels x channels) of each row.
    n_samples_fit_ : int
        Number of catalogue rows.
    approximate_index_ : ApproximateIndex or None
        The faiss index built by ``fit`` (``"ivf"``, ``"hnsw"``), ``None`` for
        ``"brute"``. Its :meth:`~galaxysim.neighbors.ApproximateIndex.save` writes it
        to a file that loads without running code; ``fit(X, y,
        approximate_index=ApproximateIndex.load(path))`` uses it again.

    See Also
    --------
    galaxysim.pipeline.make_search_pipeline : Pipelines that reach ``kneighbors``.
    galaxysim.index.build_index : Persisted search indexes of lazy catalogues.

    Notes
    -----
    Ties are broken by catalogue index: among equal distances the lower index comes
    first, so results never depend on thread scheduling, tile or block sizes.

    Float rows are compared in float64: sums of squared or absolute differences, and
    dot products for ``"cosine"``. Under ``"mse"``, ``"euclidean"``, ``"sqeuclidean"``
    and ``"cosine"``, a matrix product (BLAS, in the rows' dtype) first bounds every
    distance, with a rigorous margin for its rounding; only the rows that can still
    rank are computed exactly, so results are the same as without it. A search
    ``within`` some labels reads only their rows: it never copies the selection (the
    matrix products gather at most one tile of it).

    The approximate search's parameters are plain parameters of the estimator (as
    scikit-learn's ``leaf_size`` is for its trees), not a dictionary: each is
    validated in ``fit``, shown by ``get_params`` and tuned by ``GridSearchCV`` like
    any other (``nearestgalaxy__nprobe``); ``"brute"`` ignores them. A fitted
    approximate search pickles with its faiss index (and the rows, which exact
    searches ``within`` labels read).

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

    Approximate search of float rows (embeddings):

    >>> E = np.random.default_rng(0).normal(size=(2000, 16)).astype(np.float32)
    >>> approx = NearestGalaxy(3, metric="euclidean", algorithm="hnsw").fit(E)
    >>> approx.kneighbors(E[:2])[1][:, 0]
    array([0, 1])
    """

    _parameter_constraints = {
        "n_neighbors": [positive_int()],
        "metric": [StrOptions(set(METRICS)), callable],
        "algorithm": [StrOptions(set(ALGORITHMS))],
        "nlist": [None, positive_int()],
        "nprobe": [positive_int()],
        "M": [Interval(Integral, 2, None, closed="left")],
        "ef_construction": [positive_int()],
        "ef_search": [positive_int()],
        "n_jobs": n_jobs_constraint(),
        "working_memory": [None, positive_real()],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_neighbors=10,
        *,
        metric="mse",
        algorithm="brute",
        nlist=None,
        nprobe=16,
        M=32,
        ef_construction=40,
        ef_search=64,
        n_jobs=None,
        working_memory=None,
        random_state=None,
    ):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.algorithm = algorithm
        self.nlist = nlist
        self.nprobe = nprobe
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.n_jobs = n_jobs
        self.working_memory = working_memory
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.algorithm == "hnsw" and self.n_jobs != 1
        return tags

    # ------------------------------------------------------------ rows
    @property
    def _dtype(self):
        return self._rows.dtype

    def _validate_rows(self, X, *, reset):
        if getattr(X, "ndim", 2) > 2 or (hasattr(X, "shape") and len(X.shape) > 2):
            raise ValueError(
                f"{type(self).__name__} expects 2-D rows (n_samples, n_features); got an "
                f"array of shape {X.shape}. Put PixelFlatten() (or an encoder) before it, "
                "for example make_search_pipeline(Crop64(), PixelFlatten(), NearestGalaxy())."
            )
        dtype = getattr(X, "dtype", None)
        if not _dask.is_dask_array(X) and not hasattr(X, "tocsr"):
            _check_numeric_rows(X, type(self).__name__)
        if reset:  # integer features (not uint8 pixels) are searched as raw numbers
            self._integer_rows = _is_int(dtype) and dtype != np.uint8
        if reset and _dask.is_dask_array(X):
            return self._validate_dask_rows(X)
        if dtype == np.bool_:
            raise TypeError(
                f"{type(self).__name__} got boolean rows, which have no pixel scale. Pass "
                "uint8 pixels (mask.astype(np.uint8) * 255) or floats."
            )
        if (
            not reset
            and self._dtype != np.uint8
            and _is_int(dtype)
            and not getattr(self, "_integer_rows", False)
        ):
            raise TypeError(
                f"The catalogue holds float rows but the query rows are {dtype} integers, "
                "which would be compared as raw numbers. Pass float queries on the "
                "catalogue's scale (pixels 0-255 divided by 255, for a catalogue of [0, 1] "
                "pixels)."
            )
        if dtype == np.uint8:
            X = validate_data(self, X, reset=reset, dtype=None)
        elif not reset and self._dtype == np.uint8 and _is_int(dtype):
            # integer queries of a uint8 (0-255 pixel) catalogue: the same convention
            X = validate_data(self, X, reset=reset, dtype=None)
            X = _as_uint8_pixels(X)
        else:
            X = validate_data(
                self, X, reset=reset, dtype=[np.float64, np.float32], ensure_all_finite=False
            )
            _check_finite_rows(X, "the catalogue rows" if reset else "the query rows")
            if not reset and self._dtype == np.uint8:
                _check_unit_range(X)
        return np.ascontiguousarray(X)

    def _validate_dask_rows(self, X):
        """A Dask catalogue, kept lazy: checked for what its metadata tells (NaN and
        infinities are found by the search of each block)."""
        X = _dask.as_row_blocks(X, f"{type(self).__name__}.fit")
        if X.dtype != np.uint8 and X.dtype not in (np.float32, np.float64):
            if X.dtype.kind not in "biuf":
                raise TypeError(
                    f"{type(self).__name__}.fit takes numeric rows; the Dask array's dtype "
                    f"is {X.dtype}."
                )
            X = X.astype(np.float64)  # as validate_data converts in-memory integers
        n, d = X.shape
        if n == 0 or d == 0:
            raise ValueError(
                f"{type(self).__name__}.fit got a Dask array of shape {X.shape}; the "
                "catalogue needs at least one row of at least one feature."
            )
        self.n_features_in_ = int(d)
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return X

    # ------------------------------------------------------------ fit
    def _check_approximate(self, X):
        if self.metric not in APPROXIMATE_METRICS:  # a callable too
            name = getattr(self.metric, "__name__", self.metric)
            raise ValueError(
                f"algorithm={self.algorithm!r} supports the metrics {APPROXIMATE_METRICS}; "
                f"got {name!r}. Use algorithm='brute' (exact search) for it."
            )
        if X.dtype == np.uint8:
            raise ValueError(
                f"algorithm={self.algorithm!r} is approximate search of float rows "
                "(embeddings); these rows are uint8 pixels, which faiss would copy as "
                "float32 (four times the catalogue's memory). Search pixels exactly "
                "(algorithm='brute', fast on uint8), or pass float rows, for example an "
                "encoder's output."
            )

    def _new_approximate(self):
        return ApproximateIndex(
            self.algorithm,
            self.metric,
            nlist=self.nlist,
            nprobe=self.nprobe,
            M=self.M,
            ef_construction=self.ef_construction,
            ef_search=self.ef_search,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )

    def _check_given_index(self, index, X):
        """A prebuilt ApproximateIndex must be the one ``fit`` would build on ``X``."""
        if self.algorithm == "brute":
            raise ValueError(
                "approximate_index is for algorithm='ivf' or 'hnsw'; this NearestGalaxy "
                "searches exactly (algorithm='brute')."
            )
        if not isinstance(index, ApproximateIndex):
            raise TypeError(
                f"approximate_index must be an ApproximateIndex; got {type(index).__name__}."
            )
        if not hasattr(index, "index_"):
            raise NotFittedError("approximate_index is not built yet; call its build(X).")
        build_params = ("nlist",) if self.algorithm == "ivf" else ("M", "ef_construction")
        want = {"kind": self.algorithm, "metric": self.metric}
        want.update({p: getattr(self, p) for p in build_params})
        got = {"kind": index.kind, "metric": index.metric}
        got.update({p: getattr(index, p) for p in build_params})
        if got != want:
            raise ValueError(
                f"approximate_index was built with {got}, but this NearestGalaxy has "
                f"algorithm={self.algorithm!r} and {want}; set_params to match it."
            )
        if (index.n_samples_, index.n_features_) != tuple(X.shape):
            raise ValueError(
                f"approximate_index holds {index.n_samples_} rows of {index.n_features_} "
                f"features, but X has shape {tuple(X.shape)}: it must index these rows."
            )
        return index

    @fit_context
    def fit(self, X, y=None, *, approximate_index=None):
        """Store the catalogue (and build the approximate index, if any).

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Catalogue rows (uint8 pixels or floats). A Dask array stays lazy: searches
            run block by block on the active Dask scheduler.
        y : array-like of shape (n_samples,), default=None
            Labels, needed by :meth:`predict`, :meth:`score` and label-restricted search.
        approximate_index : ApproximateIndex, default=None
            ``"ivf"``/``"hnsw"`` only: an index built on exactly these rows (for
            example read back with :meth:`ApproximateIndex.load
            <galaxysim.neighbors.ApproximateIndex.load>`), used instead of building
            one. Its kind, metric and build parameters must be this estimator's; that
            it holds these rows is trusted (only its shape is checked).

        Returns
        -------
        self : NearestGalaxy
        """
        X = self._validate_rows(X, reset=True)
        if self.algorithm != "brute":
            self._check_approximate(X)
        # a Dask catalogue stays lazy; in memory the kernels' precomputations are kept
        self._rows = X
        self._index = None if _dask.is_dask_array(X) else GalleryIndex(X)
        self.n_samples_fit_ = int(X.shape[0])
        if y is not None:
            y = column_or_1d(y, warn=True)
            if len(y) != self.n_samples_fit_:
                raise ValueError(f"y has {len(y)} labels but X has {self.n_samples_fit_} rows.")
            check_classification_targets(y)
            self.classes_, self._y = np.unique(y, return_inverse=True)
        else:
            self._y = None
        if approximate_index is not None:
            self.approximate_index_ = self._check_given_index(approximate_index, X)
        elif self.algorithm == "brute":
            self.approximate_index_ = None
        else:
            self.approximate_index_ = self._new_approximate().build(X)
        return self

    # ------------------------------------------------------------ search
    def _n(self, n_neighbors, available, *, self_query=False):
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
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
        # True == 1 in Python: a bool names label 1 only where the labels are bools
        labels_are_bool = self.classes_.dtype == np.bool_
        unknown = [
            v
            for v in wanted
            if not _hashable(v)
            or v not in code_of
            or (isinstance(v, (bool, np.bool_)) and not labels_are_bool)
        ]
        if unknown:
            raise ValueError(
                f"Unknown labels {unknown}; the catalogue has {self.classes_.tolist()}."
            )
        return np.isin(self._y, [code_of[v] for v in wanted])

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True, *, within=None):
        """Find the nearest catalogue rows of each query.

        With ``algorithm="ivf"`` or ``"hnsw"`` the neighbours are faiss's (approximate);
        a search ``within`` labels is exact (the chosen rows are searched by brute
        force, as with ``"brute"``).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Queries. ``None`` searches the catalogue itself, never returning a row as
            its own neighbour (as scikit-learn does; an approximate search asks faiss
            for one more neighbour and drops the row itself, or the last one when
            faiss did not return it).
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
        if not self_query:
            X = self._validate_rows(X, reset=False)
        rows = None if within is None else np.flatnonzero(self._label_mask(within))
        n_candidates = self.n_samples_fit_ if rows is None else len(rows)
        # a self-query excludes each row; some rows are always among the candidates
        k = self._n(n_neighbors, n_candidates - int(self_query), self_query=self_query)
        if self.approximate_index_ is not None and rows is None:
            dist, ind = self._approximate_search(X, k)
        else:
            dist, ind = self._search(X, k, rows)
        return (dist, ind) if return_distance else ind

    def nearest_per_class(self, X, *, return_distance=True):
        """The closest catalogue row of every label, for each query (exact search).

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
        if self._index is None:  # a Dask catalogue: each block read once for all labels
            dist, ind = _dask.per_class_topk(X, self._rows, self._y, len(self.classes_),
                                             self.metric, **self._dask_options())  # fmt: skip
            return (dist, ind) if return_distance else ind
        dist = np.empty((len(X), len(self.classes_)))
        ind = np.empty((len(X), len(self.classes_)), dtype=np.intp)
        # each label's rows, in catalogue order: every row is read once in all
        order = np.argsort(self._y, kind="stable")
        bounds = np.cumsum(np.bincount(self._y, minlength=len(self.classes_)))[:-1]
        for c, rows in enumerate(np.split(order, bounds)):
            d, i = self._search(X, 1, rows)
            dist[:, c], ind[:, c] = d[:, 0], i[:, 0]
        return (dist, ind) if return_distance else ind

    def _dask_options(self):
        return {
            "n_jobs": 1 if self.n_jobs is None else self.n_jobs,
            "working_memory": self.working_memory,
        }

    def _search(self, X, k, rows):
        """Exact top-k of validated queries (``None``: the catalogue itself, each row
        excluded from its own result) among catalogue ``rows`` (None: all).

        The rows are searched in place (no copy); indices refer to the whole catalogue.
        """
        if self._index is None:
            if X is None:
                return _dask.self_topk(
                    self._rows, k, self.metric, rows=rows, **self._dask_options()
                )
            return _dask.blockwise_topk(
                X, self._rows, k, self.metric, rows=rows, **self._dask_options()
            )
        return topk(
            self._index.X if X is None else X,
            self._index,
            k,
            self.metric,
            rows=rows,
            exclude_self=X is None,
            n_jobs=self.n_jobs,
            working_memory=self.working_memory,
        )

    def _approximate_search(self, X, k):
        """faiss's top-k of validated queries (``None``: every catalogue row, itself
        excluded), with this estimator's search-time parameters."""
        index = self.approximate_index_

        def search(Q, n):
            return index._search(
                Q, n, nprobe=self.nprobe, ef_search=self.ef_search, n_jobs=self.n_jobs
            )

        if X is not None:
            return search(X, k)
        dist, ind = [], []
        for start, Q in _row_chunks(self._rows):
            d, i = search(Q, k + 1)
            # the row itself last (stable), then the first k: itself dropped, or the
            # (k+1)-th when faiss did not return it
            own = i == np.arange(start, start + len(Q))[:, None]
            keep = np.argsort(own, axis=1, kind="stable")[:, :k]
            dist.append(np.take_along_axis(d, keep, 1))
            ind.append(np.take_along_axis(i, keep, 1))
        return np.concatenate(dist), np.concatenate(ind)

    # ------------------------------------------------------------ labels
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

    def score(self, X, y=None, sample_weight=None):
        """Mean precision@k: the share of each query's neighbours that carry its label.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Queries.
        y : array-like of shape (n_queries,)
            True labels of the queries; required (``None`` raises ``ValueError``).
            ``GridSearchCV`` passes the labels given to its ``fit(X, y)``: a search
            fitted as ``fit(X)`` has nothing to score, and with scikit-learn's default
            ``error_score=np.nan`` each score becomes NaN with this error in its
            warning (``error_score="raise"`` raises it).
        sample_weight : array-like of shape (n_queries,), default=None
            Weights of the queries in the mean.

        Returns
        -------
        score : float
            In [0, 1]; 1 when every neighbour has the query's label.
        """
        check_is_fitted(self, "n_samples_fit_")
        if y is None:
            raise ValueError(
                f"{type(self).__name__}.score is precision@k against the queries' labels, "
                "so scoring needs labels: pass y (GridSearchCV(...).fit(X, y), "
                "cross_val_score(search, X, y)); a search fitted without labels cannot be "
                "scored."
            )
        labels = self.classes_[self._neighbor_labels(X)]
        hits = (labels == np.asarray(y).reshape(-1, 1)).mean(axis=1)
        return float(np.average(hits, weights=sample_weight))


def _row_chunks(X):
    """``(start, rows)`` of an in-memory or Dask catalogue, a bounded number at a time."""
    if _dask.is_dask_array(X):
        start = 0
        for b in range(X.numblocks[0]):
            block = np.asarray(X.blocks[b].compute())
            yield start, block
            start += len(block)
        return
    for start in range(0, len(X), _SELF_QUERY_ROWS):
        yield start, X[start : start + _SELF_QUERY_ROWS]


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _is_int(dtype):
    return dtype is not None and (np.issubdtype(dtype, np.integer) or dtype == np.bool_)


def _check_numeric_rows(X, owner):
    """Refuse text, objects or other non-numbers by name (before numpy's conversion)."""
    if isinstance(X, (str, bytes)):
        raise TypeError(
            f"{owner} takes rows of numbers (n_samples, n_features); got the string {X!r}. "
            "Read the images first (for example galaxysim.datasets.load_image_folder) and "
            "flatten them (PixelFlatten)."
        )
    try:
        A = np.asarray(X)
    except ValueError as exc:  # ragged lists
        raise ValueError(
            f"{owner} takes rows of numbers (n_samples, n_features) of equal length; "
            f"could not make an array of the input: {exc}"
        ) from None
    if A.dtype.kind not in "biufc":  # complex: validate_data's own message
        reason = ""
        if A.dtype.kind == "O":
            try:
                A.astype(np.float64)
            except (TypeError, ValueError) as exc:
                reason = f" ({exc})"
            else:
                return
        raise TypeError(
            f"{owner} takes rows of numbers (uint8 pixels or floats); got an array of "
            f"dtype {A.dtype} (for example {A.ravel()[:1].tolist()}). Convert the rows to "
            f"numbers first{reason}."
        )


def _check_finite_rows(X, name):
    """Float rows: say how many NaN or infinite values there are, and in which rows."""
    if X.size and np.isfinite(X.min()) and np.isfinite(X.max()):
        return
    bad = ~np.isfinite(X)
    if not bad.any():
        return
    n_nan = int(np.count_nonzero(np.isnan(X)))
    n_inf = int(np.count_nonzero(np.isinf(X)))
    rows = np.flatnonzero(bad.any(axis=1))
    what = " and ".join(
        f"{n} {kind} value{'s' if n > 1 else ''}"
        for n, kind in ((n_nan, "NaN"), (n_inf, "infinite"))
        if n
    )
    shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
    raise ValueError(
        f"{name[0].upper()}{name[1:]} contain {what}, in {len(rows)} of {len(X)} rows "
        f"(index {shown}), which have no distance. Fill them (for example "
        "np.nan_to_num(X, nan=0.0)) or drop those rows."
    )


def _as_uint8_pixels(X):
    """Integer query rows of a uint8 catalogue: 0-255 pixel values, as uint8."""
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
