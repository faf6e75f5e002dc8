"""NearestGalaxy and SearchPipeline fitted on Dask arrays: the in-memory results, lazily."""

import pickle

import dask
import dask.array as da
import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from galaxysim.neighbors import NearestGalaxy, blockwise_topk
from galaxysim.neighbors._kernels import block_topk, topk
from galaxysim.pipeline import make_method_search, make_search_pipeline
from galaxysim.preprocessing import PixelFlatten
from tests.neighbors.test_dask import _gallery_with_ties, _images, _l1


def _assert_same(a, b):
    if isinstance(a, tuple):
        for x, z in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, z)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("metric", ["mse", "maxabs", "cosine", _l1])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_fit_on_dask_equals_in_memory(metric, dtype):
    Q, G = _gallery_with_ties(dtype)
    y = np.arange(len(G)) % 3
    lazy = NearestGalaxy(9, metric=metric).fit(da.from_array(G, chunks=13), y)
    mem = NearestGalaxy(9, metric=metric).fit(G, y)
    assert lazy.n_samples_fit_ == 87 and lazy.n_features_in_ == 12
    for within in (None, [0, 2]):
        _assert_same(lazy.kneighbors(Q, within=within), mem.kneighbors(Q, within=within))
        _assert_same(lazy.kneighbors(within=within), mem.kneighbors(within=within))
    _assert_same(lazy.nearest_per_class(Q), mem.nearest_per_class(Q))
    _assert_same(lazy.predict(Q), mem.predict(Q))
    assert lazy.score(Q, y[:8]) == mem.score(Q, y[:8])


def test_blocks_merge_raw_distances():
    """Two rows whose squared distances differ in the last bit but whose euclidean
    distances are equal: the in-memory search ranks them by the squared distance, so
    blocks must be merged before the square root (a merge of the scaled distances would
    call it a tie and put the lower index first)."""
    rng = np.random.default_rng(0)
    ab = rng.random((2000, 2))
    nudged = ab.copy()
    nudged[:, 1] = np.nextafter(nudged[:, 1], 2)
    G = np.stack([nudged, ab], axis=1).reshape(-1, 2)  # row 2i nudged, row 2i + 1 not
    q = np.zeros((1, 2))
    raw, ind = block_topk(q, G, len(G), "euclidean")
    raw_of = np.empty(len(G))
    raw_of[ind[0]] = raw[0]
    pair = next(
        i
        for i in range(2000)
        if raw_of[2 * i] > raw_of[2 * i + 1]
        and np.sqrt(raw_of[2 * i]) == np.sqrt(raw_of[2 * i + 1])
    )
    G2 = G[2 * pair : 2 * pair + 2]  # row 0 is the farther one, by one bit
    ref = topk(q, G2, 2, "euclidean")
    assert ref[1].tolist() == [[1, 0]] and ref[0][0, 0] == ref[0][0, 1]
    _assert_same(blockwise_topk(q, da.from_array(G2, chunks=1), 2, "euclidean"), ref)
    lazy = NearestGalaxy(2, metric="euclidean").fit(da.from_array(G2, chunks=1))
    _assert_same(lazy.kneighbors(q), ref)


def test_dask_integers_are_searched_as_in_memory():
    rng = np.random.default_rng(2)
    G = rng.integers(-50, 50, size=(60, 5))
    lazy = NearestGalaxy(4, metric="manhattan").fit(da.from_array(G, chunks=16))
    mem = NearestGalaxy(4, metric="manhattan").fit(G)
    _assert_same(lazy.kneighbors(G[:7]), mem.kneighbors(G[:7]))


def test_dask_fit_checks_and_block_errors():
    G = np.random.default_rng(0).random((40, 6))
    G[33, 2] = np.nan
    search = NearestGalaxy(3).fit(da.from_array(G, chunks=10))  # stays lazy: no pass
    with pytest.raises(ValueError, match=r"Catalogue row 33 \(in the block of rows 30 to 39\)"):
        search.kneighbors(G[:2].clip(0, 1) * 0)
    with pytest.raises(TypeError, match="takes numeric rows; the Dask array's dtype is <U1"):
        NearestGalaxy().fit(da.from_array(np.array([["a"]])))
    with pytest.raises(ValueError, match=r"shape \(0, 6\)"):
        NearestGalaxy().fit(da.zeros((0, 6), chunks=5))
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        lazy = da.from_array(G, chunks=10)
        NearestGalaxy().fit(lazy[lazy[:, 0] > 0.5])
    with pytest.raises(ValueError, match="expects 2-D rows"):
        NearestGalaxy().fit(da.zeros((4, 2, 2), chunks=2))
    with pytest.raises(ValueError, match="n_neighbors = 40.*39 candidates besides each row"):
        NearestGalaxy().fit(da.from_array(G[:, :1] * 0, chunks=10)).kneighbors(n_neighbors=40)


def test_dask_fitted_search_pickles_and_runs_on_processes():
    Q, G = _gallery_with_ties(np.uint8)
    search = NearestGalaxy(5, metric="maxabs").fit(da.from_array(G, chunks=20))
    copy = pickle.loads(pickle.dumps(search))
    with dask.config.set(scheduler="processes", num_workers=2):
        _assert_same(copy.kneighbors(Q), NearestGalaxy(5, metric="maxabs").fit(G).kneighbors(Q))


def test_approximate_search_of_dask_rows():
    rng = np.random.default_rng(5)
    G = rng.normal(size=(3000, 8)).astype(np.float32)
    params = {"metric": "euclidean", "algorithm": "ivf", "nlist": 16, "random_state": 0}
    lazy = NearestGalaxy(4, **params).fit(da.from_array(G, chunks=700))
    mem = NearestGalaxy(4, **params).fit(G)
    _assert_same(lazy.kneighbors(G[:20]), mem.kneighbors(G[:20]))
    _assert_same(lazy.kneighbors(), mem.kneighbors())  # rows read block by block
    y = np.arange(3000) % 2
    _assert_same(
        NearestGalaxy(4, **params).fit(da.from_array(G, chunks=700), y).kneighbors(within=[1]),
        NearestGalaxy(4).set_params(metric="euclidean").fit(G, y).kneighbors(within=[1]),
    )


# ---------------------------------------------------------------- pipelines
def test_pipeline_fit_on_dask_images_equals_in_memory():
    X = _images(n=45, size=12)
    X[40:] = X[:5]  # ties across blocks
    y = np.arange(45) % 4
    Xd = da.from_array(X, chunks=(10, 12, 12, 3))
    for make in (
        lambda: make_method_search("mse", n_neighbors=6),
        lambda: make_search_pipeline(
            FrozenEstimator(make_pipeline(PixelFlatten(), PCA(4, random_state=0)).fit(X)),
            NearestGalaxy(6, metric="euclidean"),
        ),
    ):
        lazy, mem = make().fit(Xd, y), make().fit(X, y)
        rows = lazy[-1]._rows
        assert isinstance(rows, da.Array) and rows.chunks[0] == (10, 10, 10, 10, 5)
        _assert_same(lazy.kneighbors(X[:6]), mem.kneighbors(X[:6]))
        _assert_same(lazy.kneighbors(), mem.kneighbors())
        _assert_same(lazy.nearest_per_class(X[:3]), mem.nearest_per_class(X[:3]))


def test_pipeline_fit_on_dask_refuses_steps_that_learn_from_the_rows():
    Xd = da.from_array(_images(n=20, size=8), chunks=5)
    pipe = make_search_pipeline(PixelFlatten(), StandardScaler(), NearestGalaxy())
    with pytest.raises(TypeError, match=r"\['standardscaler'\] learn from the whole.*build_index"):
        pipe.fit(Xd)
    with pytest.raises(TypeError, match="passes no fit parameters"):
        make_method_search("mse").fit(Xd, nearestgalaxy__approximate_index=None)
    rows = da.from_array(_images(n=20, size=8).reshape(20, -1), chunks=5)
    only = make_search_pipeline(NearestGalaxy(3)).fit(rows)  # no transform step
    assert only.kneighbors(rows[:1].compute())[1][0, 0] == 0
