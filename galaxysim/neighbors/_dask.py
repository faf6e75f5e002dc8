"""Exact search and embedding of catalogues held as Dask arrays, block by block.

The search runs the exact kernel (:func:`topk`) on each block of the catalogue, on the
workers, and merges the per-block results in a tree of small merges; the embedding
applies a fitted transformer to each block. Both work on whichever Dask scheduler is
active (threads, processes, or a ``distributed.Client``).
"""

import numbers

import numpy as np
from sklearn.utils.validation import check_is_fitted

from galaxysim.neighbors._kernels import METRICS, topk
from galaxysim.utils._optional import import_optional

__all__ = ["blockwise_topk", "embed_blocks"]


def _dask(purpose):
    return import_optional("dask", purpose), import_optional("dask.array", purpose)


def _row_blocks(X, ndim, purpose, da):
    """``X`` as a Dask array in blocks of rows only (every other axis one chunk)."""
    if not isinstance(X, da.Array):
        raise TypeError(
            f"{purpose} takes a Dask array (for example open_catalogue(...).images, or "
            f"dask.array.from_array(X, chunks=...)); got {type(X).__name__}."
        )
    if ndim is not None and X.ndim != ndim:
        raise ValueError(
            f"{purpose} expects a {ndim}-D Dask array (n_samples, n_features); got shape "
            f"{X.shape}. Embed or flatten the images first (embed_blocks)."
        )
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError(
            f"{purpose} needs the size of every block of rows; call X.compute_chunk_sizes() first."
        )
    if any(len(c) > 1 for c in X.chunks[1:]):
        X = X.rechunk({axis: -1 for axis in range(1, X.ndim)})
    return X


def _block_topk(Q, block, offset, k, metric, n_jobs):
    """Exact top-k of one block; indices made global by the block's offset."""
    dist, ind = topk(Q, np.ascontiguousarray(block), k, metric, n_jobs=n_jobs)
    return dist, ind.astype(np.int64) + offset


def _merge(parts, k):
    """The k best of several top-k lists: by distance, then by catalogue index."""
    dist = np.concatenate([p[0] for p in parts], axis=1)
    ind = np.concatenate([p[1] for p in parts], axis=1)
    order = np.lexsort((ind, dist), axis=1)[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(ind, order, axis=1)


def blockwise_topk(Q, G, k, metric="mse", *, split_every=8, n_jobs=1, compute=True):
    """Exact ``k`` nearest rows of a catalogue held as a Dask array, block by block.

    Each block of catalogue rows is searched on the workers with the exact kernel
    (:func:`galaxysim.neighbors.pairwise_distances` computes the same distances), its
    indices offset to catalogue indices; the per-block results are then merged in a
    tree (``split_every`` lists per merge), ordering equal distances by catalogue
    index. The result is the same as searching the whole catalogue in memory: same
    indices, same distances, ties included. The queries are one node of the task
    graph, sent once rather than with every block.

    Runs on the active Dask scheduler: threads by default, ``dask.config.set(
    scheduler="processes")``, or a ``distributed.Client``.

    Parameters
    ----------
    Q : ndarray of shape (n_queries, n_features)
        Query rows, on the catalogue's scale (uint8 0-255 or floats).
    G : dask.array.Array of shape (n_catalogue, n_features)
        Catalogue rows, uint8 or float, in blocks of rows (other chunkings are
        rechunked to whole rows).
    k : int
        Number of neighbours, at most ``n_catalogue``.
    metric : str or callable, default="mse"
        One of :data:`galaxysim.neighbors.METRICS`, or a callable on two rows.
    split_every : int, default=8
        Per-block results merged per task of the tree (at least 2).
    n_jobs : int or None, default=1
        Threads of the kernel within each task (joblib's meaning; ``None``: numba's
        setting). The default leaves the parallelism to Dask, one block per worker
        thread.
    compute : bool, default=True
        Compute and return arrays; ``False`` returns a :class:`dask.delayed.Delayed`
        of the ``(dist, ind)`` tuple, to compute together with other work.

    Returns
    -------
    dist : ndarray of shape (n_queries, k), float64
        Distances, ascending, on the scale of the in-memory search.
    ind : ndarray of shape (n_queries, k), int64
        Catalogue indices; equal distances are ordered by index.

    Notes
    -----
    uint8 rows give exactly the in-memory result. For float rows, two distances that
    differ only in the last bit of their squared distance may come out equal after
    scaling (``"mse"``, ``"euclidean"``), and are then ordered by index.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from galaxysim.neighbors import blockwise_topk
    >>> G = np.array([[0], [10], [10], [30], [10]], dtype=np.uint8)
    >>> dist, ind = blockwise_topk(np.array([[10]], np.uint8), da.from_array(G, chunks=2), 4,
    ...                            "maxabs")
    >>> ind
    array([[1, 2, 4, 0]])
    """
    dask, da = _dask("blockwise_topk")
    G = _row_blocks(G, 2, "blockwise_topk", da)
    if not callable(metric) and metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose one of {METRICS} or a callable.")
    if G.dtype != np.uint8 and G.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"blockwise_topk searches uint8 (0-255 pixels) or float32/float64 rows; the "
            f"catalogue's are {G.dtype}. Convert it first, for example G.astype(np.float32)."
        )
    Q = np.ascontiguousarray(Q)
    if Q.ndim != 2 or Q.shape[1] != G.shape[1]:
        raise ValueError(
            f"Queries have shape {Q.shape}; expected (n_queries, {G.shape[1]}) rows like the "
            "catalogue's. Transform them with the same steps as the catalogue."
        )
    n = G.shape[0]
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k must be an int from 1 to the catalogue's {n} rows; got {k!r}.")
    if not isinstance(split_every, numbers.Integral) or split_every < 2:
        raise ValueError(f"split_every must be an int >= 2; got {split_every!r}.")
    queries = dask.delayed(Q, pure=True)  # one node: sent once, not with every block
    block_topk = dask.delayed(_block_topk, pure=True)
    merge = dask.delayed(_merge, pure=True)
    offsets = np.cumsum((0, *G.chunks[0]))[:-1]
    parts = [
        block_topk(queries, block, int(offset), min(k, size), metric, n_jobs)
        for block, offset, size in zip(G.to_delayed().ravel(), offsets, G.chunks[0], strict=True)
        if size
    ]
    while len(parts) > 1:
        parts = [merge(parts[s : s + split_every], k) for s in range(0, len(parts), split_every)]
    result = parts[0]
    return dask.compute(result)[0] if compute else result


def _transform_block(model, block):
    return model.transform(block)


def embed_blocks(transformer, X):
    """Apply a fitted transformer (or pipeline) to each block of a Dask array.

    The transformer is one node of the task graph: it is sent to each worker once,
    not with every block. The output's shape and dtype come from transforming the first
    image here, once.

    Parameters
    ----------
    transformer : fitted estimator with ``transform``
        For example a fitted pipeline without its search step (``pipe[:-1]``) or an
        encoder.
    X : dask.array.Array of shape (n_samples, ...)
        Images or rows, in blocks along the first axis (other chunkings are rechunked
        to whole samples).

    Returns
    -------
    Xt : dask.array.Array of shape (n_samples, ...)
        The transformed samples, with ``X``'s blocks of rows. Nothing is computed
        beyond the first block.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from galaxysim.neighbors import embed_blocks
    >>> from galaxysim.preprocessing import PixelFlatten
    >>> X = da.zeros((10, 8, 8, 3), dtype=np.uint8, chunks=4)
    >>> Xt = embed_blocks(PixelFlatten().fit(X[:2].compute()), X)
    >>> Xt.shape, Xt.chunks[0], Xt.dtype
    ((10, 192), (4, 4, 2), dtype('uint8'))
    """
    dask, da = _dask("embed_blocks")
    if not hasattr(transformer, "transform"):
        raise TypeError(
            f"embed_blocks needs a fitted transformer with a transform method; got "
            f"{type(transformer).__name__}. For a search pipeline pass pipe[:-1]."
        )
    check_is_fitted(transformer)
    X = _row_blocks(X, None, "embed_blocks", da)
    if X.shape[0] == 0:
        raise ValueError("embed_blocks got an empty Dask array (0 samples).")
    probe = np.asarray(transformer.transform(X[:1].compute()))
    if probe.ndim < 1 or probe.shape[0] != 1:
        raise ValueError(
            f"{type(transformer).__name__}.transform returned shape {probe.shape} for one "
            "sample; expected one output row per sample."
        )
    out_ndim = probe.ndim
    kwargs = {}
    if out_ndim < X.ndim:
        kwargs["drop_axis"] = list(range(out_ndim, X.ndim))
    elif out_ndim > X.ndim:
        kwargs["new_axis"] = list(range(X.ndim, out_ndim))
    model = dask.delayed(transformer, pure=True)  # one node: sent to each worker once
    return da.map_blocks(
        _transform_block,
        model,
        X,
        chunks=(X.chunks[0], *((s,) for s in probe.shape[1:])),
        dtype=probe.dtype,
        meta=np.empty((0,) * out_ndim, dtype=probe.dtype),
        token="embed",
        **kwargs,
    )
