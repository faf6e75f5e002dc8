"""``galaxysim`` command line: search, evaluate, and (with galaxysim.nn) train, generate.

Argument parsing and composition of library calls only. galaxysim writes "catalogue"
everywhere; the options keep the shorter spelling of astronomy command lines and
query tools, ``--catalog`` and ``--n-catalog``.

Results are traceable: every neighbour carries its catalogue row index, its file
(folders, relative to the folder), ``ra``/``dec``/``redshift`` (Galaxy10 DECaLS files)
and its label name, in the printed tables, ``results.csv`` (columns ``method, rank,
index, file, ra, dec, redshift, label, distance``, empty where the catalogue lacks one,
and ``query`` last when there are several queries), ``results.json`` and the report. A
query may be a catalogue galaxy (``index:N``, ``file:NAME``, ``radec:RA,DEC``): it is
searched as its catalogue image and left out of its own neighbours.

Everything that can be checked without the data is checked right after parsing
(:func:`check_args`): numbers under their options' names, the files to read, the
folders and files to write, saved models. Exit status: 0, 2 for a user error (one
line on stderr, ``galaxysim <command>: error: ...``; warnings ``galaxysim <command>:
warning: ...``), 130 for Ctrl-C (no file half-written, no model replaced), 141 when
the reader of stdout went away (``galaxysim search | head -1``; the files asked for
are still written).
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from galaxysim import __version__
from galaxysim.cli._catalogue import (
    DEFAULT_RADEC_TOL,
    Catalogue,
    load_catalogue,
    resolve_label,
)
from galaxysim.cli._checks import (
    NO_LABELS,
    UserError,
    check_builtin_catalogue_size,
    check_deep_image_size,
    check_input,
    check_numbers,
    check_output_folder,
    check_output_png,
    check_query,
    check_report_folder,
    cli_message,
    crop_option,
)
from galaxysim.cli._query import add_match_options, check_match_options, load_queries
from galaxysim.cli._serve import add_serve_parser, cmd_serve
from galaxysim.pipeline import DEEP_METHODS, METHODS

__all__ = ["Catalogue", "UserError", "build_parser", "check_args", "load_catalogue", "main"]

DEFAULT_CATALOGUE_SIZE = 3000
DEFAULT_SEED = 0


def _add_data_options(p):
    p.add_argument(
        "--catalog",
        dest="catalogue",
        help="Galaxy10 HDF5 file or image folder (default: the built-in procedural catalogue)",
    )
    p.add_argument(
        "--labels-csv",
        help="CSV with a `file` column and labels (image folders; default: the folder's "
        "labels.csv if any; `none`: no labels)",
    )
    p.add_argument("--label-column", help="label column of the CSV")
    p.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="an unreadable image of a folder, or one its CSV names that is missing, is an "
        "error (raise, the default) or is skipped",
    )
    p.add_argument(
        "--encoding", default="utf-8", help="text encoding of the labels CSV (default: utf-8)"
    )
    p.add_argument(
        "--allow-outside",
        action="store_true",
        help="let a labels CSV you trust name images outside its folder and the image folder",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="largest image read, in pixels (default: twice the limit of Pillow, a guard "
        "against decompression bombs)",
    )
    p.add_argument(
        "--crop",
        type=crop_option,
        default=None,
        help="centre-crop this many source pixels of each catalogue image before resizing, "
        "or `none` for the whole frame (default: 64 for Galaxy10 files, whole frame for "
        "folders); a query image file is always read whole",
    )
    p.add_argument("--image-size", type=int, default=64, help="side of the framed images")
    p.add_argument(
        "--n-catalog",
        dest="n_catalogue",
        type=int,
        default=DEFAULT_CATALOGUE_SIZE,
        help="size of the built-in catalogue (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="galaxysim",
        description="Rank a galaxy catalogue by similarity to a query image.",
    )
    parser.add_argument("--version", action="version", version=f"galaxysim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "search",
        help="find the catalogue galaxies closest to a query",
        description="Find the catalogue galaxies closest to a query image. "
        "With no options: the built-in catalogue and the Milky Way model.",
    )
    _add_data_options(s)
    s.add_argument(
        "--query",
        action="append",
        default=None,
        help="`milkyway`, `milkyway-illustration`, an image file, a folder of images (each "
        "a query), or a catalogue galaxy: `index:N` (its row, from 0), `file:NAME` (an "
        "image of a folder catalogue, by relative path, or by name when unique) or "
        "`radec:RA,DEC` (degrees; the nearest catalogue galaxy within --radec-tol). "
        "Repeat for several queries: one section each in the report, a `query` column "
        "in results.csv. A catalogue galaxy is searched as its catalogue image and is "
        "left out of its own neighbours (default: milkyway)",
    )
    _add_radec_tol(s)
    s.add_argument(
        "--reframe",
        type=float,
        default=None,
        metavar="FRACTION",
        help="shrink each query image to this fraction of the frame and pad it onto "
        "dark sky (for images whose galaxy fills the frame; not catalogue galaxies), "
        "instead of matching it to the catalogue",
    )
    add_match_options(s)
    s.add_argument(
        "--method",
        default="mse,maxabs",
        help=f"comma list of {', '.join(METHODS)} (default: %(default)s)",
    )
    s.add_argument(
        "-k",
        "--k",
        type=int,
        default=None,
        dest="k",
        help="neighbours to show (default: 10; with --per-class, 1 of each label)",
    )
    s.add_argument(
        "--per-class",
        action="store_true",
        help="show the k closest galaxies of every label (ranked within it) instead of "
        "the top k; with --within, of that label only",
    )
    s.add_argument(
        "--within", metavar="LABEL", help="search only galaxies with this label (name or number)"
    )
    s.add_argument(
        "--out",
        help="write results.csv (columns method, rank, index, file, ra, dec, redshift, "
        "label, distance, and query for several queries), results.json, montages and "
        "index.html into this folder (created)",
    )
    _add_model_options(s)
    from galaxysim.cli._index import add_index_parser, add_search_index_option

    add_search_index_option(s)
    add_index_parser(sub)
    add_serve_parser(sub)

    t = sub.add_parser(
        "train",
        help="fit the deep models on a catalogue and save them",
        description="Fit CNN, autoencoder and/or VAE on a catalogue and save "
        "them as cnn.safetensors, ae.safetensors and vae.safetensors (weights, "
        "parameters and versions; loading runs no code) for `search --model-dir`. "
        "The models of one run are saved together: they replace the folder's older "
        "ones only once all are trained, and models.json records the run of each file "
        "(an interrupted train leaves the older models as they were).",
    )
    _add_data_options(t)
    t.add_argument("--method", default="cnn,ae,vae", help="comma list of cnn, ae, vae")
    _add_model_options(t, required=True)

    g = sub.add_parser(
        "generate",
        help="generate galaxies with the VAE",
        description="Generate new galaxies with the VAE: from noise, or "
        "'more like' a query such as the Milky Way.",
    )
    _add_data_options(g)
    g.add_argument(
        "--like",
        default=None,
        help="`milkyway`, `milkyway-illustration`, an image file or a catalogue galaxy "
        "(index:N, file:NAME, radec:RA,DEC) (default: samples from noise)",
    )
    _add_radec_tol(g)
    add_match_options(g)
    g.add_argument("--n", type=int, default=16, help="number of images (default: 16)")
    g.add_argument(
        "--scale",
        type=float,
        default=0.5,
        help="spread around the query in units of the prior (default: 0.5)",
    )
    g.add_argument(
        "--out", default="generated.png", help="the PNG grid, a .png file (default: %(default)s)"
    )
    _add_model_options(g)

    e = sub.add_parser(
        "evaluate",
        help="cross-validated retrieval quality of every method, with an HTML report",
        description="Cross-validate every method's search on a labelled catalogue "
        "(StratifiedKFold; deep models trained on the training folds only): "
        "precision@k per class and balanced, mean average precision, CNN accuracy, "
        "fit and query times. Prints a table and writes an HTML report with "
        "results.csv and results.json. With no options: the built-in catalogue.",
    )
    _add_data_options(e)
    e.add_argument(
        "--method",
        default=",".join(METHODS),
        help="comma list of methods (default: %(default)s)",
    )
    e.add_argument("--folds", type=int, default=3, help="cross-validation folds (default: 3)")
    e.add_argument(
        "-k", "--k", type=int, default=10, dest="k", help="neighbours per query (default: 10)"
    )
    e.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs of the deep models (default: each model's)",
    )
    e.add_argument(
        "--query",
        default="milkyway",
        help="query of the report's neighbour montages and generated images: "
        "`milkyway`, `milkyway-illustration`, an image file or a catalogue galaxy "
        "(index:N, file:NAME, radec:RA,DEC; left out of its own neighbours) "
        "(default: %(default)s)",
    )
    _add_radec_tol(e)
    add_match_options(e)
    e.add_argument(
        "--out",
        default="report/evaluate",
        help="report folder: index.html, PNGs, results.csv, results.json (default: %(default)s)",
    )
    e.set_defaults(model_dir=None, reframe=None)  # never reuse models across folds
    return parser


def _add_radec_tol(p):
    p.add_argument(
        "--radec-tol",
        type=float,
        default=DEFAULT_RADEC_TOL,
        metavar="ARCSEC",
        help="how far from radec:RA,DEC the catalogue galaxy may lie (great-circle "
        "distance, arcsec; default: %(default)g)",
    )


def _add_model_options(p, required=False):
    p.add_argument(
        "--model-dir",
        required=required,
        help="folder of the deep models: load them from here if present, save trained ones "
        "here. Each model file records its training run and the catalogue it was trained "
        "on; a file that models.json does not list (a train stopped while it moved its "
        "models in) is refused, one trained on images of another size too, and one "
        "trained on another catalogue is used with a warning. `search` caches the "
        "catalogue's embeddings in its cache/ folder (keyed by model file and catalogue), "
        "so the next search with them does not encode the catalogue again",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs of the deep models (default: each model's)",
    )


# ------------------------------------------------------------------ data
def _stack(images):
    """One batch of query images; uint8 ones scaled to [0, 1] when others are floats."""
    if len({im.dtype for im in images}) > 1:
        images = [im.astype(np.float32) / 255 if im.dtype == np.uint8 else im for im in images]
    return np.concatenate(images)


def label_namer(names):
    """``label value -> name`` for tables: the class name when known, else the value."""
    if not names:
        return str
    return lambda v: names[v] if 0 <= v < len(names) else str(v)


def parse_methods(text):
    methods = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UserError(f"unknown method(s) {bad or text!r}; choose from {', '.join(METHODS)}.")
    return methods


def _new_model(method, args):
    from galaxysim.nn import AEEncoder, CNNScorer, VAEEncoder

    cls = {"cnn": CNNScorer, "ae": AEEncoder, "vae": VAEEncoder}[method]
    params = {"random_state": args.seed, "verbose": 0 if args.quiet else 1}
    if args.epochs is not None:
        params["max_epochs"] = args.epochs
    return cls(**params)


def _model_folder(args):
    """The :class:`~galaxysim.cli._models.ModelFolder` of --model-dir, or None."""
    if not getattr(args, "model_dir", None):
        return None
    if getattr(args, "model_folder", None) is None:
        from galaxysim.cli._models import ModelFolder

        args.model_folder = ModelFolder(args.model_dir)
    return args.model_folder


def _need_labels_for_cnn(methods, catalogue, folder=None):
    if "cnn" in methods and catalogue.target is None and (folder is None or not folder.has("cnn")):
        raise UserError(f"the cnn method needs labels, and {catalogue.no_labels}.")


def train_model(method, args, X, y):
    """A new deep model of ``method``, trained on ``X`` (and ``y`` for the CNN)."""
    if method == "cnn" and y is None:
        raise UserError("the cnn method needs labels (give --labels-csv / --label-column).")
    model = _new_model(method, args)
    t0 = time.perf_counter()
    model.fit(X, y if method == "cnn" else None)
    print(f"{method}: trained in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return model


def deep_model(method, args, X, y):
    """A fitted deep model: loaded from --model-dir when saved there, else trained, and
    saved there as a training run of one model (see :mod:`galaxysim.cli._models`: an
    interrupted run keeps the old file)."""
    folder = _model_folder(args)
    if folder is not None and folder.has(method):
        return folder.load(method, X, y)
    if folder is None:
        return train_model(method, args, X, y)
    with folder.run(X, y) as add:
        model = train_model(method, args, X, y)
        add(method, model)
    return model


def build_search(method, args, X, y):
    """The search pipeline of one method (images in, ranked catalogue out): the
    library's recipe (:func:`galaxysim.pipeline.make_method_search`).

    Deep models are trained (or loaded from --model-dir) here and frozen, so fitting the
    pipeline only indexes the catalogue.
    """
    from galaxysim.pipeline import make_method_search

    model = deep_model(method, args, X, y) if method in DEEP_METHODS else None
    return make_method_search(method, model=model, n_neighbors=args.k or 10)


def fit_search(method, args, X, y):
    """:func:`build_search` fitted on the catalogue ``X, y``.

    The deep methods' catalogue embeddings (their frozen model step's output) are
    computed behind a progress bar, or read from ``--model-dir``'s cache when a search
    with the same model file and catalogue computed them
    (:meth:`~galaxysim.cli._models.ModelFolder.embeddings`); the rest of the pipeline
    is fitted on them, as the pipeline's own ``fit`` would.
    """
    from galaxysim.cli._models import embed

    pipe = build_search(method, args, X, y)
    if method not in DEEP_METHODS:
        return pipe.fit(X, y)
    step = pipe[0]  # the frozen model: its fit does nothing, its transform embeds
    folder = _model_folder(args)
    if folder is None:
        emb = embed(step, X, desc=f"{method}: embedding the catalogue", verbose=not args.quiet)
    else:
        emb = folder.embeddings(method, step, X, verbose=not args.quiet)
    pipe[1:].fit(emb, y)
    return pipe


def _nearest(pipe, Q, members, k, n_candidates, within=None):
    """Per query: (distances, indices) of the ``k`` nearest candidates (the rows of label
    ``within``, or all), a query's own catalogue row (``members``) left out."""
    extra = any(m is not None for m in members)
    dist, ind = pipe.kneighbors(
        Q, min(k + extra, n_candidates), within=None if within is None else [within]
    )
    out = []
    for d, i, m in zip(dist, ind, members, strict=True):
        keep = i != m if m is not None else np.ones(len(i), bool)
        out.append((d[keep][:k], i[keep][:k], np.arange(1, min(k, keep.sum()) + 1)))
    return out


def top_neighbours(pipe, Q, members, k, y=None, within=None):
    """Per query: (distances, indices, ranks) of the ``k`` nearest (of label ``within``)."""
    n = int(np.count_nonzero(y == within)) if within is not None else pipe[-1].n_samples_fit_
    return _nearest(pipe, Q, members, k, n, within)


def per_class_neighbours(pipe, Q, members, k, y, within=None):
    """Per query: the ``k`` nearest of every label (of ``within`` only), ranked within
    their label; labels in the order of their nearest galaxy."""
    found = [[] for _ in members]
    for c in [within] if within is not None else np.unique(y).tolist():
        n_c = int(np.count_nonzero(y == c))
        for blocks, hit in zip(found, _nearest(pipe, Q, members, k, n_c, int(c)), strict=True):
            if len(hit[1]):
                blocks.append(hit)
    out = []
    for blocks in found:
        blocks.sort(key=lambda b: b[0][0])  # stable: equal nearest distances by label
        out.append(tuple(np.concatenate([b[j] for b in blocks]) for j in range(3)))
    return out


# ------------------------------------------------------------------ commands
def cmd_search(args):
    from galaxysim.report import SearchResult, format_table, write_search_report

    methods = args.methods
    if args.index:
        from galaxysim.cli._index import index_catalogue
    cat = index_catalogue(args) if args.index else load_catalogue(args)
    X, y = cat.images, cat.target
    queries = load_queries(args, cat, args.query or ["milkyway"], folders=True)
    if (args.per_class or args.within) and y is None:
        raise UserError(f"--per-class and --within need labels, and {cat.no_labels}.")
    _need_labels_for_cnn(methods, cat, _model_folder(args))
    within = resolve_label(args.within, cat.label_names, y) if args.within else None
    name_of = label_namer(cat.label_names)
    k = args.k if args.k is not None else (1 if args.per_class else 10)
    Q, members = _stack([q.image for q in queries]), [q.member for q in queries]
    several = len(queries) > 1
    results = []
    for method in methods:
        if args.stdout.closed and not args.out:
            break  # nobody reads the tables and there is no report to write
        t0 = time.perf_counter()
        pipe = cat.searcher(method) if args.index else fit_search(method, args, X, y)
        if args.per_class:
            found = per_class_neighbours(pipe, Q, members, k, y, within)
        else:
            found = top_neighbours(pipe, Q, members, k, y, within)
        elapsed = time.perf_counter() - t0
        for query, (dist, ind, ranks) in zip(queries, found, strict=True):
            if args.per_class:
                what = "galaxy" if k == 1 else str(k)
                title = f"{method}: closest {what} of each class"
            else:
                title = f"{method}: top {len(ind)}"
            if within is not None:
                title += f" within {name_of(within)}"
            if several:
                title += f" for {query.name}"
            if query.member is not None:
                title += f", galaxy {query.member} itself left out"
            res = SearchResult(
                method,
                dist,
                ind,
                [cat.label(i) for i in ind],
                title=f"{title} ({elapsed:.2f} s)",
                identifiers=cat.identifiers(ind),
                query=query.name,
                ranks=ranks,
            )
            results.append(res)
            args.stdout.print(format_table(res))
            args.stdout.print()
    if args.out:
        summary = {
            "catalogue": cat.description,
            "queries" if several else "query": "; ".join(q.description for q in queries),
            "methods": ", ".join(methods),
            "image size": f"{X.shape[1]}x{X.shape[2]}",
        }
        index = write_search_report(
            args.out,
            results,
            queries=[q.as_report() for q in queries],
            catalogue_images=cat.report_images(results) if args.index else X,
            summary=summary,
        )
        args.stdout.print(f"report written to {index}")
    return 0


def cmd_train(args):
    cat = load_catalogue(args)
    X, y = cat.images, cat.target
    _need_labels_for_cnn(args.methods, cat)  # before any training
    args.stdout.print(f"catalogue: {cat.description}")
    # one run: the saved models are replaced only once every model is trained
    with _model_folder(args).run(X, y) as add:
        for method in args.methods:
            add(method, train_model(method, args, X, y))
    return 0


def cmd_generate(args):
    from galaxysim.plotting import plot_generated
    from galaxysim.report import save_figure

    cat = load_catalogue(args)
    X, y, cat_desc = cat.images, cat.target, cat.description
    vae = deep_model("vae", args, X, y)
    if args.like is None:
        images, title = vae.sample(args.n, random_state=args.seed), "VAE samples from noise"
    else:
        args.reframe = None
        (like,) = load_queries(args, cat, [args.like], "--like")
        query, q_desc = like.image, like.description
        images = vae.generate_like(query, args.n, scale=args.scale, random_state=args.seed)
        title = f"more like the {q_desc} (scale {args.scale:g})"
    out = Path(args.out)
    save_figure(plot_generated(images, title=title), out)  # atomically
    args.stdout.print(
        f"{len(images)} generated images written to {out} (VAE trained on {cat_desc})"
    )
    return 0


def cmd_evaluate(args):
    from galaxysim.model_selection import cross_validate_search
    from galaxysim.report import SearchResult, format_scores, write_evaluation_report
    from galaxysim.utils._progress import progress

    methods = args.methods
    cat = load_catalogue(args)
    X, y, names, cat_desc = cat.images, cat.target, cat.label_names, cat.description
    if y is None:
        raise UserError(f"evaluate needs labels, and {cat.no_labels}.")
    labels, counts = np.unique(y, return_counts=True)
    if len(labels) < 2:
        raise UserError("evaluate needs at least two labels in the catalogue.")
    if counts.min() < args.folds:
        small = labels[np.argmin(counts)]
        raise UserError(
            f"label {small} has only {counts.min()} images, fewer than --folds "
            f"{args.folds}; use fewer folds or a larger catalogue."
        )
    n_train = len(X) - -(-len(X) // args.folds)
    if args.k > n_train:
        raise UserError(f"-k {args.k} exceeds the {n_train} training images of a fold.")
    (the_query,) = load_queries(args, cat, [args.query])
    query, q_desc = the_query.image, the_query.description
    name_of = label_namer(names)
    args.stdout.print(f"catalogue: {cat_desc}; {args.folds}-fold cross-validation, k={args.k}")

    cv_results, search_results, models = {}, [], {}
    bar = progress(total=len(methods) * (args.folds + 1), desc="evaluate", verbose=not args.quiet)
    with bar:
        for method in methods:
            bar.set_description(f"evaluate {method}")
            # one method at a time: its deep models are trained on each training fold
            cv_results |= cross_validate_search(
                {method: lambda Xt, yt, m=method: build_search(m, args, Xt, yt)},
                X,
                y,
                cv=args.folds,
                k=args.k,
                random_state=args.seed,
                callback=lambda method, fold: bar.update(1),
            )
            # the report's pictures: the method fitted on the whole catalogue
            t0 = time.perf_counter()
            pipe = build_search(method, args, X, y).fit(X, y)
            ((dist, ind, _),) = top_neighbours(pipe, query, [the_query.member], args.k)
            elapsed = time.perf_counter() - t0
            if method in DEEP_METHODS:
                models[method] = pipe.steps[0][1].estimator
            itself = "" if the_query.member is None else ", itself left out"
            search_results.append(
                SearchResult(
                    method,
                    dist,
                    ind,
                    [cat.label(i) for i in ind],
                    title=f"{method}: top {args.k} for the {q_desc} "
                    f"(whole catalogue{itself}, {elapsed:.1f} s)",
                    identifiers=cat.identifiers(ind),
                )
            )
            bar.update(1)
    args.stdout.print(format_scores(cv_results, names))
    counts_text = ", ".join(f"{name_of(int(c))} {n}" for c, n in zip(labels, counts, strict=True))
    index = write_evaluation_report(
        args.out,
        cv_results,
        y=y,
        label_names=names,
        facts={
            "catalogue": cat_desc,
            "classes (images)": counts_text,
            "cross-validation": f"{args.folds}-fold stratified, seed {args.seed}",
            "k": args.k,
            "methods": ", ".join(methods),
            "deep-model epochs": "model defaults" if args.epochs is None else args.epochs,
            "image size": f"{X.shape[1]}x{X.shape[2]}",
            "query": q_desc,
            **({"query matching": the_query.matching} if the_query.matching else {}),
        },
        search_results=search_results,
        query_image=query,
        query_desc=q_desc,
        catalogue_images=X,
        models=models,
        random_state=args.seed,
    )
    args.stdout.print(f"report written to {index}")
    return 0


def cmd_index(args):
    from galaxysim.cli._index import cmd_index

    return cmd_index(args)


def check_args(args):
    """Check what needs no data, right after parsing and before any long work.

    Numbers under their options' names; the catalogue, labels CSV and query are
    readable files (or folders); --out and --model-dir are folders that exist or can
    be created and written (generate's --out a .png file); the saved models that
    will be used are model files of the right kind from a complete training run.
    Sets ``args.methods``.
    """
    if args.command == "index" or getattr(args, "index", None):
        from galaxysim.cli._index import check_args as check_index_args

        return check_index_args(args)  # index and search --index
    methods = parse_methods(args.method) if getattr(args, "method", None) else []
    if args.command == "train":
        bad = [m for m in methods if m not in DEEP_METHODS]
        if bad:
            raise UserError(f"train fits deep models only ({', '.join(DEEP_METHODS)}); got {bad}.")
    args.methods = methods
    deep = ["vae"] if args.command == "generate" else [m for m in methods if m in DEEP_METHODS]
    check_numbers(args)
    check_deep_image_size(args, deep)
    if args.catalogue is None:
        check_builtin_catalogue_size(args)
    else:
        check_input(args.catalogue, "--catalog", folder_ok=True)
    if args.labels_csv not in (None, NO_LABELS):
        check_input(args.labels_csv, "--labels-csv")
    check_match_options(args)
    if args.command == "search":
        for spec in args.query or ["milkyway"]:
            check_query(spec, "--query", folder_ok=True)
    elif args.command == "evaluate":
        check_query(args.query, "--query")
    elif args.command == "generate" and args.like is not None:
        check_query(args.like, "--like")
    if args.command == "generate":
        check_output_png(args.out, "--out")
    elif getattr(args, "out", None):
        check_report_folder(args.out, "--out")
    folder = _model_folder(args)
    if folder is not None:
        to_train = deep if args.command == "train" else [m for m in deep if not folder.has(m)]
        if to_train:
            check_output_folder(folder.path, "--model-dir")
            folder.check_writable(to_train)
        if args.command != "train":
            folder.preload([m for m in deep if m not in to_train])


COMMANDS = {
    "search": cmd_search,
    "train": cmd_train,
    "generate": cmd_generate,
    "evaluate": cmd_evaluate,
    "index": cmd_index,
    "serve": cmd_serve,
}


def _warning_printer(command):
    def show(message, category, filename, lineno, file=None, line=None):
        """The library's warnings as the command's: one line, in its options' terms."""
        print(f"galaxysim {command}: warning: {cli_message(message)}", file=sys.stderr)

    return show


def _one_line(exc):
    if isinstance(exc, MemoryError):
        detail = f" ({exc})" if str(exc) else ""
        return (
            f"out of memory{detail}; use a smaller catalogue (--n-catalog, --image-size) "
            "or a machine with more memory."
        )
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return cli_message(msg)


def main(argv=None):
    """Run the ``galaxysim`` command; returns the exit status.

    Run as the process's command (``argv=None``), it first raises glibc's allocator
    thresholds for the process (see the install page), and points its stdout at
    ``os.devnull`` once the reader of stdout has gone; called with an explicit
    ``argv`` from Python, it leaves the caller's process settings alone.

    Returns
    -------
    status : int
        0; 2 after a user error (one line on stderr); 130 after Ctrl-C; 141 when the
        reader of stdout went away (the rest of the output was dropped, the files
        asked for were written).
    """
    from galaxysim.cli._process import SIGPIPE_EXIT, Stdout, tune_allocator

    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:
        tune_allocator()
    args.stdout = Stdout(own_process=argv is None)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(args.command)
            check_args(args)
            status = COMMANDS[args.command](args)
        args.stdout.flush()
    except UserError as exc:
        print(f"galaxysim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (
        FileNotFoundError,
        ValueError,
        TypeError,
        KeyError,
        ImportError,
        OSError,
        MemoryError,
    ) as exc:
        print(f"galaxysim {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"galaxysim {args.command}: interrupted", file=sys.stderr)
        return 130
    return SIGPIPE_EXIT if args.stdout.closed and status == 0 else status
