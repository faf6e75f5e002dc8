"""Approximate nearest-neighbour search of float rows (embeddings) with faiss."""

import contextlib
import json
import numbers

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

from galaxysim.utils._io import atomic_write
from galaxysim.utils._optional import import_optional
from galaxysim.utils._threads import effective_n_threads

__all__ = ["ApproximateIndex"]

KINDS = ("ivf", "hnsw")
APPROXIMATE_METRICS = ("sqeuclidean", "euclidean", "mse", "cosine")
_FORMAT = "galaxysim-approximate-index"
_FORMAT_VERSION = 1
_ADD_ROWS = 65536  # rows converted and added at a time (bounds the float32 copy)
# k-means training rows per list: faiss asks for 39 to 256; 64 keeps a 10^6-row build in
# minutes on two cores
_TRAIN_PER_LIST = 64
_PARAMS = ("kind", "metric", "nlist", "nprobe", "M", "ef_construction", "ef_search",
           "random_state", "n_jobs")  # fmt: skip


def _faiss():
    return import_optional("faiss", "Approximate search (algorithm 'ivf' or 'hnsw')")


@contextlib.contextmanager
def _omp_threads(faiss, n_jobs):
    """faiss's OpenMP threads for one call, restored afterwards (None: leave them)."""
    n = effective_n_threads(n_jobs)
    if n is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _check_int(value, name, low=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}.")
    return int(value)


class ApproximateIndex:
    """Approximate k-nearest-neighbour search of float rows with faiss (IVF or HNSW).

    For large sets of embeddings (autoencoder latents, CNN scores), where exact search
    is too slow: ``"ivf"`` (faiss ``IndexIVFFlat``) clusters the rows into ``nlist``
    lists with k-means and scans only the ``nprobe`` lists closest to each query;
    ``"hnsw"`` (faiss ``IndexHNSWFlat``) walks a graph linking each row to about ``M``
    neighbours. Both store the rows uncompressed, as float32.

    Distances are on the scale of the exact search (uint8 rows count as
    ``value / 255``), computed by faiss in float32: ``"sqeuclidean"``, ``"euclidean"``
    and ``"mse"`` from faiss's squared L2 distance, ``"cosine"`` as one minus the inner
    product of the rows normalised to unit length (zero rows stay zero, at distance 1
    from everything). Other metrics need the exact search.

    Parameters
    ----------
    kind : {"ivf", "hnsw"}, default="ivf"
        The faiss index.
    metric : {"sqeuclidean", "euclidean", "mse", "cosine"}, default="sqeuclidean"
        Distance reported (and searched).
    nlist : int or None, default=None
        ``"ivf"``: number of k-means lists. ``None`` takes about ``4 * sqrt(n)``
        (at most ``n / 39``, so each list has faiss's minimum of 39 training rows).
        More lists make each scan shorter, and need a larger ``nprobe`` for the same
        recall.
    nprobe : int, default=16
        ``"ivf"``: lists scanned per query (at most ``nlist``, which is exact). Recall
        rises, and speed falls, with ``nprobe``. Read at search time: change it
        without rebuilding.
    M : int, default=32
        ``"hnsw"``: links per row in the graph (at least 2). More links: higher recall, more memory
        (about ``8 * M`` bytes per row beyond the rows themselves) and a slower build.
    ef_construction : int, default=40
        ``"hnsw"``: candidates kept while building; higher builds a better graph,
        slower.
    ef_search : int, default=64
        ``"hnsw"``: candidates kept while searching (at least ``k`` is used). Recall
        rises, and speed falls, with it. Read at search time.
    random_state : int, RandomState instance or None, default=0
        ``"ivf"``: seeds the choice of the k-means training rows (``64 * nlist`` of
        them, or all rows when fewer) and faiss's k-means, so that two builds on the
        same rows give the same index.
    n_jobs : int or None, default=None
        faiss's OpenMP threads during :meth:`build` and :meth:`search`, with joblib's
        meaning; set for the call and restored afterwards (per calling thread).
        ``None`` leaves faiss's setting (all cores unless configured otherwise).

    Attributes
    ----------
    index_ : faiss.Index
        The built faiss index (rows numbered 0..n-1 in the order given to
        :meth:`build`).
    n_samples_ : int
        Rows indexed.
    n_features_ : int
        Features of each row.
    nlist_ : int or None
        Lists of an ``"ivf"`` index (``None`` for ``"hnsw"``).

    Notes
    -----
    An ``"hnsw"`` graph built with several threads can differ slightly from one build
    to the next (rows are linked concurrently); use ``n_jobs=1`` for a reproducible
    graph. Pickling and :meth:`save` keep the built index exactly.

    Examples
    --------
    >>> import numpy as np
    >>> from galaxysim.neighbors import ApproximateIndex
    >>> X = np.random.default_rng(0).normal(size=(2000, 16)).astype(np.float32)
    >>> index = ApproximateIndex("hnsw", "euclidean").build(X)
    >>> dist, ind = index.search(X[:2], 3)
    >>> ind[:, 0], dist[:, 0]
    (array([0, 1]), array([0., 0.]))
    """

    def __init__(
        self,
        kind="ivf",
        metric="sqeuclidean",
        *,
        nlist=None,
        nprobe=16,
        M=32,
        ef_construction=40,
        ef_search=64,
        random_state=0,
        n_jobs=None,
    ):
        self.kind = kind
        self.metric = metric
        self.nlist = nlist
        self.nprobe = nprobe
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __repr__(self):
        return f"{type(self).__name__}(kind={self.kind!r}, metric={self.metric!r})"

    def _check_params(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}.")
        if self.metric not in APPROXIMATE_METRICS:
            raise ValueError(
                f"Approximate search supports the metrics {APPROXIMATE_METRICS}; got "
                f"{self.metric!r}. Use the exact search (algorithm='brute') for it."
            )
        effective_n_threads(self.n_jobs)  # validates

    def _rows(self, X, what):
        """float32 rows for faiss: uint8 as value / 255, unit length for cosine."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"{what} must be 2-D (n_samples, n_features); got {X.shape}.")
        if X.dtype == np.uint8:
            X = X.astype(np.float32) / np.float32(255)
        elif X.dtype.kind in "fiub":
            X = np.ascontiguousarray(X, dtype=np.float32)
            if not np.isfinite(X).all():
                raise ValueError(f"{what} hold NaN or infinite values (after float32).")
        else:
            raise TypeError(f"{what} must be numeric; got dtype {X.dtype}.")
        if self.metric == "cosine":
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            X = X / np.where(norms > 0, norms, 1).astype(np.float32)
        return np.ascontiguousarray(X, dtype=np.float32)

    def build(self, X):
        """Build the index on the rows ``X``.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Rows (uint8 or float). A Dask array is added block by block, so only the
            k-means training sample (``"ivf"``: at most ``64 * nlist`` rows) and one
            block are in memory beside the index.

        Returns
        -------
        self : ApproximateIndex
        """
        self._check_params()
        faiss = _faiss()
        blocks = _row_blocks(X)
        n, d = blocks.shape
        if n == 0 or d == 0:
            raise ValueError(f"Cannot build an index of {n} rows of {d} features.")
        inner = self.metric == "cosine"
        faiss_metric = faiss.METRIC_INNER_PRODUCT if inner else faiss.METRIC_L2
        rng = check_random_state(self.random_state)
        with _omp_threads(faiss, self.n_jobs):
            if self.kind == "ivf":
                nlist = (
                    max(1, min(int(round(4 * np.sqrt(n))), n // 39))
                    if self.nlist is None
                    else _check_int(self.nlist, "nlist")
                )
                if nlist > n:
                    raise ValueError(f"nlist={nlist} is more than the {n} rows to index.")
                _check_int(self.nprobe, "nprobe")
                quantizer = faiss.IndexFlatIP(d) if inner else faiss.IndexFlatL2(d)
                index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss_metric)
                index.cp.seed = int(rng.randint(np.iinfo(np.int32).max))
                size = min(n, _TRAIN_PER_LIST * nlist)
                rows = np.sort(rng.choice(n, size, replace=False)) if size < n else None
                index.train(self._rows(blocks.take(rows), "The rows"))
                self.nlist_ = nlist
            else:
                index = faiss.IndexHNSWFlat(d, _check_int(self.M, "M", low=2), faiss_metric)
                index.hnsw.efConstruction = _check_int(self.ef_construction, "ef_construction")
                _check_int(self.ef_search, "ef_search")
                self.nlist_ = None
            for block in blocks:
                index.add(self._rows(block, "The rows"))
        self.index_ = index
        self.n_samples_, self.n_features_ = n, d
        return self

    def search(self, Q, k):
        """The ``k`` approximate nearest rows of each query.

        Parameters
        ----------
        Q : array-like of shape (n_queries, n_features)
            Queries, on the rows' scale.
        k : int
            Neighbours per query, at most the number of rows.

        Returns
        -------
        dist : ndarray of shape (n_queries, k), float64
            Distances, ascending, on the scale of the exact metric; equal distances
            are ordered by index.
        ind : ndarray of shape (n_queries, k), int64
            Row indices, in the order the rows were given to :meth:`build`.

        Raises
        ------
        ValueError
            Fewer than ``k`` rows were reached for some query (``"ivf"`` with small
            lists: raise ``nprobe``).
        """
        return self._search(Q, k, nprobe=self.nprobe, ef_search=self.ef_search, n_jobs=self.n_jobs)

    def _search(self, Q, k, *, nprobe, ef_search, n_jobs):
        """:meth:`search` with the search-time parameters given (NearestGalaxy's own)."""
        if not hasattr(self, "index_"):
            raise NotFittedError(f"This {type(self).__name__} is not built yet; call build(X).")
        faiss = _faiss()
        self._check_params()
        k = _check_int(k, "k")
        if k > self.n_samples_:
            raise ValueError(f"k={k} is more than the {self.n_samples_} indexed rows.")
        Q = self._rows(Q, "The queries")
        if Q.shape[1] != self.n_features_:
            raise ValueError(
                f"Queries have {Q.shape[1]} features but the index has {self.n_features_}; "
                "transform them with the same steps as the indexed rows."
            )
        if self.kind == "ivf":
            nprobe = min(_check_int(nprobe, "nprobe"), self.nlist_)
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        else:
            params = faiss.SearchParametersHNSW(efSearch=max(_check_int(ef_search, "ef_search"), k))
        effective_n_threads(n_jobs)  # validates
        with _omp_threads(faiss, n_jobs):
            D, ind = self.index_.search(Q, k, params=params)
        missing = np.flatnonzero((ind < 0).any(axis=1))
        if len(missing):
            raise ValueError(
                f"Only {int((ind[missing[0]] >= 0).sum())} of k={k} neighbours were reached "
                f"for query {missing[0]} ({len(missing)} queries short): the probed lists "
                "hold too few rows. Raise nprobe, or lower k."
            )
        D = D.astype(np.float64)
        if self.metric == "cosine":
            dist = np.clip(1.0 - D, 0.0, 2.0)
        else:
            dist = np.maximum(D, 0.0)
            if self.metric == "mse":
                dist /= self.n_features_
            elif self.metric == "euclidean":
                dist = np.sqrt(dist)
        order = np.lexsort((ind, dist), axis=1)
        return np.take_along_axis(dist, order, 1), np.take_along_axis(ind, order, 1)

    def __getstate__(self):
        state = self.__dict__.copy()
        if "index_" in state:
            state["index_"] = _faiss().serialize_index(state["index_"])
        return state

    def __setstate__(self, state):
        if "index_" in state:
            state["index_"] = _faiss().deserialize_index(state["index_"])
        self.__dict__.update(state)

    def save(self, path):
        """Write the built index to one file, atomically; read it back with :meth:`load`.

        The file is a NumPy ``.npz`` archive holding faiss's own serialisation of the
        index and the parameters as JSON: loading it runs no code (unlike a pickle).

        Parameters
        ----------
        path : str or path-like
            Destination file (its folder is created if needed).
        """
        if not hasattr(self, "index_"):
            raise NotFittedError(f"This {type(self).__name__} is not built yet; call build(X).")
        faiss = _faiss()
        from galaxysim import __version__

        meta = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "galaxysim_version": __version__,
            "faiss_version": faiss.__version__,
            "params": self._json_params(),
            "n_samples": self.n_samples_,
            "n_features": self.n_features_,
            "nlist": self.nlist_,
        }
        with atomic_write(path) as f:
            np.savez(f, meta=np.array(json.dumps(meta)), index=faiss.serialize_index(self.index_))

    def _json_params(self):
        params = {p: getattr(self, p) for p in _PARAMS}
        for name, value in params.items():
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                params[name] = int(value)  # NumPy ints are not JSON
        if not (params["random_state"] is None or isinstance(params["random_state"], int)):
            params["random_state"] = None  # a RandomState instance: already used in build
        return params

    @classmethod
    def load(cls, path):
        """Read an index written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            File written by :meth:`save`.

        Returns
        -------
        index : ApproximateIndex
            Built, with the saved parameters.
        """
        faiss = _faiss()
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                blob = np.array(npz["index"], dtype=np.uint8)
            if meta.get("format") != _FORMAT:
                raise ValueError("not written by ApproximateIndex.save")
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise ValueError(
                f"Cannot read {path} as a saved approximate index ({type(exc).__name__}: "
                f"{exc}). Build it again and save it."
            ) from exc
        if meta["format_version"] > _FORMAT_VERSION:
            raise ValueError(
                f"{path} was written by a newer galaxysim ({meta['galaxysim_version']}); "
                "upgrade galaxysim to read it."
            )
        self = cls(**meta["params"])
        self.index_ = faiss.deserialize_index(blob)
        self.n_samples_, self.n_features_ = meta["n_samples"], meta["n_features"]
        self.nlist_ = meta["nlist"]
        return self


class _row_blocks:
    """Rows of a NumPy or Dask array, iterated in blocks; ``take`` gathers rows."""

    def __init__(self, X):
        self.dask = hasattr(X, "dask") and hasattr(X, "blocks")
        if not self.dask:
            X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"The rows must be 2-D (n_samples, n_features); got {X.shape}.")
        if self.dask and any(np.isnan(c) for c in X.chunks[0]):
            raise ValueError("The Dask array's block sizes are unknown; compute_chunk_sizes().")
        self.X = X
        self.shape = X.shape

    def take(self, rows):
        if rows is None:
            rows = slice(None)
        out = self.X[rows]
        return out.compute() if self.dask else out

    def __iter__(self):
        if self.dask:
            for b in range(self.X.numblocks[0]):
                yield self.X.blocks[b].compute()
        else:
            for s in range(0, len(self.X), _ADD_ROWS):
                yield self.X[s : s + _ADD_ROWS]
