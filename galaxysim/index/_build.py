"""build_index: every method's rows computed once, block-wise on Dask, written as a unit."""

import json
import numbers
import os
import shutil
import sys
import uuid
from collections.abc import Mapping

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from galaxysim.index._format import (
    FAISS_DIR,
    FORMAT,
    FORMAT_VERSION,
    IDENTIFIERS,
    MANIFEST,
    MARKER,
    MODELS_DIR,
    ROWS_DIR,
    describe_files,
    fingerprint,
    now_utc,
    versions,
)
from galaxysim.index._steps import (
    ALGORITHMS,
    APPROXIMATE,
    MODEL_CLASSES,
    fitted_state,
    prepare_steps,
    split_steps,
)
from galaxysim.index._table import write_identifiers
from galaxysim.pipeline import DEEP_METHODS, METHODS, PIXEL_METHODS, make_method_search
from galaxysim.utils._io import atomic_write
from galaxysim.utils._optional import import_optional
from galaxysim.utils._progress import progress
from galaxysim.utils._staging import StagedFolder

__all__ = ["build_index"]

_BLOCK_SIZE = 1024
# float64 temporaries of one fit of a step fitted on the rows (StandardScaler); larger
# sets of rows are fitted in chunks of this size with partial_fit
_FIT_BYTES = 1 << 29
_IO_ROWS_BYTES = 1 << 26  # rows read and rewritten at a time by the in-place transforms
_WRITE = "galaxysim-index-write"


# ---------------------------------------------------------------- arguments
def _check_methods(methods):
    if isinstance(methods, str):
        methods = methods.split(",")
    try:
        methods = [str(m).strip().lower() for m in methods]
    except TypeError:
        raise TypeError(
            f"methods must be a list of method names or a comma-separated string; got {methods!r}."
        ) from None
    methods = list(dict.fromkeys(m for m in methods if m))
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(
            f"Unknown or no methods {bad or methods!r}; choose from {', '.join(METHODS)}."
        )
    return methods


def _check_algorithms(algorithm, methods):
    if isinstance(algorithm, Mapping):
        unknown = sorted(set(algorithm) - set(methods))
        if unknown:
            raise ValueError(
                f"algorithm names methods that are not indexed: {unknown}; the methods are "
                f"{methods}."
            )
        chosen = {m: algorithm.get(m, "brute") for m in methods}
    else:
        chosen = dict.fromkeys(methods, algorithm)
    for method, alg in chosen.items():
        if alg not in ALGORITHMS:
            raise ValueError(f"algorithm for {method!r} must be one of {ALGORITHMS}; got {alg!r}.")
        if alg in APPROXIMATE and method in PIXEL_METHODS:
            raise ValueError(
                f"Approximate search ({alg!r}) is for embeddings (the methods "
                f"{', '.join(DEEP_METHODS)}); the {method!r} method's pixel rows are "
                "searched exactly (algorithm='brute')."
            )
    return chosen


def _check_models(models, methods):
    if models is None:
        models = {}
    if not isinstance(models, Mapping):
        raise TypeError(
            f"models must be a dict {{method: fitted model or model file}}; got "
            f"{type(models).__name__}."
        )
    unknown = sorted(set(models) - set(methods))
    if unknown:
        raise ValueError(
            f"models names methods that are not indexed: {unknown}; the methods are {methods}."
        )
    pixel = sorted(set(models) & set(PIXEL_METHODS))
    if pixel:
        raise TypeError(f"The pixel methods {pixel} take no model.")
    deep = [m for m in methods if m in DEEP_METHODS]
    if not deep:
        return {}, {}
    import galaxysim.nn

    out, files = {}, {}
    for method in deep:
        cls = getattr(galaxysim.nn, MODEL_CLASSES[method])
        if method not in models:
            raise ValueError(
                f"The {method!r} method needs a fitted model: pass models={{{method!r}: "
                f"model}}, a fitted {cls.__name__} or the path of its model file (from "
                "galaxysim.nn.save_model or `galaxysim train`)."
            )
        model = models[method]
        if isinstance(model, str | os.PathLike):
            files[method] = model
            model = galaxysim.nn.load_model(model, kind=cls)
        if type(model) is not cls:
            article = "an" if cls.__name__[0] in "AEIOU" else "a"
            raise TypeError(
                f"The {method!r} method embeds with {article} {cls.__name__}; "
                f"models[{method!r}] is {type(model).__name__!r}."
            )
        check_is_fitted(
            model,
            "net_",
            msg=(
                f"The {cls.__name__} of the {method!r} method is not fitted; an index embeds "
                "the catalogue with a fitted model. Fit it on images in memory (or with "
                "`galaxysim train`) first."
            ),
        )
        out[method] = model
    return out, files


_APPROXIMATE_PARAMS = ("nlist", "nprobe", "M", "ef_construction", "ef_search", "random_state",
                       "n_jobs")  # fmt: skip


def _check_approximate(params, algorithms, recipes):
    """``{method: its NearestGalaxy set to the approximate algorithm}``, checked now."""
    approximate = [m for m, a in algorithms.items() if a in APPROXIMATE]
    params = {} if params is None else dict(params)
    if not approximate:
        if params:
            raise ValueError("approximate_params are for methods searched with 'ivf' or 'hnsw'.")
        return {}
    for bad in ("kind", "algorithm", "metric"):
        if bad in params:
            raise TypeError(
                f"approximate_params sets {bad!r}: the algorithm comes from algorithm= and "
                "the metric from the method's recipe."
            )
    unknown = sorted(set(params) - set(_APPROXIMATE_PARAMS))
    if unknown:
        raise TypeError(
            f"approximate_params: unknown {unknown}; they are {', '.join(_APPROXIMATE_PARAMS)}."
        )
    params = {"random_state": 0, **params}  # a build is reproducible unless asked otherwise
    out = {}
    for method in approximate:
        search = clone(recipes[method][-1]).set_params(algorithm=algorithms[method], **params)
        try:
            search._validate_params()
        except ValueError as exc:  # InvalidParameterError
            raise ValueError(f"approximate_params: {exc}") from None
        out[method] = search
    import_optional("faiss", "Approximate search (algorithm 'ivf' or 'hnsw')")
    return out


def _open(catalogue, *, crop, image_size, block_size, labels_csv, label_column):
    if isinstance(catalogue, Mapping):
        needed = ("images", "take", "open_params", "source", "kind", "identifiers")
        missing = [k for k in needed if k not in catalogue]
        if missing:
            raise TypeError(
                "catalogue must be a path or a catalogue opened by galaxysim.datasets."
                f"open_catalogue; this mapping lacks {missing}."
            )
        given = {
            "crop": crop != "auto",
            "image_size": image_size != 64,
            "block_size": block_size is not None,
            "labels_csv": labels_csv is not None,
            "label_column": label_column is not None,
        }
        if any(given.values()):
            raise TypeError(
                f"catalogue is already opened, so {[k for k, v in given.items() if v]} cannot "
                "change how; pass them to open_catalogue, or pass the catalogue's path."
            )
        return catalogue
    if not isinstance(catalogue, str | os.PathLike):
        raise TypeError(
            "catalogue must be the path of a catalogue (HDF5 file, Zarr store or folder of "
            f"images) or the result of open_catalogue; got {type(catalogue).__name__}."
        )
    from galaxysim.datasets import open_catalogue

    return open_catalogue(
        catalogue,
        crop=crop,
        image_size=image_size,
        block_size=_BLOCK_SIZE if block_size is None else block_size,
        labels_csv=labels_csv,
        label_column=label_column,
    )


# ---------------------------------------------------------------- the scheduler
def _distributed_client(client):
    """The ``distributed.Client`` that runs the build, or ``None`` for a local scheduler.

    A given client is used for the blocks without making it dask's scheduler (that is
    process-wide configuration, which worker processes started meanwhile would inherit).
    """
    dask = import_optional("dask", "build_index")
    if client is not None:
        distributed = import_optional("distributed", "build_index(client=...)")
        if not isinstance(client, distributed.Client):
            raise TypeError(
                f"client must be a distributed.Client; got {type(client).__name__}. For a "
                "local scheduler leave client=None and set it with dask.config.set."
            )
        return client
    distributed = sys.modules.get("distributed")
    owner = getattr(dask.base.get_scheduler(), "__self__", None)
    return owner if distributed is not None and isinstance(owner, distributed.Client) else None


def _run(tasks, client, verbose):
    """Compute the write tasks, with a bar of the blocks written."""
    dask = import_optional("dask", "build_index")
    keys = {t.key for t in tasks}
    with progress(total=len(tasks), desc="index: blocks", verbose=verbose, unit="block") as bar:
        if client is None:
            from dask.callbacks import Callback

            def done(key, result, dsk, state, worker_id):
                if key in keys:
                    bar.update(1)

            with Callback(posttask=done):
                dask.compute(*tasks)
            return
        from distributed import as_completed

        futures = client.compute(tasks)
        try:
            for future in as_completed(futures, loop=client.loop):
                future.result()  # raises the block's error, with its message
                bar.update(1)
        except BaseException:
            client.cancel(futures)
            raise


# ---------------------------------------------------------------- the rows
def _create_rows(path, shape, dtype):
    """A ``.npy`` file of ``shape`` (its data not yet written); the data's byte offset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
    offset = rows.offset
    del rows
    return offset


def _write_rows(path, offset, start, block, n_features, dtype):
    """Write rows ``start:start+len(block)`` of a ``.npy`` file (one task per block)."""
    block = np.asarray(block)
    if block.ndim != 2 or block.shape[1] != n_features or block.dtype != dtype:
        raise ValueError(
            f"A block of rows has shape {block.shape} and dtype {block.dtype}; the index "
            f"expects ({len(block)}, {n_features}) {np.dtype(dtype)} rows like the first block."
        )
    block = np.ascontiguousarray(block)
    with open(path, "r+b") as f:
        f.seek(offset + start * block.itemsize * n_features)
        f.write(memoryview(block).cast("B"))
    return len(block)


def _batch_aligned(images, model):
    """``images`` in blocks that are whole inference batches of ``model``, so that every
    image is embedded in the same batch as in one call on the whole catalogue (results
    depend on a batch's size in the last bits)."""
    from galaxysim.nn._tensors import BF16_INFER_BATCH_SIZE, INFER_BATCH_SIZE

    batch = INFER_BATCH_SIZE if model.precision == "float32" else BF16_INFER_BATCH_SIZE
    chunks = images.chunks[0]
    if all(c % batch == 0 for c in chunks[:-1]):
        return images
    return images.rechunk({0: -(-max(chunks) // batch) * batch})


def _fit_on_rows(step, path):
    """Fit ``step`` on the stored rows (whole when small, else chunks with partial_fit)
    and transform them in place; the step's fitted state as JSON."""
    rows = np.load(path, mmap_mode="r")
    (n, d), dtype = rows.shape, rows.dtype
    chunk = max(1, _FIT_BYTES // (8 * d))
    if n <= chunk:
        step.fit(np.asarray(rows))
    elif hasattr(step, "partial_fit"):
        for s in range(0, n, chunk):
            step.partial_fit(np.asarray(rows[s : s + chunk]))
    else:
        raise ValueError(
            f"{type(step).__name__} cannot be fitted on {n} rows in bounded memory "
            "(it has no partial_fit)."
        )
    io_rows = max(1, _IO_ROWS_BYTES // (rows.itemsize * d))
    offset = rows.offset
    for s in range(0, n, io_rows):
        out = np.asarray(step.transform(np.array(rows[s : s + io_rows])))
        _write_rows(path, offset, s, out.astype(dtype, copy=False), d, dtype)
    del rows
    return fitted_state(step)


# ---------------------------------------------------------------- the build
def build_index(
    catalogue,
    methods,
    out,
    *,
    models=None,
    algorithm="brute",
    approximate_params=None,
    crop="auto",
    image_size=64,
    block_size=None,
    labels_csv=None,
    label_column=None,
    client=None,
    verbose=1,
):
    """Compute the rows of every search method over a catalogue once; write a search index.

    The catalogue is read lazily (:func:`galaxysim.datasets.open_catalogue`) and each
    method's rows are computed block by block on Dask, on the active scheduler
    (threads by default, ``dask.config.set(scheduler="processes")``, a default
    ``distributed.Client``) or on ``client``: pixel methods store the flattened framed
    pixels (uint8, shared by ``"mse"`` and ``"maxabs"``), deep methods the rows of
    their recipe's transform steps (:func:`galaxysim.pipeline.make_method_search`):
    the fitted model's output, computed on the workers by
    :func:`~galaxysim.neighbors.embed_blocks`, then, for ``"ae"`` and ``"vae"``, the
    recipe's ``StandardScaler`` fitted on those rows. Each block of images is read
    once, whatever the number of methods. The workers write their blocks straight
    into the index's row files, so they must see the index's folder (and the
    catalogue) at the same paths: one machine, or a shared file system.

    The index is written into a locked staging folder beside ``out`` and swapped in
    whole at the end (see :mod:`galaxysim.index` for its layout): an interrupted or
    failed build leaves ``out`` as it was (absent, or the previous index) and never a
    folder that :meth:`SearchIndex.open` accepts; the next build removes the staging
    folders of builds that died, and restarts from the beginning (nothing of an
    interrupted build is reused). An existing ``out`` must be an earlier index
    holding only its own files; it is replaced whole.

    Parameters
    ----------
    catalogue : str, path-like or Bunch
        An HDF5 file, Zarr store or folder of images (opened with ``crop``,
        ``image_size``, ``block_size``, ``labels_csv`` and ``label_column``), or a
        catalogue already opened by :func:`~galaxysim.datasets.open_catalogue` (those
        options must then be left at their defaults).
    methods : str or list of str
        Methods of :data:`galaxysim.pipeline.METHODS`, as a list or comma-separated
        (``"mse,ae"``).
    out : str or path-like
        The index folder: new, empty, or an earlier index (replaced whole).
    models : dict, default=None
        ``{method: model}`` for every deep method: a fitted CNNScorer (``"cnn"``),
        AEEncoder (``"ae"``) or VAEEncoder (``"vae"``), or the path of its model file
        (:func:`galaxysim.nn.save_model`, copied into the index with its provenance).
        The index embeds with it; it does not train.
    algorithm : {"brute", "ivf", "hnsw"} or dict, default="brute"
        How each method is searched: exact brute force over the stored rows, or a faiss
        index built on them (deep methods only), saved in the index. A dict gives
        ``{method: algorithm}`` (others ``"brute"``).
    approximate_params : dict, default=None
        Parameters of the approximate search of
        :class:`~galaxysim.neighbors.NearestGalaxy` (``nlist``, ``nprobe``, ``M``,
        ``ef_construction``, ``ef_search``, ``random_state``, ``n_jobs``) for the
        methods searched with ``"ivf"`` or ``"hnsw"``; the faiss index is built by
        the method's ``NearestGalaxy`` on the stored rows. ``random_state`` defaults
        to 0 here, so that two builds give the same index; ``n_jobs`` is faiss's
        threads for the build (a search uses :meth:`SearchIndex.open`'s).
    crop, image_size, block_size, labels_csv, label_column : see open_catalogue
        How a catalogue given by its path is opened, as in
        :func:`~galaxysim.datasets.open_catalogue` (``block_size=None``: 1024). Deep
        methods regroup the blocks into whole inference batches of their model.
    client : distributed.Client, default=None
        Run on this cluster; ``None`` runs on the active Dask scheduler.
    verbose : int, default=1
        Show a progress bar of the blocks written (0: silent).

    Returns
    -------
    path : pathlib.Path
        The index folder, absolute; open it with :meth:`SearchIndex.open`.

    Raises
    ------
    ValueError
        Unknown methods, a deep method without a model, approximate search of a pixel
        method, an unsuitable ``out``; reading a block of the catalogue that is
        corrupt (the message names the file and the images).
    TypeError
        A model of the wrong class, arguments of the wrong type.
    ImportError
        Dask or pyarrow (``pip install galaxysim[dask]``), or faiss for ``"ivf"`` and
        ``"hnsw"`` (``pip install galaxysim[faiss]``), is missing.

    See Also
    --------
    SearchIndex : Open the index and search it.
    """
    methods = _check_methods(methods)
    algorithms = _check_algorithms(algorithm, methods)
    models, model_files = _check_models(models, methods)
    recipes = {m: make_method_search(m, model=models.get(m)) for m in methods}
    approx = _check_approximate(approximate_params, algorithms, recipes)
    if not isinstance(verbose, numbers.Integral):
        raise TypeError(f"verbose must be an int; got {verbose!r}.")
    import_optional("pyarrow", "Writing a search index")
    active = _distributed_client(client)
    cat = _open(
        catalogue,
        crop=crop,
        image_size=image_size,
        block_size=block_size,
        labels_csv=labels_csv,
        label_column=label_column,
    )
    folder = StagedFolder(out, marker=MARKER, what="search index")
    try:
        manifest = _build(
            cat, recipes, algorithms, models, model_files, approx, folder.staging, active, verbose
        )
        with atomic_write(folder.staging / MANIFEST, mode="w") as f:
            json.dump(manifest, f, indent=1)
        return folder.commit()
    except BaseException:
        folder.discard()
        raise


def _build(cat, recipes, algorithms, models, model_files, approx, staging, client, verbose):
    """Write everything but the manifest into ``staging``; return the manifest."""
    import dask

    from galaxysim.neighbors import embed_blocks

    images = cat.images
    n, image_shape = int(images.shape[0]), [int(s) for s in images.shape[1:]]

    catalogue = fingerprint(cat)
    write_identifiers(staging / IDENTIFIERS, cat)

    plans, outputs = {}, {}
    for method, recipe in recipes.items():
        blockwise, fitted = split_steps(recipe)
        prepare_steps(recipe[:blockwise], image_shape)
        key = "pixels" if method in PIXEL_METHODS else method
        rel = f"{ROWS_DIR}/{key}.npy"
        if key not in outputs:
            source = images if method in PIXEL_METHODS else _batch_aligned(images, models[method])
            outputs[key] = (rel, embed_blocks(recipe[:blockwise], source))
        plans[method] = (recipe, rel, fitted)

    token = uuid.uuid4().hex[:12]  # keys of this build only, on a shared cluster too
    write = dask.delayed(_write_rows, pure=True)
    tasks = []
    for key, (rel, rows) in outputs.items():
        path = staging / rel
        n_features, dtype = int(rows.shape[1]), rows.dtype
        offset = _create_rows(path, rows.shape, dtype)
        starts = np.cumsum((0, *rows.chunks[0]))[:-1]
        for b, (block, start) in enumerate(zip(rows.to_delayed().ravel(), starts, strict=True)):
            tasks.append(
                write(
                    str(path),
                    offset,
                    int(start),
                    block,
                    n_features,
                    dtype,
                    dask_key_name=f"{_WRITE}-{token}-{key}-{b}",
                )
            )
    _run(tasks, client, verbose)

    entries = {}
    for method, (recipe, rel, fitted) in plans.items():
        path = staging / rel
        states = {name: _fit_on_rows(recipe.named_steps[name], path) for name in fitted}
        rows = np.load(path, mmap_mode="r")
        entry = {
            "metric": recipe[-1].metric,
            "steps": [name for name, _ in recipe.steps],
            "rows": rel,
            "dtype": rows.dtype.str,
            "shape": [int(s) for s in rows.shape],
            "fitted_steps": states,
            "algorithm": algorithms[method],
            "approximate": None,
            "model": None,
        }
        if method in approx:
            rel_faiss = f"{FAISS_DIR}/{method}.npz"
            index = approx[method].fit(rows).approximate_index_
            index.save(staging / rel_faiss)
            entry["approximate"] = {"file": rel_faiss, "params": index._json_params()}
        del rows
        if method in models:
            from galaxysim.nn import save_model
            from galaxysim.nn._persistence import read_model_header

            rel_model = f"{MODELS_DIR}/{method}.safetensors"
            if method in model_files:  # the file itself: its provenance with it
                (staging / MODELS_DIR).mkdir(exist_ok=True)
                shutil.copyfile(model_files[method], staging / rel_model)
            else:
                save_model(models[method], staging / rel_model)
            header = read_model_header(staging / rel_model)
            entry["model"] = {
                "file": rel_model,
                "class": header["estimator"],
                "params": header["params"],
            }
        entries[method] = entry

    params = cat.open_params
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": now_utc(),
        "versions": versions(),
        "catalogue": catalogue,
        "framing": {"crop": params["crop"], "image_size": params["image_size"]},
        "labels": {
            "labels_csv": params["labels_csv"],
            "label_column": params["label_column"],
            "target_names": None
            if cat.target_names is None
            else [str(v) for v in cat.target_names],
        },
        "n_samples": n,
        "image_shape": image_shape,
        "block_size": int(max(images.chunks[0])),
        "methods": entries,
        "files": describe_files(staging),
    }
