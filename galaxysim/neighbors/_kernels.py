"""The one distance kernel module: exact brute-force distances and top-k selection.

uint8 galleries are searched in integer arithmetic, so their distances are exact
(bit-identical to a float64 reference) and ties are real ties. Float galleries
accumulate in float64. Kernels are compiled with numba and run in parallel over
gallery rows; queries are processed in chunks so temporary memory stays bounded.

Distances are reported on the [0, 1] pixel scale: a uint8 value ``v`` counts as
``v / 255``, so a uint8 catalogue and its float copy give the same distances.
"""

import numbers

import numba
import numpy as np
from numba import njit, prange

__all__ = ["METRICS", "pairwise_distances", "topk"]

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


def _as_gallery_dtype(Q, G):
    """Bring queries onto the gallery's representation (uint8 0-255 or float)."""
    if G.dtype == np.uint8:
        if Q.dtype == np.uint8:
            return Q
        return np.asarray(Q, dtype=np.float64) * 255.0
    if Q.dtype == np.uint8:
        return Q.astype(G.dtype) / G.dtype.type(255)
    return Q


def _raw_block(Q, G, metric, g_norms):
    """Distances in the gallery's raw units (int64 for uint8/uint8, float64 otherwise)."""
    m, n = len(Q), len(G)
    # int32 accumulators are exact while n_features * 255**2 < 2**31
    exact_int = Q.dtype == np.uint8 and G.dtype == np.uint8 and G.shape[1] * 65025 < 2**31
    if exact_int:
        if metric in ("sqeuclidean", "mse", "euclidean", "cosine"):
            dots = np.empty((m, n), dtype=np.int32)
            _dot_u8(Q.astype(np.int16), G, dots)
            if metric == "cosine":
                return dots.astype(np.float64), row_sq_norms(Q)
            return row_sq_norms(Q)[:, None] + g_norms[None, :] - 2 * dots.astype(np.int64), None
        out = np.empty((m, n), dtype=np.uint8 if metric == "maxabs" else np.int32)
        (_maxabs_u8 if metric == "maxabs" else _manhattan_u8)(Q, G, out)
        return out.astype(np.int64), None
    out = np.empty((m, n), dtype=np.float64)
    Q = Q.astype(np.float64) if Q.dtype == np.uint8 else Q
    if metric == "cosine":
        _dot_f(Q, G, out)
        return out, row_sq_norms(Q)
    kernel = {
        "sqeuclidean": _sqeuclidean_f,
        "mse": _sqeuclidean_f,
        "euclidean": _sqeuclidean_f,
        "maxabs": _maxabs_f,
        "manhattan": _manhattan_f,
    }[metric]
    kernel(Q, G, out)
    return out, None


def _finish(raw, metric, *, n_features, scale, q_norms, g_norms):
    """Convert raw distances to the reported metric on the [0, 1] pixel scale."""
    if metric == "cosine":
        denom = (
            np.sqrt(q_norms.astype(np.float64))[:, None]
            * np.sqrt(g_norms.astype(np.float64))[None, :]
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.where(denom > 0, raw / np.where(denom > 0, denom, 1.0), 0.0)
        return np.clip(1.0 - sim, 0.0, 2.0)
    d = raw.astype(np.float64)
    if metric in ("sqeuclidean", "mse", "euclidean"):
        d = np.maximum(d, 0.0) / (scale * scale)
        if metric == "mse":
            d /= n_features
        elif metric == "euclidean":
            d = np.sqrt(d)
        return d
    return d / scale


def _set_threads(n_jobs):
    if n_jobs is None or n_jobs == -1:
        return numba.config.NUMBA_NUM_THREADS
    if not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be None, -1 or a non-zero int; got {n_jobs!r}.")
    if n_jobs < 0:
        return max(1, numba.config.NUMBA_NUM_THREADS + 1 + n_jobs)
    return min(int(n_jobs), numba.config.NUMBA_NUM_THREADS)


def _callable_block(Q, G, metric):
    from sklearn.metrics import pairwise_distances as sk_pairwise

    return sk_pairwise(Q, G, metric=metric).astype(np.float64)


def pairwise_distances(Q, G, metric="mse", *, g_norms=None, n_jobs=None):
    """Distances between every query row and every gallery row.

    Parameters
    ----------
    Q : ndarray of shape (n_queries, n_features)
        Query rows, uint8 (0-255 pixels) or float.
    G : ndarray of shape (n_gallery, n_features)
        Gallery rows, uint8 or float.
    metric : str or callable, default="mse"
        One of :data:`METRICS` or a callable ``f(a, b) -> float`` on two rows.
    g_norms : ndarray of shape (n_gallery,), default=None
        Precomputed :func:`row_sq_norms` of ``G``.
    n_jobs : int, default=None
        Threads; ``None`` and ``-1`` use all cores.

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
    D = np.empty((len(Q), len(G)), dtype=np.float64)
    for s, block in _blocks(Q, G, metric, g_norms=g_norms, n_jobs=n_jobs, exclude_self=False):
        D[s : s + len(block)] = _scaled(block, metric, Q, G, s, g_norms)
    return D


def _blocks(Q, G, metric, *, g_norms, n_jobs, exclude_self):
    """Yield (start, raw distance block) over query chunks; raw units, self excluded."""
    if not callable(metric) and metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose one of {METRICS} or a callable.")
    if Q.shape[1] != G.shape[1]:
        raise ValueError(
            f"Queries have {Q.shape[1]} features but the gallery has {G.shape[1]}; "
            "transform them with the same steps as the catalogue."
        )
    Q = _as_gallery_dtype(Q, G)
    if G.dtype == np.uint8 and Q.dtype == np.uint8 and g_norms is None:
        g_norms = row_sq_norms(G)
    previous = numba.get_num_threads()
    numba.set_num_threads(_set_threads(n_jobs))
    try:
        for s in range(0, len(Q), _QUERY_CHUNK):
            q = np.ascontiguousarray(Q[s : s + _QUERY_CHUNK])
            if callable(metric):
                raw, q_norms = _callable_block(q, G, metric), None
            else:
                raw, q_norms = _raw_block(q, G, metric, g_norms)
            if metric == "cosine":
                raw = _finish(
                    raw,
                    metric,
                    n_features=None,
                    scale=None,
                    q_norms=q_norms,
                    g_norms=g_norms if g_norms is not None else row_sq_norms(G),
                )
            if exclude_self:
                rows = np.arange(len(q))
                raw[rows, s + rows] = np.iinfo(raw.dtype).max if raw.dtype.kind == "i" else np.inf
            yield s, raw
    finally:
        numba.set_num_threads(previous)


def _scaled(raw, metric, Q, G, s, g_norms):
    if callable(metric) or metric == "cosine":
        return raw.astype(np.float64)
    scale = 255.0 if G.dtype == np.uint8 else 1.0
    return _finish(raw, metric, n_features=G.shape[1], scale=scale, q_norms=None, g_norms=None)


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


def topk(Q, G, k, metric="mse", *, g_norms=None, exclude_self=False, n_jobs=None):
    """The ``k`` nearest gallery rows of every query row, exactly.

    Parameters
    ----------
    Q : ndarray of shape (n_queries, n_features)
        Query rows.
    G : ndarray of shape (n_gallery, n_features)
        Gallery rows.
    k : int
        Number of neighbours, at most ``n_gallery`` (minus one with ``exclude_self``).
    metric : str or callable, default="mse"
        One of :data:`METRICS` or a callable on two rows.
    g_norms : ndarray of shape (n_gallery,), default=None
        Precomputed :func:`row_sq_norms` of ``G``.
    exclude_self : bool, default=False
        ``Q`` is ``G`` itself: never return a row as its own neighbour.
    n_jobs : int, default=None
        Threads; ``None`` and ``-1`` use all cores.

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
    dist = np.empty((len(Q), k), dtype=np.float64)
    ind = np.empty((len(Q), k), dtype=np.intp)
    for s, raw in _blocks(Q, G, metric, g_norms=g_norms, n_jobs=n_jobs, exclude_self=exclude_self):
        sel = _select(raw, k)
        top = np.take_along_axis(raw, sel, axis=1)
        dist[s : s + len(raw)] = _scaled(top, metric, Q, G, s, g_norms)
        ind[s : s + len(raw)] = sel
    return dist, ind
