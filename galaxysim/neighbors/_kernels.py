"""The one distance kernel module: exact brute-force distances and top-k selection.

uint8 galleries are searched in integer arithmetic, so their distances are exact
(bit-identical to a float64 reference) and ties are real ties. Float galleries
accumulate differences in float64. Kernels are compiled with numba and run in parallel.

Distances are reported on the [0, 1] pixel scale: a uint8 value ``v`` counts as
``v / 255``, so a uint8 catalogue and its float copy give the same distances.

Memory: a search never holds a (n_queries, n_gallery) matrix. It scans tiles of
queries x gallery rows into a running top-k per query (a heap ordered by distance,
then index), and sizes each tile so that its temporary arrays stay within
``working_memory`` MiB (:data:`WORKING_MEMORY` by default, like scikit-learn's
setting of the same name). A search restricted to some gallery rows passes their
indices to the kernels; it copies no gallery rows, except that the BLAS paths gather
a tile's worth of selected rows when the selection is sparse.

Float galleries under ``"mse"``, ``"euclidean"``, ``"sqeuclidean"`` and ``"cosine"``
are filtered with a GEMM (BLAS, in the gallery's dtype): its distances, widened by a
rigorous bound on their rounding error, pick the rows whose exact distance (the
float64 difference form, as without the GEMM) can reach a query's top-k. Results are
those of the exact computation, ties included; the GEMM's precision only decides how
many rows are recomputed.

Blocks of a larger catalogue (a Dask chunk, a file) are searched with
:func:`block_topk` on a :class:`GalleryIndex` built with the block's ``offset``, and
the partial results combined with :func:`merge_topk`; :func:`scale_distances` turns
the raw distances into the reported ones.
"""

import contextlib
import functools
import math
from numbers import Integral, Real

import numba
import numpy as np
from numba import njit, prange

from galaxysim.utils._threads import effective_n_threads

__all__ = [
    "METRICS",
    "WORKING_MEMORY",
    "GalleryIndex",
    "block_topk",
    "merge_topk",
    "pairwise_distances",
    "scale_distances",
    "topk",
]

METRICS = ("mse", "euclidean", "sqeuclidean", "maxabs", "manhattan", "cosine")
"""Names of the built-in metrics (callables are accepted too)."""

WORKING_MEMORY = 256
"""Default memory budget, in MiB, of the temporary arrays of one search step."""

_QUERY_CHUNK = 256  # queries per tile: each gallery row is read once per chunk
_FAST = {"fastmath": True, "parallel": True, "cache": True}
# float kernels may reorder sums (vectorise) but must keep inf/NaN semantics
_REASSOC = {"reassoc", "contract", "nsz"}
_NO_ROW = np.iinfo(np.intp).max  # heap sentinel: sorts after every real row


# ---------------------------------------------------------------- uint8 kernels
# Every kernel takes ``cols``, the gallery rows to compare with (a tile, or the
# selected rows of a tile), and writes column ``c`` for row ``cols[c]``.
# The dot products use int16 x uint8 -> int32 so LLVM emits AVX-512 VNNI/vpmaddwd;
# squared distances follow exactly from ||g||^2 + ||q||^2 - 2 g.q in int64.
@njit(**_FAST)
def _dot_u8(Q16, G, cols, out):  # pragma: no cover - compiled
    m, D = Q16.shape
    mb = m - m % 4
    for c in prange(len(cols)):
        g = G[cols[c]]
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
            out[i, c] = a0
            out[i + 1, c] = a1
            out[i + 2, c] = a2
            out[i + 3, c] = a3
        for i in range(mb, m):
            q = Q16[i]
            acc = np.int32(0)
            for d in range(D):
                acc = np.int32(acc + np.int32(np.int16(g[d]) * q[d]))
            out[i, c] = acc


@njit(**_FAST)
def _ssd_u8(Q, G, cols, out):  # pragma: no cover - compiled
    # difference form: for one to three queries it streams the gallery faster than
    # the dot-product form, which needs an int16 copy of each query
    m, D = Q.shape
    for c in prange(len(cols)):
        g = G[cols[c]]
        for i in range(m):
            acc = np.int32(0)
            for d in range(D):
                t = np.int32(g[d]) - np.int32(Q[i, d])
                acc = np.int32(acc + t * t)
            out[i, c] = acc


@njit(**_FAST)
def _maxabs_u8(Q, G, cols, out):  # pragma: no cover - compiled
    m, D = Q.shape
    for c in prange(len(cols)):
        g = G[cols[c]]
        for i in range(m):
            acc = np.uint8(0)
            for d in range(D):
                a = g[d]
                b = Q[i, d]
                acc = max(acc, np.uint8(max(a, b) - min(a, b)))
            out[i, c] = acc


@njit(**_FAST)
def _manhattan_u8(Q, G, cols, out):  # pragma: no cover - compiled
    m, D = Q.shape
    for c in prange(len(cols)):
        g = G[cols[c]]
        for i in range(m):
            acc = np.int32(0)
            for d in range(D):
                a = g[d]
                b = Q[i, d]
                acc = np.int32(acc + np.int32(max(a, b) - min(a, b)))
            out[i, c] = acc


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
# One definition of each float distance, used by the scans and the exact rescoring.
@njit(fastmath=_REASSOC, cache=True)
def _sq_pair(q, g):  # pragma: no cover - compiled
    acc = 0.0
    for d in range(len(q)):
        t = np.float64(g[d]) - np.float64(q[d])
        acc += t * t
    return acc


@njit(fastmath=_REASSOC, cache=True)
def _dot_pair(q, g):  # pragma: no cover - compiled
    acc = 0.0
    for d in range(len(q)):
        acc += np.float64(g[d]) * np.float64(q[d])
    return acc


@njit(fastmath=_REASSOC, cache=True)
def _maxabs_pair(q, g):  # pragma: no cover - compiled
    acc = 0.0
    for d in range(len(q)):
        acc = max(acc, abs(np.float64(g[d]) - np.float64(q[d])))
    return acc


@njit(fastmath=_REASSOC, cache=True)
def _manhattan_pair(q, g):  # pragma: no cover - compiled
    acc = 0.0
    for d in range(len(q)):
        acc += abs(np.float64(g[d]) - np.float64(q[d]))
    return acc


@njit(cache=True)
def _cosine_value(dot, denom):  # pragma: no cover - compiled
    sim = dot / denom if denom > 0 else 0.0
    return min(max(1.0 - sim, 0.0), 2.0)


@njit(parallel=True, cache=True)
def _sqeuclidean_f(Q, G, cols, out):  # pragma: no cover - compiled
    for c in prange(len(cols)):
        g = G[cols[c]]
        for i in range(Q.shape[0]):
            out[i, c] = _sq_pair(Q[i], g)


@njit(parallel=True, cache=True)
def _dot_f(Q, G, cols, out):  # pragma: no cover - compiled
    for c in prange(len(cols)):
        g = G[cols[c]]
        for i in range(Q.shape[0]):
            out[i, c] = _dot_pair(Q[i], g)


@njit(parallel=True, cache=True)
def _maxabs_f(Q, G, cols, out):  # pragma: no cover - compiled
    for c in prange(len(cols)):
        g = G[cols[c]]
        for i in range(Q.shape[0]):
            out[i, c] = _maxabs_pair(Q[i], g)


@njit(parallel=True, cache=True)
def _manhattan_f(Q, G, cols, out):  # pragma: no cover - compiled
    for c in prange(len(cols)):
        g = G[cols[c]]
        for i in range(Q.shape[0]):
            out[i, c] = _manhattan_pair(Q[i], g)


# ---------------------------------------------------------------- running top-k
# Each query keeps its k best (distance, index) pairs in a max-heap whose root is the
# worst of them; a pair enters when it sorts before the root. Sentinels (inf, _NO_ROW)
# fill a heap that has seen fewer than k rows.
@njit(cache=True)
def _after(d1, j1, d2, j2):  # pragma: no cover - compiled
    return d1 > d2 or (d1 == d2 and j1 > j2)


@njit(cache=True)
def _sift(hd, hi, size, d, j):  # pragma: no cover - compiled
    """Put (d, j) at the root of the heap hd[:size], hi[:size] and sift it down."""
    p = 0
    while True:
        c = 2 * p + 1
        if c >= size:
            break
        if c + 1 < size and _after(hd[c + 1], hi[c + 1], hd[c], hi[c]):
            c += 1
        if not _after(hd[c], hi[c], d, j):
            break
        hd[p] = hd[c]
        hi[p] = hi[c]
        p = c
    hd[p] = d
    hi[p] = j


@njit(cache=True)
def _offer(hd, hi, d, j):  # pragma: no cover - compiled
    if _after(hd[0], hi[0], d, j):
        _sift(hd, hi, len(hd), d, j)


@njit(parallel=True, cache=True)
def _sort_heaps(hd, hi):  # pragma: no cover - compiled
    """Heap-sort each row in place: ascending distance, then index."""
    for r in prange(hd.shape[0]):
        d, ix = hd[r], hi[r]
        for end in range(hd.shape[1] - 1, 0, -1):
            last_d, last_i = d[end], ix[end]
            d[end], ix[end] = d[0], ix[0]
            _sift(d, ix, end, last_d, last_i)


@njit(parallel=True, cache=True)
def _merge_raw(raw, gidx, qrows, hd, hi):  # pragma: no cover - compiled
    """Offer a tile of raw distances (any dtype) to the heaps, skipping each query's own row."""
    for i in prange(raw.shape[0]):
        d, ix, own = hd[i], hi[i], qrows[i]
        for c in range(raw.shape[1]):
            j = gidx[c]
            v = np.float64(raw[i, c])
            if j != own and (v < d[0] or (v == d[0] and j < ix[0])):
                _sift(d, ix, len(d), v, j)


@njit(parallel=True, cache=True)
def _merge_dots_u8(dots, qn, gn, cols, gidx, qrows, cosine, hd, hi):  # pragma: no cover
    """Offer a tile of uint8 dot products as exact squared distances (or cosine)."""
    for i in prange(dots.shape[0]):
        d, ix, own = hd[i], hi[i], qrows[i]
        sq = np.sqrt(np.float64(qn[i]))
        for c in range(dots.shape[1]):
            j = gidx[c]
            if j == own:
                continue
            g = gn[cols[c]]
            if cosine:
                v = _cosine_value(np.float64(dots[i, c]), sq * np.sqrt(np.float64(g)))
            else:  # exact in int64, then exactly representable in float64
                v = np.float64(qn[i] + g - 2 * np.int64(dots[i, c]))
            if v < d[0] or (v == d[0] and j < ix[0]):
                _sift(d, ix, len(d), v, j)


_LANES = 32  # columns whose lower bounds are screened at once (vectorised)


@njit(fastmath=True, cache=True)
def _min_sq_lower(p, b, c0, c1):  # pragma: no cover - compiled
    """min over c0 <= c < c1 of b[c] - 2 p[c]; every input is finite (checked)."""
    lo = 1e308
    for c in range(c0, c1):
        lo = min(lo, b[c] - 2.0 * np.float64(p[c]))
    return lo


@njit(fastmath=True, cache=True)
def _min_cos_lower(p, w, e, t, c0, c1):  # pragma: no cover - compiled
    lo = 1e308
    for c in range(c0, c1):
        lo = min(lo, min(1.0 - np.float64(p[c]) * w[c] * t, 2.0) - e[c] * t)
    return lo


@njit(cache=True)
def _gemm_rows(
    P, q, G, cols, gidx, own, cosine, a, b, t, w, e, coef, sq, gn, d, ix
):  # pragma: no cover
    """Rescore, exactly, the rows whose GEMM distance could enter one query's heap.

    ``P[c]`` is the GEMM dot product with row ``cols[c]``. ``a + b[c] - 2 P[c]``
    (squared) or ``min(1 - P[c] w[c] t, 2) - e[c] t - coef`` (cosine) is a lower bound
    of the exact distance (the GEMM's rounding bound taken off), so a row whose bound
    exceeds the heap's root cannot enter; blocks of ``_LANES`` rows are screened at
    once.
    """
    n = len(P)
    for c0 in range(0, n, _LANES):
        c1 = min(c0 + _LANES, n)
        if cosine:
            lowest = _min_cos_lower(P, w, e, t, c0, c1) - coef
        else:
            lowest = a + _min_sq_lower(P, b, c0, c1)
        if lowest > d[0]:
            continue
        for c in range(c0, c1):
            j = gidx[c]
            if cosine:
                lower = min(1.0 - np.float64(P[c]) * w[c] * t, 2.0) - e[c] * t - coef
            else:
                lower = a + (b[c] - 2.0 * np.float64(P[c]))
            if j == own or lower > d[0]:
                continue
            r = cols[c]
            if cosine:
                v = _cosine_value(_dot_pair(q, G[r]), sq * np.sqrt(gn[r]))
            else:
                v = _sq_pair(q, G[r])
            if v < d[0] or (v == d[0] and j < ix[0]):
                _sift(d, ix, len(d), v, j)


@njit(parallel=True, cache=True)
def _gemm_scan(  # pragma: no cover - compiled
    Qg, Q, G, cols, contiguous, gidx, qrows, cosine, a, b, t, w, e, coef, qn, gn, hd, hi,
    n_groups, inner,
):  # fmt: skip
    """GEMM-filtered top-k of float rows ``cols``, in one parallel region.

    Each thread takes a group of queries and walks the rows in sub-tiles of ``inner``:
    a GEMM on one BLAS thread (the caller limits BLAS), then :func:`_gemm_rows`. One
    region per scan, not one per tile: a busy machine delays every region's start.
    """
    m, n = Qg.shape[0], len(cols)
    step = (m + n_groups - 1) // n_groups
    for g in prange(n_groups):
        lo, up = g * step, min(m, (g + 1) * step)
        if lo >= up:
            continue
        for s0 in range(0, n, inner):
            s1 = min(s0 + inner, n)
            if contiguous:
                Gs = G[cols[s0] : cols[s0] + s1 - s0]
            else:  # a sparse selection: gather one sub-tile
                Gs = np.empty((s1 - s0, G.shape[1]), G.dtype)
                for r in range(s1 - s0):
                    Gs[r] = G[cols[s0 + r]]
            P = np.dot(Qg[lo:up], Gs.T)
            for i in range(lo, up):
                sq = np.sqrt(qn[i])
                _gemm_rows(
                    P[i - lo], Q[i], G, cols[s0:s1], gidx[s0:s1], qrows[i], cosine, a[i],
                    b[s0:s1], t[i], w[s0:s1], e[s0:s1], coef, sq, gn, hd[i], hi[i],
                )  # fmt: skip


@njit(cache=True)
def _merge_pairs(qi, gj, vals, hd, hi):  # pragma: no cover - compiled
    for p in range(len(qi)):
        _offer(hd[qi[p]], hi[qi[p]], np.float64(vals[p]), gj[p])


# ---------------------------------------------------------------- pruning (uint8)
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
_PRUNE_MIN_GALLERY = 2048  # rows of a tile
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


@njit(parallel=True, cache=True)
def _lower_bounds(
    P, pos, q_norms, s_norms, cols, one_minus_gamma, gidx, qrows, out
):  # pragma: no cover
    """``group`` times a lower bound of each squared distance (float64); inf for a query's own row.

    By Cauchy-Schwarz, sum_i d_i^2 >= (sum_{i in g} d_i)^2 / |g| for every group g of
    columns, so the squared distance between group sums, over the group size, never
    exceeds the true squared distance. The cross term ``P`` comes from a float32 GEMM;
    its rounding error is at most gamma_n times the exact (non-negative) dot product
    (Higham, Accuracy and Stability of Numerical Algorithms, 3.1), so dividing by
    ``1 - gamma_n`` keeps the bound safe; the last term covers float64 rounding.
    """
    for i in prange(P.shape[0]):
        for c in range(len(cols)):
            g = s_norms[cols[c]]
            v = q_norms[i] + g - 2.0 * (np.float64(P[i, pos[c]]) / one_minus_gamma)
            v -= 1e-12 * (q_norms[i] + g)
            out[i, c] = np.inf if gidx[c] == qrows[i] else v


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


_GEMM_TILE = 2**20  # bytes of one thread's GEMM sub-tile: stays in cache
_CONTIGUOUS_FRACTION = 0.75  # GEMM over a tile's whole row range above this share


def _gemm_cols(A, Y, cols):
    """``A @ Y[cols].T`` as ``(P, pos)``: column ``pos[c]`` of ``P`` is row ``cols[c]``.

    A dense selection multiplies the tile's whole row range (a view) and skips the
    other columns; a sparse one gathers its rows (at most a tile's worth).
    """
    lo, hi = int(cols[0]), int(cols[-1]) + 1
    if len(cols) >= _CONTIGUOUS_FRACTION * (hi - lo):
        return A @ Y[lo:hi].T, cols - lo
    return A @ Y[cols].T, np.arange(len(cols))


class GalleryIndex:
    """A gallery prepared for exact search: its rows and what the kernels precompute.

    The precomputations (row norms, group sums) are made on first use, by the kernels
    that need them, and kept: a one-query pixel search needs none of them, so it
    reads the rows once, not three times (which counts for a memory-mapped
    catalogue searched once per process).

    Parameters
    ----------
    X : ndarray of shape (n_gallery, n_features)
        Rows, uint8 (0-255 pixels) or float, C-contiguous.
    offset : int, default=0
        Index of the first row in the whole catalogue, when ``X`` is one block of it:
        search results count from there.

    Attributes
    ----------
    X : ndarray
        The rows (not copied).
    offset : int
        Catalogue index of ``X[0]``.
    norms : ndarray of shape (n_gallery,)
        Squared row norms (exact int64 for uint8); computed on first access.
    group : int or None
        Column group size of the pruning lower bounds (uint8 rows only).
    sums, sums_norms : ndarray or None
        Group sums and their squared norms, for the pruning lower bounds; computed
        on first access.

    Examples
    --------
    >>> import numpy as np
    >>> index = GalleryIndex(np.zeros((3, 256), np.uint8))
    >>> index.group, index.sums.shape
    (16, (3, 16))
    """

    def __init__(self, X, *, offset=0):
        self.X = X
        self.offset = int(offset)
        exact_int = X.dtype == np.uint8 and X.shape[1] * 65025 < 2**31
        self.group = prune_group(X.shape[1]) if exact_int else None

    @functools.cached_property
    def norms(self):
        return row_sq_norms(self.X)

    @functools.cached_property
    def sums(self):
        return None if self.group is None else group_sums(self.X, self.group)

    @functools.cached_property
    def sums_norms(self):
        return None if self.sums is None else _sq_norms_exact(self.sums)

    def __len__(self):
        return len(self.X)


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


def _exact_int(Q, G):
    # int32 accumulators are exact while n_features * 255**2 < 2**31
    return Q.dtype == np.uint8 and G.dtype == np.uint8 and G.shape[1] * 65025 < 2**31


def _raw_block(Q, index, metric, cols):
    """Distances of queries to gallery rows ``cols``, in raw units.

    int64 (exact) for uint8 queries against a uint8 gallery, float64 otherwise; cosine
    distances are final.
    """
    G = index.X
    m, n = len(Q), len(cols)
    if callable(metric):
        from sklearn.metrics import pairwise_distances as sk_pairwise

        raw = sk_pairwise(Q, G[cols], metric=metric).astype(np.float64)
        if np.isnan(raw).any():
            raise ValueError(
                f"The metric {getattr(metric, '__name__', metric)!r} returned NaN for some "
                "pairs of rows; it must return a number for every pair."
            )
        return raw
    if _exact_int(Q, G):
        if metric in _SQ_METRICS and m < 4:
            out = np.empty((m, n), dtype=np.int32)
            _ssd_u8(Q, G, cols, out)
            return out.astype(np.int64)
        if metric in ("cosine", *_SQ_METRICS):
            dots = np.empty((m, n), dtype=np.int32)
            _dot_u8(Q.astype(np.int16), G, cols, dots)
            if metric == "cosine":
                return _cosine(dots, row_sq_norms(Q), index.norms[cols])
            return row_sq_norms(Q)[:, None] + index.norms[cols][None, :] - 2 * dots.astype(np.int64)
        out = np.empty((m, n), dtype=np.uint8 if metric == "maxabs" else np.int32)
        (_maxabs_u8 if metric == "maxabs" else _manhattan_u8)(Q, G, cols, out)
        return out.astype(np.int64)
    out = np.empty((m, n), dtype=np.float64)
    Q = Q.astype(np.float64) if Q.dtype == np.uint8 else Q
    if metric == "cosine":
        _dot_f(Q, G, cols, out)
        return _cosine(out, row_sq_norms(Q), index.norms[cols])
    kernel = {"maxabs": _maxabs_f, "manhattan": _manhattan_f}.get(metric, _sqeuclidean_f)
    kernel(Q, G, cols, out)
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


def scale_distances(raw, metric, index):
    """Raw distances of :func:`block_topk` as reported by :func:`topk`.

    Parameters
    ----------
    raw : ndarray
        Raw distances.
    metric : str or callable
        The metric they were computed with.
    index : GalleryIndex
        Any block of the catalogue (only its dtype and number of features count).

    Returns
    -------
    dist : ndarray of float64
        Distances on the [0, 1] pixel scale; ``inf`` stays ``inf``.
    """
    return _scaled(np.asarray(raw), metric, index)


def _n_threads(n_jobs):
    """Numba threads for ``n_jobs`` (None: numba's own setting, all cores by default)."""
    n = effective_n_threads(n_jobs, limit=numba.config.NUMBA_NUM_THREADS)
    return numba.get_num_threads() if n is None else n


def _budget(working_memory):
    """Bytes of temporaries one tile may use."""
    wm = WORKING_MEMORY if working_memory is None else working_memory
    if isinstance(wm, bool) or not isinstance(wm, Real) or not (0 < wm < math.inf):
        raise ValueError(
            f"working_memory must be a positive number of MiB (or None for {WORKING_MEMORY}); "
            f"got {working_memory!r}."
        )
    return max(1, int(wm * 2**20))


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


class _numba_threads:
    """Set numba's thread count for a block, restoring it afterwards."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.previous = numba.get_num_threads()
        numba.set_num_threads(self.n)

    def __exit__(self, *exc):
        numba.set_num_threads(self.previous)


_BLAS = []


def _serial_blas(scan):
    """Run BLAS on one thread while a scan alternates GEMMs with numba's kernels.

    Both thread pools busy-wait after their parallel work; alternating them tile by
    tile makes each wait for the other (10x slower than a serial GEMM here).
    scikit-learn's brute-force search limits BLAS the same way. The setting is
    restored afterwards.
    """
    if not scan.uses_blas:
        return contextlib.nullcontext()
    if not _BLAS:
        import scipy.linalg.cython_blas  # noqa: F401 - the BLAS of numba's np.dot
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def pairwise_distances(Q, G, metric="mse", *, n_jobs=None, working_memory=None):
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
    working_memory : float, default=None
        MiB that the temporaries of one chunk of queries may take, besides the result
        itself; ``None``: 256 (:data:`WORKING_MEMORY`).

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
    budget = _budget(working_memory)
    D = np.empty((len(Q), len(index)), dtype=np.float64)
    cols = np.arange(len(index))
    # about four (query, row) temporaries of 8 bytes each per chunk
    chunk = max(1, min(_QUERY_CHUNK, budget // (32 * max(1, len(index)))))
    with _numba_threads(threads):
        for s in range(0, len(Q), chunk):
            q = np.ascontiguousarray(Q[s : s + chunk])
            D[s : s + len(q)] = _scaled(_raw_block(q, index, metric, cols), metric, index)
    return D


class _Scan:
    """One chunk of queries scanned over gallery tiles into running top-k heaps."""

    def __init__(self, Q, index, k, metric, qrows):
        self.Q, self.index, self.k, self.metric = Q, index, k, metric
        self.qrows = qrows
        m, G = len(Q), index.X
        self.hd = np.full((m, k), np.inf)
        self.hi = np.full((m, k), _NO_ROW, dtype=np.intp)
        self.copy_bytes = 0  # bytes of gallery rows a tile may gather, per row
        self.prune = False
        if callable(metric):
            self.kind, self.pair_bytes = "raw", 8
            self.copy_bytes = 16 * G.shape[1]  # the rows and sklearn's float64 copy
        elif (
            _exact_int(Q, G)
            and metric in ("cosine", *_SQ_METRICS)
            and not (metric != "cosine" and m < 4)
        ):
            self.kind, self.pair_bytes = "dots_u8", 4
            self.Q16, self.qn = Q.astype(np.int16), row_sq_norms(Q)
            self.prune = metric != "cosine" and index.group is not None
            self.prune = self.prune and m >= _PRUNE_MIN_QUERIES
            if self.prune:
                self.qsums = group_sums(Q, index.group)
                self.qsums_norms = _sq_norms_exact(self.qsums)
                self.pair_bytes = 24  # GEMM, bounds, mask and candidate lists
                self.copy_bytes = 4 * (G.shape[1] // index.group)  # sums made if pruned
        elif _exact_int(Q, G):
            self.kind = "u8"
            self.pair_bytes = 1 if metric == "maxabs" else 4
        elif metric in ("cosine", *_SQ_METRICS) and self._gemm_safe():
            self.kind = "gemm"
        else:
            self.kind, self.pair_bytes = "raw", 32 if metric == "cosine" else 8

    def _gemm_safe(self):
        """Set up the GEMM filter, unless values are so large that it could overflow."""
        G, Q = self.index.X, self.Q
        if G.dtype not in (np.float32, np.float64) or not len(self.index):
            return False
        self.qn = row_sq_norms(Q)
        limit = float(np.finfo(G.dtype).max) / 4
        qmax = math.sqrt(float(self.qn.max()))
        gmax = math.sqrt(float(self.index.norms.max()))
        if not (qmax < limit and gmax < limit and qmax * gmax < limit):
            return False
        self.Qg = np.ascontiguousarray(Q, dtype=G.dtype)
        D, u, u64 = G.shape[1], float(np.finfo(G.dtype).eps) / 2, 2.0**-53
        gamma = (D + 2) * u / (1 - (D + 2) * u)
        # GEMM rounding (and queries rounded to the gallery's dtype), plus the float64
        # rounding of the norms, the exact sums and the comparison itself
        self.coef = u + gamma * (1 + u) + 4 * (D + 2) * u64 + 16 * u64
        # underflow: products below the smallest normal number count absolutely
        tiny = float(np.finfo(G.dtype).tiny)
        self.abs0, self.abs1 = 8 * D * tiny, 4 * tiny * math.sqrt(D)
        self.a = self.qn * (1 - self.coef)  # lower bound = a + b - 2 dot (squared)
        with np.errstate(divide="ignore"):
            self.t = np.where(self.qn > 0, 1.0 / np.sqrt(self.qn), 0.0)  # 1 / |q| (cosine)
        return True

    @property
    def uses_blas(self):
        return self.kind == "gemm" or self.prune

    def rows_per_tile(self, budget):
        if self.kind == "gemm":  # half for the per-row arrays, half for the kernel's sub-tiles
            self.budget = budget // 2
            return max(1, self.budget // 48)
        return max(1, budget // (len(self.Q) * self.pair_bytes + self.copy_bytes))

    def scan(self, cols):
        """Offer gallery rows ``cols`` (sorted indices into the index) to the heaps."""
        index, Q, m = self.index, self.Q, len(self.Q)
        gidx = cols + index.offset if index.offset else cols
        if self.kind == "dots_u8":
            big = len(cols) >= max(_PRUNE_MIN_GALLERY, 8 * self.k)
            if self.prune and big and self._pruned(cols, gidx):
                return
            dots = np.empty((m, len(cols)), dtype=np.int32)
            _dot_u8(self.Q16, index.X, cols, dots)
            self._merge(
                _merge_dots_u8,
                dots, self.qn, index.norms, cols, gidx, self.qrows, self.metric == "cosine",
                self.hd, self.hi,
            )  # fmt: skip
        elif self.kind == "u8":
            if self.metric in _SQ_METRICS:
                out = np.empty((m, len(cols)), dtype=np.int32)
                _ssd_u8(Q, index.X, cols, out)
            elif self.metric == "maxabs":
                out = np.empty((m, len(cols)), dtype=np.uint8)
                _maxabs_u8(Q, index.X, cols, out)
            else:
                out = np.empty((m, len(cols)), dtype=np.int32)
                _manhattan_u8(Q, index.X, cols, out)
            self._merge(_merge_raw, out, gidx, self.qrows, self.hd, self.hi)
        elif self.kind == "gemm":
            gn = index.norms[cols]
            gabs = self.abs0 + self.abs1 * np.sqrt(gn)
            cosine = self.metric == "cosine"
            if cosine:
                with np.errstate(divide="ignore"):
                    w = np.where(gn > 0, 1.0 / np.sqrt(gn), 0.0)
                b, e = w[:0], gabs * w
            else:
                w = e = gn[:0]
                b = gn * (1 - self.coef) - gabs
            contiguous = cols[-1] - cols[0] + 1 == len(cols)
            n_groups = min(len(Q), numba.get_num_threads())
            group = -(-len(Q) // n_groups)
            # per thread: a sub-tile of products and, for a sparse selection, of rows
            per_row = (group + index.X.shape[1]) * index.X.itemsize * n_groups
            inner = max(1, min(_GEMM_TILE // (group * index.X.itemsize), self.budget // per_row))
            self._merge(
                _gemm_scan,
                self.Qg, Q, index.X, cols, contiguous, gidx, self.qrows, cosine, self.a, b,
                self.t, w, e, self.coef, self.qn, index.norms, self.hd, self.hi, n_groups,
                inner,
            )  # fmt: skip
        else:
            raw = _raw_block(Q, index, self.metric, cols)
            self._merge(_merge_raw, raw, gidx, self.qrows, self.hd, self.hi)

    def _merge(self, kernel, *args):
        """Run a kernel parallel over queries; one query runs on this thread alone.

        Waking the thread pool for a single query would cost more than its work.
        """
        with _numba_threads(1) if len(self.Q) == 1 else contextlib.nullcontext():
            kernel(*args)

    def _pruned(self, cols, gidx):
        """Exact top-k of a tile's uint8 squared distances, skipping rows that provably lose.

        Lower bounds from group sums rank the tile; the exact distances of the
        best-bounded seed rows, and the heap's current k-th distance, bound each
        query's k-th distance from above, and only rows whose lower bound is at most
        that are computed exactly, reading each gallery row once for all the queries
        that need it. Returns False when pruning would not pay (the caller then scans
        the tile).
        """
        index, Q, k = self.index, self.Q, self.k
        m, n, group = len(Q), len(cols), index.group
        P, pos = _gemm_cols(self.qsums, index.sums, cols)
        gamma = _gamma32(index.sums.shape[1])
        lb = np.empty((m, n))
        _lower_bounds(
            P, pos, self.qsums_norms, index.sums_norms, cols, 1 - gamma, gidx, self.qrows, lb
        )
        del P
        n_seeds = min(n - 1, _PRUNE_SEEDS * k)
        seeds = _smallest_per_row(lb, n_seeds)
        seed_d = np.empty(m * n_seeds, dtype=np.int32)
        rows = np.repeat(np.arange(m), n_seeds)
        _ssd_pairs_u8(Q, index.X, rows, cols[seeds.ravel()], seed_d)
        upper = np.partition(seed_d.reshape(m, n_seeds), k - 1, axis=1)[:, k - 1]
        upper = np.minimum(upper.astype(np.float64), self.hd[:, 0])
        mask = lb <= upper[:, None] * group
        del lb
        if np.count_nonzero(mask) > _PRUNE_MAX_FRACTION * m * n:
            return False
        cj, qi = np.nonzero(mask.T)  # gallery-major: each gallery row is read once
        del mask
        c_rows, starts = np.unique(cj, return_index=True)
        exact = np.empty(len(cj), dtype=np.int32)
        _ssd_by_gallery_u8(Q, index.X, cols[c_rows], np.append(starts, len(cj)), qi, exact)
        _merge_pairs(qi, gidx[cj], exact, self.hd, self.hi)
        return True

    def result(self):
        """(raw distances, global indices), ascending; missing neighbours are (inf, -1)."""
        self._merge(_sort_heaps, self.hd, self.hi)
        self.hi[self.hi == _NO_ROW] = -1
        return self.hd, self.hi


def _gamma32(n):
    """gamma_n of float32 dot products of length ``n`` (Higham's bound)."""
    u = 2.0**-24
    return n * u / (1 - n * u)


def _check_rows(rows, n):
    """Sorted unique row indices of a mask or an index array (None: all rows)."""
    if rows is None:
        return None
    rows = np.asarray(rows)
    if rows.dtype == np.bool_:
        if rows.shape != (n,):
            raise ValueError(f"A row mask needs {n} entries; got shape {rows.shape}.")
        return np.flatnonzero(rows)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise ValueError("rows must be a 1-D array of row indices or a boolean mask.")
    rows = rows.astype(np.intp, copy=False)
    if (rows[1:] <= rows[:-1]).any():  # kernels take increasing indices
        rows = np.unique(rows)
    if rows.size and (rows[0] < 0 or rows[-1] >= n):
        raise ValueError(f"Row indices must lie in [0, {n}); got {rows[0]} to {rows[-1]}.")
    return rows


def _scan_all(Q, index, k, metric, rows, query_rows, budget, threads):
    m, n = len(Q), len(index)
    dist = np.empty((m, k), dtype=np.float64)
    ind = np.empty((m, k), dtype=np.intp)
    qrows = np.full(m, -1, np.intp) if query_rows is None else np.asarray(query_rows, np.intp)
    if qrows.shape != (m,):
        raise ValueError(f"query_rows needs one entry per query ({m}); got {qrows.shape}.")
    with _numba_threads(threads):
        for s in range(0, m, _QUERY_CHUNK):
            q = np.ascontiguousarray(Q[s : s + _QUERY_CHUNK])
            scan = _Scan(q, index, k, metric, qrows[s : s + len(q)])
            step = scan.rows_per_tile(budget)
            with _serial_blas(scan):
                for b in range(0, n, step):
                    if rows is None:
                        cols = np.arange(b, min(b + step, n))
                    else:
                        cols = rows[np.searchsorted(rows, b) : np.searchsorted(rows, b + step)]
                    if len(cols):
                        scan.scan(cols)
            dist[s : s + len(q)], ind[s : s + len(q)] = scan.result()
    return dist, ind


def block_topk(
    Q, block, k, metric="mse", *, rows=None, query_rows=None, n_jobs=None, working_memory=None
):
    """Raw top-k of every query among the rows of one block of a catalogue.

    Parameters
    ----------
    Q : ndarray of shape (n_queries, n_features)
        Query rows.
    block : GalleryIndex or ndarray of shape (n_rows, n_features)
        The block; its ``offset`` (0 for an array) is the catalogue index of its
        first row.
    k : int
        Number of neighbours.
    metric : str or callable, default="mse"
        One of :data:`METRICS` or a callable on two rows.
    rows : ndarray of int or bool, default=None
        Search only these rows of the block (indices into it, or a mask of
        ``n_rows``); ``None``: all of them. No rows are copied.
    query_rows : ndarray of int of shape (n_queries,), default=None
        Catalogue index of each query when the queries are catalogue rows (-1 for
        none): a query never finds its own row.
    n_jobs : int, default=None
        Threads of the numba kernels, with joblib's meaning; ``None`` keeps numba's
        setting. Matrix products run on one BLAS thread (see :func:`topk`).
    working_memory : float, default=None
        MiB that the temporaries of one tile may take; ``None``: :data:`WORKING_MEMORY`.
        Results do not depend on it.

    Returns
    -------
    raw : ndarray of shape (n_queries, k), float64
        Raw distances, ascending (:func:`scale_distances` reports them); ``inf`` where
        the block has fewer than ``k`` candidates.
    ind : ndarray of shape (n_queries, k), intp
        Catalogue indices (``offset`` + row); equal distances are ordered by index;
        -1 where the block has fewer than ``k`` candidates.

    Examples
    --------
    >>> import numpy as np
    >>> block = GalleryIndex(np.array([[0], [10], [30]], np.uint8), offset=100)
    >>> block_topk(np.array([[12]], np.uint8), block, 2, "maxabs")
    (array([[ 2., 12.]]), array([[101, 100]]))
    """
    Q, block, threads = _prepare(Q, block, metric, n_jobs)
    if not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive int; got {k!r}.")
    rows = _check_rows(rows, len(block))
    return _scan_all(Q, block, int(k), metric, rows, query_rows, _budget(working_memory), threads)


def merge_topk(results, k):
    """Combine raw top-k results of the same queries over disjoint blocks.

    Parameters
    ----------
    results : sequence of (raw, ind) pairs
        Outputs of :func:`block_topk`, one per block.
    k : int
        Number of neighbours to keep.

    Returns
    -------
    raw, ind : ndarray of shape (n_queries, k)
        The ``k`` best over all blocks, ordered by distance then catalogue index
        (missing ones last, as ``inf`` and -1).

    Examples
    --------
    >>> import numpy as np
    >>> a = (np.array([[1.0, 4.0]]), np.array([[7, 2]]))
    >>> b = (np.array([[1.0, 2.0]]), np.array([[3, 9]]))
    >>> merge_topk([a, b], 3)
    (array([[1., 1., 2.]]), array([[3, 7, 9]]))
    """
    raw = np.concatenate([np.asarray(r[0], np.float64) for r in results], axis=1)
    ind = np.concatenate([np.asarray(r[1], np.intp) for r in results], axis=1)
    order = np.lexsort((np.where(ind < 0, _NO_ROW, ind), raw), axis=1)[:, :k]
    return np.take_along_axis(raw, order, 1), np.take_along_axis(ind, order, 1)


def topk(Q, G, k, metric="mse", *, rows=None, exclude_self=False, n_jobs=None, working_memory=None):
    """The ``k`` nearest gallery rows of every query row, exactly.

    Batches of uint8 queries against a uint8 gallery under ``"mse"``, ``"euclidean"``
    or ``"sqeuclidean"`` skip gallery rows whose lower bound (from sums of column
    groups) already exceeds an upper bound of the k-th distance; float galleries under
    those metrics and ``"cosine"`` pick their candidates with a GEMM. The result is the
    same as scanning everything.

    Parameters
    ----------
    Q : ndarray of shape (n_queries, n_features)
        Query rows.
    G : ndarray of shape (n_gallery, n_features) or GalleryIndex
        Gallery rows; pass a :class:`GalleryIndex` to reuse its precomputation.
    k : int
        Number of neighbours, at most the number of candidate rows.
    metric : str or callable, default="mse"
        One of :data:`METRICS` or a callable on two rows.
    rows : ndarray of int or bool, default=None
        Search only these gallery rows (indices or a mask); returned indices still
        refer to the whole gallery. No rows are copied.
    exclude_self : bool, default=False
        ``Q`` is the gallery itself: never return a row as its own neighbour.
    n_jobs : int, default=None
        Threads of the numba kernels, with joblib's meaning (``-1``: all cores);
        ``None`` keeps numba's setting (all cores unless configured otherwise). The
        matrix products of a search run on one BLAS thread, between the parallel
        kernels (as in scikit-learn's brute-force search); BLAS's own setting is
        restored afterwards.
    working_memory : float, default=None
        MiB that the temporaries of one tile may take; ``None``: :data:`WORKING_MEMORY`.
        Results do not depend on it.

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
    >>> topk(np.array([[10]], np.uint8), G, 2, "maxabs", rows=[0, 3])[1]
    array([[0, 3]])
    """
    Q, index, threads = _prepare(Q, G, metric, n_jobs)
    if not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive int; got {k!r}.")
    rows = _check_rows(rows, len(index))
    query_rows = index.offset + np.arange(len(Q)) if exclude_self else None
    raw, ind = _scan_all(
        Q, index, int(k), metric, rows, query_rows, _budget(working_memory), threads
    )
    if (ind < 0).any():
        n = len(index) if rows is None else len(rows)
        raise ValueError(
            f"Asked for {k} neighbours but only {n} gallery rows are candidates"
            + (" (each query's own row excluded)." if exclude_self else ".")
        )
    return _scaled(raw, metric, index), ind
