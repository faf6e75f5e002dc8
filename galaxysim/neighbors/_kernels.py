"""The one distance kernel module: exact brute-force distances and top-k selection.

uint8 galleries are searched in integer arithmetic, so their distances are exact
(bit-identical to a float64 reference) and ties are real ties. Float galleries
accumulate in float64. Kernels are compiled with numba and run in parallel over
gallery rows; queries are processed in chunks so temporary memory stays bounded.

Distances are reported on the [0, 1] pixel scale: a uint8 value ``v`` counts as
``v / 255``, so a uint8 catalogue and its float copy give the same distances.
"""

import numba
import numpy as np
from numba import njit, prange

from galaxysim.utils._threads import effective_n_threads

__all__ = ["METRICS", "GalleryIndex", "pairwise_distances", "topk"]

METRICS = ("mse", "euclidean", "sqeuclidean", "maxabs", "manhattan", "cosine")
"""Names of the built-in metrics (callables are accepted too)."""

_QUERY_CHUNK = 256  # queries per block: a (256, n_gallery) float64 block per step
_FAST = {"fastmath": True, "parallel": True, "cache": True}


# ---------------------------------------------------------------- uint8 kernels
# The dot products use int16 x uint8 -> int32 so LLVM emits AVX-512 VNNI/vpmaddwd;
# squared distances follow exactly from ||g||^2 + ||q||^2 - 2 g.q in int64.
@njit(**_FAST)
def _dot_u8(Q16, G, out):  # pragma: no cover - compiled
    m, D = Q16.shape
    n = G.shape[0]
    mb = m - m % 4
    for j in prange(n):
        g = G[j]
        for i in range(0, mb, 4):
            q0 = Q16[i]
            q1 = Q16[i + 1]
            q2 = Q16[i + 2]
            q3 = Q16[i + 3]
            a0 = np.int32(0)
            a1 = np.int32(0)
            a2 = np.int32(0)
            a3 = np.int32(0)
            for d in range(D):
                x = np.int16(g[d])
                a0 = np.int32(a0 + np.int32(x * q0[d]))
                a1 = np.int32(a1 + np.int32(x * q1[d]))
                a2 = np.int32(a2 + np.int32(x * q2[d]))
                a3 = np.int32(a3 + np.int32(x * q3[d]))
            out[i, j] = a0
            out[i + 1, j] = a1
            out[i + 2, j] = a2
            out[i + 3, j] = a3
        for i in range(mb, m):
            q = Q16[i]
            acc = np.int32(0)
            for d in range(D):
                acc = np.int32(acc + np.int32(np.int16(g[d]) * q[d]))
            out[i, j] = acc


@njit(**_FAST)
def _ssd_u8(Q, G, out):  # pragma: no cover - compiled
    # difference form: for one to three queries it streams the gallery faster than
    # the dot-product form, which needs an int16 copy of each query
    m, D = Q.shape
    n = G.shape[0]
    for j in prange(n):
        for i in range(m):
            acc = np.int32(0)
            for d in range(D):
                t = np.int32(G[j, d]) - np.int32(Q[i, d])
                acc = np.int32(acc + t * t)
            out[i, j] = acc


@njit(**_FAST)
def _maxabs_u8(Q, G, out):  # pragma: no cover - compiled
    m, D = Q.shape
    n = G.shape[0]
    for j in prange(n):
        for i in range(m):
            acc = np.uint8(0)
            for d in range(D):
                a = G[j, d]
                b = Q[i, d]
                acc = max(acc, np.uint8(max(a, b) - min(a, b)))
            out[i, j] = acc


@njit(**_FAST)
def _manhattan_u8(Q, G, out):  # pragma: no cover - compiled
    m, D = Q.shape
    n = G.shape[0]
    for j in prange(n):
        for i in range(m):
            acc = np.int32(0)
            for d in range(D):
                a = G[j, d]
                b = Q[i, d]
                acc = np.int32(acc + np.int32(max(a, b) - min(a, b)))
            out[i, j] = acc


@njit(**_FAST)
def _ssd_pairs_u8(Q, G, qi, gj, out):  # pragma: no cover - compiled
    D = Q.shape[1]
    for p in prange(len(qi)):
        q = Q[qi[p]]
        g = G[gj[p]]
        acc = np.int32(0)
        for d in range(D):
            t = np.int32(g[d]) - np.int32(q[d])
            acc = np.int32(acc + t * t)
        out[p] = acc


# ---------------------------------------------------------------- float kernels
@njit(**_FAST)
def _sqeuclidean_f(Q, G, out):  # pragma: no cover - compiled
    m, D = Q.shape
    n = G.shape[0]
    for j in prange(n):
        for i in range(m):
            acc = 0.0
            for d in range(D):
                t = np.float64(G[j, d]) - np.float64(Q[i, d])
                acc += t * t
            out[i, j] = acc


@njit(**_FAST)
def _maxabs_f(Q, G, out):  # pragma: no cover - compiled
    m, D = Q.shape
    n = G.shape[0]
    for j in prange(n):
        for i in range(m):
            acc = 0.0
            for d in range(D):
                acc = max(acc, abs(np.float64(G[j, d]) - np.float64(Q[i, d])))
            out[i, j] = acc


@njit(**_FAST)
def _manhattan_f(Q, G, out):  # pragma: no cover - compiled
    m, D = Q.shape
    n = G.shape[0]
    for j in prange(n):
        for i in range(m):
            acc = 0.0
            for d in range(D):
                acc += abs(np.float64(G[j, d]) - np.float64(Q[i, d]))
            out[i, j] = acc


@njit(**_FAST)
def _dot_f(Q, G, out):  # pragma: no cover - compiled
    m, D = Q.shape
    n = G.shape[0]
    for j in prange(n):
        for i in range(m):
            acc = 0.0
            for d in range(D):
                acc += np.float64(G[j, d]) * np.float64(Q[i, d])
            out[i, j] = acc


def row_sq_norms(X):
    """Squared L2 norm of each row: exact int64 for uint8, float64 otherwise."""
    if X.dtype == np.uint8:
        out = np.empty(len(X), dtype=np.int64)
        for s in range(0, len(X), 4096):  # bounded temporaries
            blk = X[s : s + 4096].astype(np.int32)
            out[s : s + 4096] = np.einsum("ij,ij->i", blk, blk, dtype=np.int64)
        return out
    return np.einsum("ij,ij->i", X, X, dtype=np.float64)


_PRUNE_GROUPS = (16, 12, 8, 6, 4)
_PRUNE_MIN_QUERIES = 8  # below this a plain scan is bandwidth-bound and faster
_PRUNE_MIN_GALLERY = 2048
_PRUNE_MAX_FRACTION = 0.5  # more candidates than this: the plain scan is cheaper
_PRUNE_SEEDS = 4  # seed rows per neighbour used to bound the k-th distance
_SQ_METRICS = ("mse", "euclidean", "sqeuclidean")


def prune_group(n_features):
    """Group size of the lower-bound features for ``n_features`` columns, or None."""
    for g in _PRUNE_GROUPS:
        if n_features % g == 0 and n_features // g >= 16:
            return g
    return None


def group_sums(X, group):
    """Sums of consecutive ``group`` columns of uint8 rows (integers, exact in float32)."""
    out = np.empty((len(X), X.shape[1] // group), dtype=np.float32)
    for s in range(0, len(X), 4096):
        out[s : s + 4096] = (
            X[s : s + 4096].reshape(-1, out.shape[1], group).sum(axis=2, dtype=np.uint16)
        )
    return out


def _sq_norms_exact(S):
    """Squared norms of integer-valued float32 rows, exact in float64."""
    return np.einsum("ij,ij->i", S, S, dtype=np.float64)


def _lower_bounds(Qs, Gs, gs_norms):
    """``group`` times a lower bound of each squared distance (float64).

    By Cauchy-Schwarz, sum_i d_i^2 >= (sum_{i in g} d_i)^2 / |g| for every group g of
    columns, so the squared distance between group sums, over the group size, never
    exceeds the true squared distance. The cross term comes from a float32 GEMM; its
    rounding error is at most gamma_n times the exact (non-negative) dot product
    (Higham, Accuracy and Stability of Numerical Algorithms, 3.1), so dividing by
    ``1 - gamma_n`` keeps the bound safe.
    """
    n = Qs.shape[1]
    u = 2.0**-24
    gamma = n * u / (1 - n * u)
    q_norms = _sq_norms_exact(Qs)
    dots = (Qs @ Gs.T).astype(np.float64) / (1 - gamma)
    lb = q_norms[:, None] + gs_norms[None, :] - 2.0 * dots
    lb -= 1e-12 * (q_norms[:, None] + gs_norms[None, :])  # float64 rounding of the sum
    return lb


@njit(parallel=True, cache=True)
def _smallest_per_row(A, s):  # pragma: no cover - compiled
    """Column indices of the ``s`` smallest values of each row (any order)."""
    m, n = A.shape
    out = np.empty((m, s), dtype=np.intp)
    for i in prange(m):
        vals = np.empty(s)
        idx = np.empty(s, dtype=np.intp)
        for t in range(s):
            vals[t] = A[i, t]
            idx[t] = t
        worst = 0
        for t in range(1, s):
            if vals[t] > vals[worst]:
                worst = t
        for j in range(s, n):
            v = A[i, j]
            if v < vals[worst]:
                vals[worst] = v
                idx[worst] = j
                worst = 0
                for t in range(1, s):
                    if vals[t] > vals[worst]:
                        worst = t
        out[i] = idx
    return out


@njit(parallel=True, fastmath=True, cache=True)
def _ssd_by_gallery_u8(Q, G, rows, starts, qi, out):  # pragma: no cover - compiled
    """Squared distances of candidate pairs, grouped by gallery row (read once)."""
    D = Q.shape[1]
    for t in prange(len(rows)):
        g = G[rows[t]]
        for p in range(starts[t], starts[t + 1]):
            q = Q[qi[p]]
            acc = np.int32(0)
            for d in range(D):
                x = np.int32(g[d]) - np.int32(q[d])
                acc = np.int32(acc + x * x)
            out[p] = acc


def _topk_pruned(Q, index, k, *, offset, exclude_self):
    """Exact top-k of uint8 squared distances, skipping rows that provably lose.

    Lower bounds from group sums rank the gallery; the exact distances of the
    best-bounded seed rows give an upper bound ``U`` of each query's k-th distance,
    and only rows whose lower bound is at most ``U`` are computed exactly, reading each
    gallery row once for all the queries that need it. Returns None when pruning would
    not pay (the caller then scans everything).
    """
    G, group = index.X, index.group
    m, n = len(Q), len(G)
    lb = _lower_bounds(group_sums(Q, group), index.sums, index.sums_norms)
    rows = np.arange(m)
    if exclude_self:
        lb[rows, offset + rows] = np.inf
    n_seeds = min(n - int(exclude_self), _PRUNE_SEEDS * k)
    seeds = _smallest_per_row(lb, n_seeds)
    seed_d = np.empty(m * n_seeds, dtype=np.int32)
    _ssd_pairs_u8(Q, G, np.repeat(rows, n_seeds), seeds.ravel(), seed_d)
    upper = np.partition(seed_d.reshape(m, n_seeds), k - 1, axis=1)[:, k - 1]
    mask = lb <= upper.astype(np.float64)[:, None] * group
    gj, qi = np.nonzero(mask.T)  # gallery-major: each gallery row is read once
    if len(gj) > _PRUNE_MAX_FRACTION * m * n:
        return None
    g_rows, starts = np.unique(gj, return_index=True)
    exact = np.empty(len(gj), dtype=np.int32)
    _ssd_by_gallery_u8(Q, G, g_rows, np.append(starts, len(gj)), qi, exact)
    order = np.lexsort((gj, exact, qi))  # by query, then distance, then index
    bounds = np.searchsorted(qi[order], np.arange(m))
    take = order[bounds[:, None] + np.arange(k)[None, :]]
    return exact[take].astype(np.int64), gj[take].astype(np.intp)


class GalleryIndex:
    """A gallery prepared for exact search: its rows and what the kernels precompute.

    Parameters
    ----------
    X : ndarray of shape (n_gallery, n_features)
        Rows, uint8 (0-255 pixels) or float, C-contiguous.

    Attributes
    ----------
    X : ndarray
        The rows (not copied).
    norms : ndarray of shape (n_gallery,)
        Squared row norms (exact int64 for uint8).
    group : int or None
        Column group size of the pruning lower bounds (uint8 rows only).
    sums, sums_norms : ndarray or None
        Group sums and their squared norms, for the pruning lower bounds.

    Examples
    --------
    >>> import numpy as np
    >>> index = GalleryIndex(np.zeros((3, 256), np.uint8))
    >>> index.group, index.sums.shape
    (16, (3, 16))
    """

    def __init__(self, X):
        self.X = X
        self.norms = row_sq_norms(X)
        exact_int = X.dtype == np.uint8 and X.shape[1] * 65025 < 2**31
        self.group = prune_group(X.shape[1]) if exact_int else None
        self.sums = None if self.group is None else group_sums(X, self.group)
        self.sums_norms = None if self.sums is None else _sq_norms_exact(self.sums)

    def __len__(self):
        return len(self.X)

    def subset(self, rows):
        """The index of ``X[rows]``, reusing the precomputed parts."""
        sub = object.__new__(GalleryIndex)
        sub.X = self.X[rows]
        sub.norms = self.norms[rows]
        sub.group = self.group
        sub.sums = None if self.sums is None else self.sums[rows]
        sub.sums_norms = None if self.sums is None else self.sums_norms[rows]
        return sub


def _as_index(G):
    return G if isinstance(G, GalleryIndex) else GalleryIndex(np.ascontiguousarray(G))


def _as_gallery_dtype(Q, G):
    """Bring queries onto the gallery's representation (uint8 0-255 or float)."""
    if G.dtype == np.uint8:
        if Q.dtype == np.uint8:
            return Q
        return np.asarray(Q, dtype=np.float64) * 255.0
    if Q.dtype == np.uint8:
        return Q.astype(G.dtype) / G.dtype.type(255)
    return Q


def _raw_block(Q, index, metric):
    """Distances of one query chunk in raw units.

    int64 (exact) for uint8 queries against a uint8 gallery, float64 otherwise; cosine
    distances are final.
    """
    G = index.X
    m, n = len(Q), len(G)
    if callable(metric):
        from sklearn.metrics import pairwise_distances as sk_pairwise

        return sk_pairwise(Q, G, metric=metric).astype(np.float64)
    # int32 accumulators are exact while n_features * 255**2 < 2**31
    if Q.dtype == np.uint8 and G.dtype == np.uint8 and G.shape[1] * 65025 < 2**31:
        if metric in _SQ_METRICS and m < 4:
            out = np.empty((m, n), dtype=np.int32)
            _ssd_u8(Q, G, out)
            return out.astype(np.int64)
        if metric in ("cosine", *_SQ_METRICS):
            dots = np.empty((m, n), dtype=np.int32)
            _dot_u8(Q.astype(np.int16), G, dots)
            if metric == "cosine":
                return _cosine(dots, row_sq_norms(Q), index.norms)
            return row_sq_norms(Q)[:, None] + index.norms[None, :] - 2 * dots.astype(np.int64)
        out = np.empty((m, n), dtype=np.uint8 if metric == "maxabs" else np.int32)
        (_maxabs_u8 if metric == "maxabs" else _manhattan_u8)(Q, G, out)
        return out.astype(np.int64)
    out = np.empty((m, n), dtype=np.float64)
    Q = Q.astype(np.float64) if Q.dtype == np.uint8 else Q
    if metric == "cosine":
        _dot_f(Q, G, out)
        return _cosine(out, row_sq_norms(Q), index.norms)
    kernel = {"maxabs": _maxabs_f, "manhattan": _manhattan_f}.get(metric, _sqeuclidean_f)
    kernel(Q, G, out)
    return out


def _cosine(dots, q_norms, g_norms):
    denom = np.sqrt(q_norms.astype(np.float64))[:, None] * np.sqrt(g_norms.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(denom > 0, dots / np.where(denom > 0, denom, 1.0), 0.0)
    return np.clip(1.0 - sim, 0.0, 2.0)


def _scaled(raw, metric, index):
    """Raw distances -> the reported metric on the [0, 1] pixel scale."""
    if callable(metric) or metric == "cosine":
        return raw.astype(np.float64)
    scale = 255.0 if index.X.dtype == np.uint8 else 1.0
    d = raw.astype(np.float64)
    if metric in _SQ_METRICS:
        d = np.maximum(d, 0.0) / (scale * scale)
        if metric == "mse":
            d /= index.X.shape[1]
        elif metric == "euclidean":
            d = np.sqrt(d)
        return d
    return d / scale


def _n_threads(n_jobs):
    """Numba threads for ``n_jobs`` (None: numba's own setting, all cores by default)."""
    n = effective_n_threads(n_jobs, limit=numba.config.NUMBA_NUM_THREADS)
    return numba.get_num_threads() if n is None else n


def _prepare(Q, G, metric, n_jobs):
    """Validate the call; return (queries in the gallery's representation, index, threads)."""
    if not callable(metric) and metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose one of {METRICS} or a callable.")
    index = _as_index(G)
    if Q.shape[1] != index.X.shape[1]:
        raise ValueError(
            f"Queries have {Q.shape[1]} features but the gallery has {index.X.shape[1]}; "
            "transform them with the same steps as the catalogue."
        )
    return _as_gallery_dtype(Q, index.X), index, _n_threads(n_jobs)


def pairwise_distances(Q, G, metric="mse", *, n_jobs=None):
    """Distances between every query row and every gallery row.

    Parameters
    ----------
    Q : ndarray of shape (n_queries, n_features)
        Query rows, uint8 (0-255 pixels) or float.
    G : ndarray of shape (n_gallery, n_features) or GalleryIndex
        Gallery rows, uint8 or float.
    metric : str or callable, default="mse"
        One of :data:`METRICS` or a callable ``f(a, b) -> float`` on two rows.
    n_jobs : int, default=None
        Threads, with joblib's meaning (``-1``: all cores); ``None`` keeps numba's
        setting (all cores unless configured otherwise).

    Returns
    -------
    D : ndarray of shape (n_queries, n_gallery), float64

    Examples
    --------
    >>> import numpy as np
    >>> G = np.array([[0, 0], [255, 255]], dtype=np.uint8)
    >>> pairwise_distances(np.array([[0, 255]], np.uint8), G, "mse")
    array([[0.5, 0.5]])
    >>> pairwise_distances(np.array([[0, 255]], np.uint8), G, "maxabs")
    array([[1., 1.]])
    """
    Q, index, threads = _prepare(Q, G, metric, n_jobs)
    D = np.empty((len(Q), len(index)), dtype=np.float64)
    with _numba_threads(threads):
        for s in range(0, len(Q), _QUERY_CHUNK):
            q = np.ascontiguousarray(Q[s : s + _QUERY_CHUNK])
            D[s : s + len(q)] = _scaled(_raw_block(q, index, metric), metric, index)
    return D


class _numba_threads:
    """Set numba's thread count for a block, restoring it afterwards."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.previous = numba.get_num_threads()
        numba.set_num_threads(self.n)

    def __exit__(self, *exc):
        numba.set_num_threads(self.previous)


def _select(raw, k):
    """Indices of the k smallest values per row, ties broken by the lower index."""
    n = raw.shape[1]
    if k >= n:
        return np.argsort(raw, axis=1, kind="stable")[:, :k]
    part = np.argpartition(raw, k - 1, axis=1)[:, :k]
    rows = np.arange(len(raw))[:, None]
    kth = raw[rows, part].max(axis=1)
    out = np.empty((len(raw), k), dtype=np.intp)
    n_at_or_below = (raw <= kth[:, None]).sum(axis=1)
    for r in range(len(raw)):
        # with ties at the k-th value, all tied rows compete and the lowest indices win
        cand = part[r] if n_at_or_below[r] == k else np.flatnonzero(raw[r] <= kth[r])
        order = np.lexsort((cand, raw[r, cand]))[:k]
        out[r] = cand[order]
    return out


def topk(Q, G, k, metric="mse", *, exclude_self=False, n_jobs=None):
    """The ``k`` nearest gallery rows of every query row, exactly.

    Batches of uint8 queries against a uint8 gallery under ``"mse"``, ``"euclidean"``
    or ``"sqeuclidean"`` skip gallery rows whose lower bound (from sums of column
    groups) already exceeds an upper bound of the k-th distance; the result is the
    same as scanning everything.

    Parameters
    ----------
    Q : ndarray of shape (n_queries, n_features)
        Query rows.
    G : ndarray of shape (n_gallery, n_features) or GalleryIndex
        Gallery rows; pass a :class:`GalleryIndex` to reuse its precomputation.
    k : int
        Number of neighbours, at most ``n_gallery`` (minus one with ``exclude_self``).
    metric : str or callable, default="mse"
        One of :data:`METRICS` or a callable on two rows.
    exclude_self : bool, default=False
        ``Q`` is the gallery itself: never return a row as its own neighbour.
    n_jobs : int, default=None
        Threads, with joblib's meaning (``-1``: all cores); ``None`` keeps numba's
        setting (all cores unless configured otherwise).

    Returns
    -------
    dist : ndarray of shape (n_queries, k), float64
        Distances, ascending.
    ind : ndarray of shape (n_queries, k), intp
        Gallery indices; equal distances are ordered by index.

    Examples
    --------
    >>> import numpy as np
    >>> G = np.array([[0], [10], [10], [30]], dtype=np.uint8)
    >>> dist, ind = topk(np.array([[10]], np.uint8), G, 3, "maxabs")
    >>> ind
    array([[1, 2, 0]])
    """
    Q, index, threads = _prepare(Q, G, metric, n_jobs)
    prune = (
        metric in _SQ_METRICS
        and Q.dtype == np.uint8
        and index.group is not None
        and len(Q) >= _PRUNE_MIN_QUERIES
        and len(index) >= max(_PRUNE_MIN_GALLERY, 8 * k)
    )
    dist = np.empty((len(Q), k), dtype=np.float64)
    ind = np.empty((len(Q), k), dtype=np.intp)
    with _numba_threads(threads):
        for s in range(0, len(Q), _QUERY_CHUNK):
            q = np.ascontiguousarray(Q[s : s + _QUERY_CHUNK])
            found = (
                _topk_pruned(q, index, k, offset=s, exclude_self=exclude_self) if prune else None
            )
            if found is None:
                raw = _raw_block(q, index, metric)
                if exclude_self:
                    rows = np.arange(len(q))
                    raw[rows, s + rows] = (
                        np.iinfo(raw.dtype).max if raw.dtype.kind == "i" else np.inf
                    )
                sel = _select(raw, k)
                found = np.take_along_axis(raw, sel, axis=1), sel
            dist[s : s + len(q)] = _scaled(found[0], metric, index)
            ind[s : s + len(q)] = found[1]
    return dist, ind
