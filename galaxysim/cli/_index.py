"""``galaxysim index`` and ``galaxysim search --index``: persisted search indexes.

``galaxysim index --catalog PATH --method METHODS --out INDEX/`` opens the catalogue
lazily (:func:`galaxysim.datasets.open_catalogue`, with ``search``'s data options) and
writes a search index of every method (:func:`galaxysim.index.build_index`): on the
local Dask scheduler, on a local cluster of ``--workers N`` processes, or on the
``distributed`` cluster at ``--scheduler ADDRESS``. The deep methods embed with the
models of ``--model-dir`` (checked as ``search --model-dir`` checks them), and a model
missing there is trained first, as ``search`` trains it (on the catalogue loaded into
memory). The index is written as a unit: Ctrl-C (exit 130) or an error leaves no index
that a search trusts, and any earlier index at ``--out`` as it was.

``galaxysim search --index INDEX/`` answers from the index without reading the
catalogue's pixels: the queries are framed as a search of the catalogue frames them
(``--crop``, ``--reframe``; the size is the index's), a catalogue member
(``index:N``, ``file:NAME``, ``radec:RA,DEC``) is found in the index's identifier table,
and the tables, ``results.csv`` and ``results.json`` are those of ``search --catalog``
with the same options. Only the images shown are read from the catalogue: the member
queries' and, for ``--out``, the neighbours'.
"""

import contextlib
import logging
import time
from pathlib import Path

import numpy as np

from galaxysim.cli._catalogue import Catalogue
from galaxysim.cli._checks import (
    NO_LABELS,
    WHOLE_FRAME,
    UserError,
    check_deep_image_size,
    check_input,
    check_numbers,
    check_output_folder,
    check_query,
    check_report_folder,
)
from galaxysim.cli._main import (
    _add_data_options,
    _add_model_options,
    _model_folder,
    build_parser,
    deep_model,
    load_catalogue,
    parse_methods,
)
from galaxysim.pipeline import DEEP_METHODS

__all__ = [
    "IndexSearch",
    "add_index_parser",
    "add_search_index_option",
    "check_args",
    "cmd_index",
    "index_catalogue",
]


# ------------------------------------------------------------------ parsing
def add_index_parser(sub):
    """The ``index`` subcommand."""
    p = sub.add_parser(
        "index",
        help="compute every method's search rows of a catalogue once, for search --index",
        description="Write a search index of a catalogue (HDF5 file, Zarr store or "
        "folder of images) for `galaxysim search --index`: every method's rows, the "
        "identifiers and labels, the models and a manifest. The catalogue is read in "
        "blocks (memory stays bounded), on the local Dask scheduler, --workers N local "
        "processes or the cluster at --scheduler. Written as a unit: an interrupted "
        "build leaves no index that a search trusts (an earlier one stays as it was); "
        "run it again to restart.",
    )
    _add_data_options(p)
    p.add_argument(
        "--method",
        default="mse,maxabs",
        help="comma list of methods to index (default: %(default)s)",
    )
    p.add_argument(
        "--out", required=True, help="the index folder: new, empty, or an earlier index (replaced)"
    )
    p.add_argument(
        "--block-size",
        type=int,
        default=1024,
        help="catalogue images per block, one task each (default: %(default)s)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="run on a local Dask cluster of N worker processes (one thread each)",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on the distributed cluster whose scheduler is at ADDRESS "
        "(tcp://host:8786); its workers must see the catalogue and --out at the same paths",
    )
    _add_model_options(p)


def add_search_index_option(s):
    """``search --index``."""
    s.add_argument(
        "--index",
        metavar="INDEX",
        help="search this index (from `galaxysim index`) instead of a catalogue: "
        "its catalogue, framing, labels and models; --method defaults to its methods",
    )


def _defaults(command):
    """The parser's defaults of ``command`` (to tell an option left out)."""
    return build_parser().parse_args([command])


# ------------------------------------------------------------------ checks
def check_args(args):
    """:func:`galaxysim.cli._main.check_args` for ``index`` and ``search --index``."""
    if args.command == "index":
        _check_index(args)
    else:
        _check_search(args)


def _check_index(args):
    args.methods = methods = parse_methods(args.method)
    deep = [m for m in methods if m in DEEP_METHODS]
    check_numbers(args)
    for value, option in ((args.block_size, "--block-size"), (args.workers, "--workers")):
        if value is not None and value < 1:
            raise UserError(f"{option} must be at least 1; got {value}.")
    check_deep_image_size(args, deep)
    if args.catalogue is None:
        raise UserError(
            "index needs --catalog: an HDF5 file, Zarr store or folder of images (the "
            "built-in catalogue is made in memory: search it directly)."
        )
    check_input(args.catalogue, "--catalog", folder_ok=True)
    if args.labels_csv not in (None, NO_LABELS):
        check_input(args.labels_csv, "--labels-csv")
    if args.on_error != "raise":
        raise UserError(
            "index reads every image of the catalogue: --on-error skip is for searches "
            "that load it whole. Move the unreadable images (and their CSV rows) away."
        )
    from galaxysim.index._format import MARKER
    from galaxysim.utils._staging import check_staged_dir

    check_output_folder(args.out, "--out")
    try:
        check_staged_dir(args.out, marker=MARKER, what="search index")
    except ValueError as exc:
        raise UserError(f"--out: {exc}") from None
    folder = _model_folder(args)
    if folder is not None:
        to_train = [m for m in deep if not folder.has(m)]
        if to_train:
            check_output_folder(folder.path, "--model-dir")
            folder.check_writable(to_train)
        folder.preload([m for m in deep if m not in to_train])


def _check_search(args):
    from galaxysim.index import SearchIndex

    defaults = _defaults("search")
    fixed = [
        option
        for option, attr in (
            ("--catalog", "catalogue"),
            ("--labels-csv", "labels_csv"),
            ("--label-column", "label_column"),
            ("--model-dir", "model_dir"),
            ("--epochs", "epochs"),
        )
        if getattr(args, attr) is not None
    ]
    if fixed:
        raise UserError(
            f"--index searches the catalogue, labels and models it was built with; "
            f"leave out {', '.join(fixed)}."
        )
    check_numbers(args)
    path = Path(args.index)
    if not path.is_dir():
        raise UserError(f"--index {path} is not a folder; name a search index folder.")
    try:
        index = SearchIndex.open(path)
    except FileNotFoundError as exc:
        raise UserError(f"--index {path}: {exc}") from None
    size = index.image_shape[0]
    if args.image_size not in (defaults.image_size, size):
        raise UserError(
            f"--index {path} holds {size}x{size} images; leave out --image-size "
            f"{args.image_size} (the queries are framed to the index's size)."
        )
    args.image_size = size
    framing = index.manifest["framing"]["crop"]
    crop = None if args.crop == WHOLE_FRAME else args.crop
    if args.crop is not None and crop != framing:
        built = "--crop none" if framing is None else f"--crop {framing}"
        raise UserError(
            f"--index {path} was built with {built}; give that --crop (it frames query "
            "images as the catalogue's), or leave it out."
        )
    if args.method == defaults.method:
        args.methods = list(index.methods)
    else:
        args.methods = parse_methods(args.method)
        missing = [m for m in args.methods if m not in index.methods]
        if missing:
            raise UserError(
                f"--index {path} has no method {', '.join(missing)}; it holds "
                f"{', '.join(index.methods)} (leave out --method to search them all)."
            )
    for spec in args.query or ["milkyway"]:
        check_query(spec, "--query", folder_ok=True)
    if args.out:
        check_report_folder(args.out, "--out")
    args.search_index = index


# ------------------------------------------------------------------ index
class _Images:
    """The framed images of a catalogue that is not in memory, read when indexed
    (``images[i:i + 1]``, ``images[rows]``) by ``take``: what the commands read of a
    catalogue they do not load (a member query, the images a fingerprint hashes)."""

    dtype = np.dtype(np.uint8)

    def __init__(self, n, image_shape, take):
        self.shape = (int(n), *(int(s) for s in image_shape))
        self._take = take

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        rows = np.arange(self.shape[0])[key]
        return self._take(np.atleast_1d(rows).astype(np.int64)).reshape(
            *np.shape(rows), *self.shape[1:]
        )


def _open_lazy(args):
    from galaxysim.datasets import open_catalogue

    return open_catalogue(
        args.catalogue,
        crop="auto" if args.crop is None else (None if args.crop == WHOLE_FRAME else args.crop),
        image_size=args.image_size,
        block_size=args.block_size,
        labels_csv=False if args.labels_csv == NO_LABELS else args.labels_csv,
        label_column=args.label_column,
        max_pixels=args.max_pixels,
        allow_outside=args.allow_outside,
        encoding=args.encoding,
    )


def _models(args, cat):
    """``{method: model file or fitted model}`` of the deep methods: saved models from
    --model-dir (checked against the catalogue), the others trained as search trains
    them (on the catalogue loaded into memory; saved to --model-dir when given)."""
    deep = [m for m in args.methods if m in DEEP_METHODS]
    folder = _model_folder(args)
    images = _Images(cat.images.shape[0], cat.images.shape[1:], cat.take)
    models, to_train = {}, []
    for method in deep:
        if folder is not None and folder.has(method):
            folder.load(method, images, cat.target)  # the checks of search --model-dir
            models[method] = folder.file(method)  # copied whole, with its provenance
        else:
            to_train.append(method)
    if "cnn" in to_train and cat.target is None:
        raise UserError("the cnn method needs labels (give --labels-csv / --label-column).")
    if to_train:
        loaded = load_catalogue(args)
        for method in to_train:
            models[method] = deep_model(method, args, loaded.images, loaded.target)
    return models


@contextlib.contextmanager
def _client(args):
    """The ``distributed.Client`` of --workers or --scheduler (closed at the end, also
    on Ctrl-C), or None for the local scheduler."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    from galaxysim.utils._optional import import_optional

    distributed = import_optional("distributed", "--workers and --scheduler")
    if args.scheduler is not None:
        try:
            client = distributed.Client(args.scheduler, set_as_default=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"--scheduler {args.scheduler}: cannot connect ({exc}).") from None
        with client:
            yield client
        return
    with (
        distributed.LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


def cmd_index(args):
    from galaxysim.index import build_index

    t0 = time.perf_counter()
    cat = _open_lazy(args)
    models = _models(args, cat)
    with _client(args) as client:
        path = build_index(
            cat,
            args.methods,
            args.out,
            models=models,
            client=client,
            verbose=int(not args.quiet),
        )
    args.stdout.print(
        f"search index of {cat.images.shape[0]} images ({', '.join(args.methods)}) written "
        f"to {path} in {time.perf_counter() - t0:.1f} s"
    )
    return 0


# ------------------------------------------------------------------ search --index
class IndexSearch:
    """One method of a search index, searched as a fitted search pipeline is by
    ``search`` (``top_neighbours``, ``per_class_neighbours``)."""

    def __init__(self, index, method):
        self.index, self.method = index, method

    def kneighbors(self, X, n_neighbors, within=None):
        return self.index.kneighbors(X, method=self.method, k=n_neighbors, within=within)

    def __getitem__(self, step):  # pipe[-1].n_samples_fit_: the stored rows' searcher
        return self.index.search_pipeline(self.method)[step]


class IndexCatalogue(Catalogue):
    """The :class:`Catalogue` of a search index: its identifiers and labels, and its
    images read from the catalogue only when shown."""

    index = None

    def searcher(self, method):
        return IndexSearch(self.index, method)

    def report_images(self, results):
        """``{catalogue index: image}`` of every neighbour of ``results``."""
        shown = np.unique(np.concatenate([np.asarray(r.indices, np.int64) for r in results]))
        return dict(zip(shown.tolist(), self.index.neighbour_images(shown), strict=True))


def index_catalogue(args):
    """The :class:`IndexCatalogue` of ``search --index``."""
    index = args.search_index
    ids = index.identifiers
    columns = {k: ids[k] for k in ("ra", "dec", "redshift") if not np.isnan(ids[k]).all()}
    files = ids["file"] if (ids["file"] != "").any() else None
    labelled = index.target is not None
    cat = IndexCatalogue(
        images=_Images(index.n_samples, index.image_shape, index.neighbour_images),
        target=index.target,
        label_names=[str(n) for n in index.target_names] if labelled else [],
        description=f"{index.catalogue} ({index.n_samples} images), search index {index.path}",
        files=files,
        no_labels="" if labelled else f"the catalogue of the index {index.path} has no labels",
        **columns,
    )
    cat.index = index
    return cat
