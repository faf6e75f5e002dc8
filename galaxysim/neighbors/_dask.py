"""Exact search and embedding of catalogues held as Dask arrays, block by block.

The search runs the exact kernel (:func:`topk`) on each block of the catalogue, on the
workers, and merges the per-block results in a tree of small merges; the embedding
applies a fitted transformer to each block. Both work on whichever Dask scheduler is
active (threads, processes, or a ``distributed.Client``).
"""

import numbers
import sys

import numpy as np
from sklearn.utils.validation import check_is_fitted

from galaxysim.neighbors._kernels import (
    METRICS,
    GalleryIndex,
    block_topk,
    merge_topk,
    scale_distances,
)
from galaxysim.utils._optional import import_optional

__all__ = ["blockwise_topk", "embed_blocks"]


def _dask(purpose):
    return import_optional("dask", purpose), import_optional("dask.array", purpose)


def is_dask_array(X):
    """Whether ``X`` is a Dask array (without importing Dask: none exists before it is)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(X, da.Array)


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


def as_row_blocks(X, purpose):
    """A 2-D Dask array of rows in blocks of whole rows (other chunkings rechunked)."""
    return _row_blocks(X, 2, purpose, _dask(purpose)[1])


def check_row_blocks(G, purpose):
    """A catalogue of rows for the block-wise search: 2-D, blocks of whole rows, uint8 or
    float (other numbers are refused: converting them is the caller's decision)."""
    G = as_row_blocks(G, purpose)
    if G.dtype != np.uint8 and G.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"{purpose} searches uint8 (0-255 pixels) or float32/float64 rows; the "
            f"catalogue's are {G.dtype}. Convert it first, for example G.astype(np.float32)."
        )
    return G


def _block_index(block, offset):
    """A block of rows as a GalleryIndex, refusing values the exact search cannot rank."""
    block = np.ascontiguousarray(block)
    if block.dtype != np.uint8 and not np.isfinite(block).all():
        bad = int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
        raise ValueError(
            f"Catalogue row {offset + bad} (in the block of rows {offset} to "
            f"{offset + len(block) - 1}) holds NaN or infinite values; the search needs "
            "finite rows."
        )
    return GalleryIndex(block, offset=offset)


def _block_topk(Q, block, offset, k, metric, rows, query_rows, n_jobs, working_memory):
    """Raw top-k of one block, catalogue indices (``offset`` + row)."""
    raw, ind = block_topk(
        np.ascontiguousarray(Q),
        _block_index(block, offset),
        k,
        metric,
        rows=rows,
        query_rows=query_rows,
        n_jobs=n_jobs,
        working_memory=working_memory,
    )
    return raw, ind.astype(np.int64)


def _merge(parts, k):
    """The k best of several raw top-k lists: by distance, then by catalogue index."""
    raw, ind = merge_topk(parts, k)
    return raw, ind.astype(np.int64)


def _block_per_class(Q, block, offset, codes, n_classes, metric, n_jobs, working_memory):
    """Raw distance and catalogue index of the closest row of each label in one block
    (inf and -1 for labels the block lacks)."""
    Q = np.ascontiguousarray(Q)
    index = _block_index(block, offset)
    raw = np.full((len(Q), n_classes), np.inf)
    ind = np.full((len(Q), n_classes), -1, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=n_classes))[:-1]
    for c, rows in enumerate(np.split(order, bounds)):
        if len(rows):
            r, i = block_topk(
                Q, index, 1, metric, rows=rows, n_jobs=n_jobs, working_memory=working_memory
            )
            raw[:, c], ind[:, c] = r[:, 0], i[:, 0]
    return raw, ind


def _merge_per_class(parts):
    raw = np.stack([p[0] for p in parts], axis=2)  # (queries, classes, parts)
    ind = np.stack([p[1] for p in parts], axis=2)
    m, c, n = raw.shape
    best_raw, best_ind = merge_topk([(raw.reshape(m * c, n), ind.reshape(m * c, n))], 1)
    return best_raw.reshape(m, c), best_ind.reshape(m, c).astype(np.int64)


def _tree(parts, merge, split_every):
    while len(parts) > 1:
        parts = [merge(parts[s : s + split_every]) for s in range(0, len(parts), split_every)]
    return parts[0]


def _block_rows(rows, start, size):
    """The rows (sorted catalogue indices) of one block, as indices into it."""
    if rows is None:
        return None
    lo, hi = np.searchsorted(rows, (start, start + size))
    return rows[lo:hi] - start


def _topk_graph(queries, query_rows, G, k, metric, rows, split_every, n_jobs, working_memory):
    """The delayed raw ``(dist, ind)`` of the queries (a delayed node) over ``G``'s blocks."""
    import dask

    block_task = dask.delayed(_block_topk, pure=True)
    merge = dask.delayed(_merge, pure=True)
    offsets = np.cumsum((0, *G.chunks[0]))[:-1]
    parts = []
    for block, offset, size in zip(G.to_delayed().ravel(), offsets, G.chunks[0], strict=True):
        local = _block_rows(rows, int(offset), size)
        n = size if local is None else len(local)
        if n:
            parts.append(
                block_task(
                    queries,
                    block,
                    int(offset),
                    min(k, n),
                    metric,
                    local,
                    query_rows,
                    n_jobs,
                    working_memory,
                )  # fmt: skip
            )
    return _tree(parts, lambda p: merge(p, k), split_every)


def _check_search_args(G, k, metric, rows, split_every):
    n = G.shape[0]
    if not callable(metric) and metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; choose one of {METRICS} or a callable.")
    if rows is not None:
        rows = np.asarray(rows)
        if rows.dtype == np.bool_:
            if rows.shape != (n,):
                raise ValueError(f"A row mask needs {n} entries; got shape {rows.shape}.")
            rows = np.flatnonzero(rows)
        elif rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise ValueError("rows must be a 1-D array of row indices or a boolean mask.")
        rows = np.unique(rows.astype(np.int64))
        if rows.size and (rows[0] < 0 or rows[-1] >= n):
            raise ValueError(f"Row indices must lie in [0, {n}); got {rows[0]} to {rows[-1]}.")
    n_candidates = n if rows is None else len(rows)
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 1 <= k <= n_candidates:
        what = "catalogue's" if rows is None else "selected"
        raise ValueError(f"k must be an int from 1 to the {what} {n_candidates} rows; got {k!r}.")
    if not isinstance(split_every, numbers.Integral) or split_every < 2:
        raise ValueError(f"split_every must be an int >= 2; got {split_every!r}.")
    return int(k), rows


def _scale(part, metric, dtype, n_features):
    """Raw distances as the in-memory search reports them (scaled once, at the end)."""
    raw, ind = part
    if (ind < 0).any():  # only a self-query can come short (its own row excluded)
        raise ValueError(
            "Too few candidate rows besides each query's own row for the neighbours asked."
        )
    like = GalleryIndex(np.empty((0, n_features), dtype))  # only its dtype and width count
    return scale_distances(raw, metric, like), ind


def blockwise_topk(
    Q,
    G,
    k,
    metric="mse",
    *,
    rows=None,
    query_rows=None,
    split_every=8,
    n_jobs=1,
    working_memory=None,
    compute=True,
):
    """Exact ``k`` nearest rows of a catalogue held as a Dask array, block by block.

    Each block of catalogue rows is searched on the workers with the exact kernel
    (:func:`galaxysim.neighbors.pairwise_distances` computes the same distances), its
    indices offset to catalogue indices; the per-block results are then merged in a
    tree (``split_every`` lists per merge), ordering equal distances by catalogue
    index. Blocks are compared and merged by their raw distances (exact integers for
    uint8 rows), scaled once at the end, so the result is the one of the in-memory
    search of the whole catalogue: same indices, same distances, ties included. The
    queries are one node of the task graph, sent once rather than with every block.

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
        Number of neighbours, at most the number of candidate rows.
    metric : str or callable, default="mse"
        One of :data:`galaxysim.neighbors.METRICS`, or a callable on two rows.
    rows : ndarray of int or bool, default=None
        Search only these catalogue rows (indices, or a mask of ``n_catalogue``);
        indices still refer to the whole catalogue. Each block gets only its own.
    query_rows : ndarray of int of shape (n_queries,), default=None
        Catalogue index of each query when the queries are catalogue rows (-1 for
        none): a query never finds its own row.
    split_every : int, default=8
        Per-block results merged per task of the tree (at least 2).
    n_jobs : int or None, default=1
        Threads of the kernel within each task (joblib's meaning; ``None``: numba's
        setting). The default leaves the parallelism to Dask, one block per worker
        thread.
    working_memory : float, default=None
        MiB that the temporaries of one tile may take within a task (see
        :class:`~galaxysim.neighbors.NearestGalaxy`).
    compute : bool, default=True
        Compute and return arrays; ``False`` returns a :class:`dask.delayed.Delayed`
        of the ``(dist, ind)`` tuple, to compute together with other work.

    Returns
    -------
    dist : ndarray of shape (n_queries, k), float64
        Distances, ascending, as the in-memory search reports them.
    ind : ndarray of shape (n_queries, k), int64
        Catalogue indices; equal distances are ordered by index.

    Raises
    ------
    ValueError
        A float block holds NaN or infinite values (raised by its task, naming the
        rows), or the arguments are out of range.

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
    >>> blockwise_topk(np.array([[10]], np.uint8), da.from_array(G, chunks=2), 2, "maxabs",
    ...                rows=[0, 3, 4])[1]
    array([[4, 0]])
    """
    dask, _ = _dask("blockwise_topk")
    G = check_row_blocks(G, "blockwise_topk")
    Q = np.ascontiguousarray(Q)
    if Q.ndim != 2 or Q.shape[1] != G.shape[1]:
        raise ValueError(
            f"Queries have shape {Q.shape}; expected (n_queries, {G.shape[1]}) rows like the "
            "catalogue's. Transform them with the same steps as the catalogue."
        )
    k, rows = _check_search_args(G, k, metric, rows, split_every)
    if query_rows is not None:
        query_rows = np.asarray(query_rows, dtype=np.intp)
        if query_rows.shape != (len(Q),):
            raise ValueError(
                f"query_rows needs one entry per query ({len(Q)}); got {query_rows.shape}."
            )
    queries = dask.delayed(Q, pure=True)  # one node: sent once, not with every block
    graph = _topk_graph(queries, query_rows, G, k, metric, rows, split_every, n_jobs,
                        working_memory)  # fmt: skip
    result = dask.delayed(_scale, pure=True)(graph, metric, G.dtype, G.shape[1])
    return dask.compute(result)[0] if compute else result


def self_topk(G, k, metric, *, rows=None, split_every=8, n_jobs=1, working_memory=None):
    """Exact top-k of every catalogue row among the others (``kneighbors(X=None)``).

    Each block of rows is one node of queries, searched over every block (among
    ``rows`` only, when given); one graph, computed on the active scheduler.
    """
    dask, _ = _dask("NearestGalaxy.kneighbors")
    G = check_row_blocks(G, "NearestGalaxy.kneighbors")
    k, rows = _check_search_args(G, k, metric, rows, split_every)
    offsets = np.cumsum((0, *G.chunks[0]))[:-1]
    graphs = [
        _topk_graph(
            block,
            np.arange(offset, offset + size, dtype=np.intp),
            G,
            k,
            metric,
            rows,
            split_every,
            n_jobs,
            working_memory,
        )  # fmt: skip
        for block, offset, size in zip(G.to_delayed().ravel(), offsets, G.chunks[0], strict=True)
        if size
    ]
    parts = dask.compute(*graphs)
    raw = np.concatenate([p[0] for p in parts])
    ind = np.concatenate([p[1] for p in parts])
    return _scale((raw, ind), metric, G.dtype, G.shape[1])


def per_class_topk(Q, G, codes, n_classes, metric, *, split_every=8, n_jobs=1,
                   working_memory=None):  # fmt: skip
    """The closest row of every label (``codes``, one per catalogue row), for each query,
    reading each block once."""
    dask, _ = _dask("NearestGalaxy.nearest_per_class")
    G = check_row_blocks(G, "NearestGalaxy.nearest_per_class")
    queries = dask.delayed(np.ascontiguousarray(Q), pure=True)
    task = dask.delayed(_block_per_class, pure=True)
    offsets = np.cumsum((0, *G.chunks[0]))[:-1]
    parts = [
        task(
            queries,
            block,
            int(offset),
            codes[offset : offset + size],
            n_classes,
            metric,
            n_jobs,
            working_memory,
        )  # fmt: skip
        for block, offset, size in zip(G.to_delayed().ravel(), offsets, G.chunks[0], strict=True)
        if size
    ]
    merged = _tree(parts, dask.delayed(_merge_per_class, pure=True), split_every)
    return _scale(dask.compute(merged)[0], metric, G.dtype, G.shape[1])


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
