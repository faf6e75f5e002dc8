"""Searches in tiles: label-restricted search in place, bounded memory, the GEMM filter.

Every result is compared with one computed another way: the old search of a copy of
the selected rows, a float64 reference, or the same search in one tile.
"""

import tracemalloc

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from galaxysim.neighbors import METRICS, NearestGalaxy, _kernels
from galaxysim.neighbors._kernels import GalleryIndex, block_topk, merge_topk, topk

RNG = np.random.default_rng(7)


def copy_reference(X, y, Q, labels, k, metric, self_query=False):
    """What the search did before: fit a copy of the selected rows, map indices back."""
    rows = np.flatnonzero(np.isin(y, labels))
    sub = NearestGalaxy(n_neighbors=k, metric=metric).fit(X[rows])
    if not self_query:
        dist, ind = sub.kneighbors(Q, n_neighbors=k)
        return dist, rows[ind]
    # each catalogue row as a query, never finding itself
    dist, ind = sub.kneighbors(Q, n_neighbors=min(k + 1, len(rows)))
    ind = rows[ind]
    keep = ind != np.arange(len(Q))[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(ind, order, 1)


@pytest.fixture(scope="module")
def catalogues():
    """uint8 pixels with duplicates, float32 with ties, float64; labels of 70/20/10%."""
    from galaxysim.datasets import make_galaxies

    X, _ = make_galaxies(1500, image_size=16, random_state=5)
    u8 = X.reshape(len(X), -1)
    u8[900] = u8[12]  # exact duplicates: real ties
    f32 = RNG.standard_normal((1500, 24)).astype(np.float32)
    f32[40] = f32[41] = f32[700]
    f32_ints = RNG.integers(-3, 4, size=(1500, 10)).astype(np.float32)  # many exact ties
    y = RNG.choice(["a", "b", "c"], size=1500, p=[0.7, 0.2, 0.1])
    return {"uint8": u8, "float32": f32, "float32_ints": f32_ints, "float64": f32 * 1.0}, y


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", ["uint8", "float32", "float32_ints", "float64"])
@pytest.mark.parametrize("working_memory", [None, 0.02])
def test_within_is_the_search_of_a_copy(catalogues, kind, metric, working_memory):
    """Row indices instead of a copy: the very same neighbours, distances and ties."""
    data, y = catalogues
    X = data[kind]
    Q = X[[3, 12, 41, 900, 1499]]
    if kind.startswith("float"):
        Q = Q + np.asarray(RNG.normal(0, 0.05, Q.shape), X.dtype) * (kind != "float32_ints")
    search = NearestGalaxy(n_neighbors=6, metric=metric, working_memory=working_memory).fit(X, y)
    for labels in (["a"], ["b", "c"]):
        dist, ind = search.kneighbors(Q, within=labels)
        ref_d, ref_i = copy_reference(X, y, Q, labels, 6, metric)
        np.testing.assert_array_equal(ind, ref_i)
        np.testing.assert_array_equal(dist, ref_d)
    d_pc, i_pc = search.nearest_per_class(Q)
    for c, label in enumerate(search.classes_):
        ref_d, ref_i = copy_reference(X, y, Q, [label], 1, metric)
        np.testing.assert_array_equal(i_pc[:, c], ref_i[:, 0])
        np.testing.assert_array_equal(d_pc[:, c], ref_d[:, 0])


@pytest.mark.parametrize("metric", ["mse", "maxabs", "cosine"])
def test_self_query_within_is_the_search_of_a_copy(catalogues, metric):
    data, y = catalogues
    X, y = data["uint8"][:400], y[:400]
    search = NearestGalaxy(n_neighbors=4, metric=metric, working_memory=0.05).fit(X, y)
    dist, ind = search.kneighbors(within=["b"])
    ref_d, ref_i = copy_reference(X, y, X, ["b"], 4, metric, self_query=True)
    np.testing.assert_array_equal(ind, ref_i)
    np.testing.assert_array_equal(dist, ref_d)
    n_b = int((y == "b").sum())
    with pytest.raises(ValueError, match=f"only {n_b - 1} candidates besides each row itself"):
        search.kneighbors(n_neighbors=n_b, within=["b"])


def test_within_copies_no_catalogue_rows():
    """The 70% selection is searched in place: no array near its size is allocated."""
    X = RNG.integers(0, 256, size=(20000, 768), dtype=np.uint8)  # 15 MB
    y = RNG.choice(2, size=len(X), p=[0.7, 0.3])
    search = NearestGalaxy(n_neighbors=5).fit(X, y)
    q = X[:1]
    search.kneighbors(q, within=[0])  # compile
    tracemalloc.start()
    _, ind = search.kneighbors(q, within=[0])
    search.nearest_per_class(q)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (y[ind] == 0).all()
    # a copy of the selected rows would be 10.7 MB; their indices take 0.1 MB
    assert peak < 0.1 * X.nbytes, peak


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_many_queries_keep_to_the_working_memory(dtype):
    """256 queries against 40,000 rows: no (queries x rows) matrix (82 MB in float64)."""
    X = RNG.integers(0, 256, size=(40000, 16)).astype(dtype)
    Q = RNG.integers(0, 256, size=(256, 16)).astype(dtype)
    if dtype == np.float32:
        X, Q = X / np.float32(255), Q / np.float32(255)
    search = NearestGalaxy(n_neighbors=10, working_memory=2).fit(X)
    search.kneighbors(Q[:8])  # compile
    tracemalloc.start()
    dist, ind = search.kneighbors(Q)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3 * 2**20 + dist.nbytes + ind.nbytes, peak
    ref = NearestGalaxy(n_neighbors=10, working_memory=1000).fit(X).kneighbors(Q)
    np.testing.assert_array_equal(ind, ref[1])
    np.testing.assert_array_equal(dist, ref[0])


def sq_reference(Q, G):
    """Exact squared distances of integer-valued rows (any summation order is exact)."""
    q, g = Q.astype(np.float64), G.astype(np.float64)
    return ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "mse", "cosine"])
def test_gemm_filter_keeps_exact_order_where_the_gemm_cannot(metric):
    """Rows far from the origin: the float32 GEMM errs by more than the distance gaps.

    Values 3000 + small integers are exact in float32 and give exact integer distances
    in float64, but dot products near 6e8 round in float32 by about 32, so the GEMM's
    own distances would misorder and miss rows; the filter must widen them enough.
    """
    G = (3000 + RNG.integers(0, 6, size=(3000, 64))).astype(np.float32)
    G[[10, 500, 2999]] = G[1234]  # exact ties, to be ordered by index
    Q = np.concatenate([G[1234:1235], (3000 + RNG.integers(0, 6, size=(20, 64)))]).astype(
        np.float32
    )
    gemm_sq = (
        (Q.astype(np.float64) ** 2).sum(1)[:, None]
        + (G.astype(np.float64) ** 2).sum(1)[None]
        - 2 * (Q @ G.T).astype(np.float64)
    )
    exact_sq = sq_reference(Q, G)
    assert np.abs(gemm_sq - exact_sq).max() > 8  # the GEMM alone would be wrong
    dist, ind = NearestGalaxy(n_neighbors=15, metric=metric).fit(G).kneighbors(Q)
    if metric == "cosine":
        q, g = Q.astype(np.float64), G.astype(np.float64)
        denom = np.sqrt((q**2).sum(1))[:, None] * np.sqrt((g**2).sum(1))[None]
        ref = np.clip(1 - (q @ g.T) / denom, 0, 2)  # integer dot products: exact
    else:
        ref = exact_sq / (64 if metric == "mse" else 1)
        ref = np.sqrt(ref) if metric == "euclidean" else ref
    ref_ind = np.argsort(ref, axis=1, kind="stable")[:, :15]
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_array_equal(dist, np.take_along_axis(ref, ref_ind, 1))
    if metric != "cosine":
        np.testing.assert_array_equal(ind[0, :4], [10, 500, 1234, 2999])


@pytest.mark.parametrize("scale", [1e-30, 1e17, 1e30])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_and_huge_values_stay_exact(scale, dtype):
    """Underflowing products and values whose GEMM would overflow (exact path)."""
    G = (RNG.integers(-4, 5, size=(600, 12)) * scale).astype(dtype)
    Q = (RNG.integers(-4, 5, size=(9, 12)) * scale).astype(dtype)
    for metric in ("sqeuclidean", "cosine"):
        dist, ind = NearestGalaxy(n_neighbors=8, metric=metric).fit(G).kneighbors(Q)
        ref = NearestGalaxy(n_neighbors=8, metric=metric).fit(G)
        # the exact difference kernel on every row, as the reference
        raw = _kernels._raw_block(Q, ref._index, metric, np.arange(len(G)))
        ref_ind = np.argsort(raw, axis=1, kind="stable")[:, :8]
        np.testing.assert_array_equal(ind, ref_ind)


def test_blocks_with_offsets_merge_to_the_whole_search(catalogues):
    """block_topk over row ranges with global offsets, merged, is the whole search."""
    data, y = catalogues
    for X, metric in ((data["uint8"], "mse"), (data["float32"], "cosine")):
        Q = X[:30]
        want = topk(Q, X, 7, metric, exclude_self=True)
        rows = np.arange(len(Q))
        parts = []
        for start in range(0, len(X), 400):
            block = GalleryIndex(X[start : start + 400], offset=start)
            parts.append(block_topk(Q, block, 7, metric, query_rows=rows, working_memory=0.1))
        raw, ind = merge_topk(parts, 7)
        np.testing.assert_array_equal(ind, want[1])
        np.testing.assert_array_equal(_kernels.scale_distances(raw, metric, block), want[0])
    # a block with fewer candidates than k pads with (inf, -1)
    raw, ind = block_topk(Q[:1], GalleryIndex(X[:3], offset=10), 5, metric)
    np.testing.assert_array_equal(ind[0, 3:], [-1, -1])
    assert np.isinf(raw[0, 3:]).all() and (ind[0, :3] >= 10).all()


def test_pruning_over_several_tiles_is_exact(catalogues, monkeypatch):
    """uint8 batches prune tile by tile, bounded by the running k-th distance."""
    G = catalogues[0]["uint8"]
    Q = G[:24]
    monkeypatch.setattr(_kernels, "_PRUNE_MIN_GALLERY", 256)  # small tiles prune too
    calls = []
    pruned = _kernels._Scan._pruned

    def spy(self, cols, gidx):
        calls.append(pruned(self, cols, gidx))
        return calls[-1]

    monkeypatch.setattr(_kernels._Scan, "_pruned", spy)
    dist, ind = topk(Q, G, 10, "sqeuclidean", working_memory=0.37)  # tiles of 505 rows
    assert len(calls) == 3 and sum(calls) >= 2, calls
    q, g = Q.astype(np.float64), G.astype(np.float64)  # integers: exact in float64
    ref = (q**2).sum(1)[:, None] + (g**2).sum(1)[None] - 2 * q @ g.T
    ref_ind = np.argsort(ref, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_array_equal(dist, np.take_along_axis(ref, ref_ind, 1) / 255**2)
    np.testing.assert_array_equal(ind[12, :2], [12, 900])


def test_blas_threads_are_restored():
    before = [i["num_threads"] for i in threadpool_info()]
    X = RNG.standard_normal((500, 8)).astype(np.float32)
    NearestGalaxy(n_neighbors=3).fit(X).kneighbors(X[:20])
    assert [i["num_threads"] for i in threadpool_info()] == before


def test_bad_working_memory_and_rows():
    X = RNG.integers(0, 256, size=(50, 4), dtype=np.uint8)
    for bad in (0, -1.0, "1GB", True):
        with pytest.raises(ValueError, match="'working_memory' parameter"):
            NearestGalaxy(working_memory=bad).fit(X)
    with pytest.raises(ValueError, match="working_memory must be a positive number of MiB"):
        topk(X[:1], X, 2, working_memory=float("inf"))
    with pytest.raises(ValueError, match=r"Row indices must lie in \[0, 50\); got 3 to 50"):
        topk(X[:1], X, 2, rows=[3, 50])
    with pytest.raises(ValueError, match="A row mask needs 50 entries"):
        topk(X[:1], X, 2, rows=np.ones(49, bool))
    with pytest.raises(ValueError, match="only 2 gallery rows are candidates"):
        topk(X[:1], X, 3, rows=[4, 7])


def test_callable_metric_returning_nan_is_an_error():
    X = RNG.standard_normal((20, 3))
    search = NearestGalaxy(n_neighbors=2, metric=lambda a, b: np.nan).fit(X)
    with pytest.raises(ValueError, match="returned NaN for some pairs"):
        search.kneighbors(X[:2])


def test_precomputations_are_made_when_a_kernel_needs_them(catalogues):
    """One pixel query streams the rows once: no norms or group sums (two more passes
    over a memory-mapped catalogue) are computed for it; a batch computes the norms its
    kernel needs, and the group sums only where it prunes (tiles of 2048 rows or more)."""
    X = catalogues[0]["uint8"]
    search = NearestGalaxy(5).fit(X)
    one = search.kneighbors(X[:1])
    assert not {"norms", "sums", "sums_norms"} & set(vars(search._index))
    batch = search.kneighbors(X[:16])  # the dot-product kernel: norms
    assert "norms" in vars(search._index) and "sums" not in vars(search._index)
    np.testing.assert_array_equal(batch[1][:1], one[1])
    big = NearestGalaxy(5).fit(np.concatenate([X, X]))
    big.kneighbors(X[:16])
    assert {"sums", "sums_norms"} <= set(vars(big._index))  # pruned: no dot products
