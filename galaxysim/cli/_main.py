"""``galaxysim`` command line: search, evaluate, and (with galaxysim.nn) train, generate.

Argument parsing and composition of library calls only. galaxysim writes "catalogue"
everywhere; the options keep the shorter spelling of astronomy command lines and
query tools, ``--catalog`` and ``--n-catalog``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from galaxysim import GALAXY10_CLASSES, __version__
from galaxysim.pipeline import DEEP_METHODS, METHODS

DEFAULT_CATALOGUE_SIZE = 3000
DEFAULT_SEED = 0


class UserError(Exception):
    """A mistake in the command line or its inputs: one line, exit status 2."""


def _add_data_options(p):
    p.add_argument(
        "--catalog",
        dest="catalogue",
        help="Galaxy10 HDF5 file or image folder (default: the built-in procedural catalogue)",
    )
    p.add_argument("--labels-csv", help="CSV with a `file` column and labels (image folders)")
    p.add_argument("--label-column", help="label column of the CSV")
    p.add_argument(
        "--crop",
        type=int,
        default=None,
        help="centre-crop this many source pixels before resizing "
        "(default: 64 for Galaxy10 files, whole frame for folders)",
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
        default="milkyway",
        help="`milkyway`, `milkyway-illustration` or an image file (default: %(default)s)",
    )
    s.add_argument(
        "--reframe",
        type=float,
        default=None,
        metavar="FRACTION",
        help="shrink the query to this fraction of the frame and pad it onto "
        "dark sky (for images whose galaxy fills the frame)",
    )
    s.add_argument(
        "--method",
        default="mse,maxabs",
        help=f"comma list of {', '.join(METHODS)} (default: %(default)s)",
    )
    s.add_argument("-k", "--k", type=int, default=10, dest="k", help="neighbours to show")
    s.add_argument(
        "--per-class",
        action="store_true",
        help="show the closest galaxy of every label instead of the top k",
    )
    s.add_argument(
        "--within", metavar="LABEL", help="search only galaxies with this label (name or number)"
    )
    s.add_argument("--out", help="write results.csv, montages and index.html here")
    _add_model_options(s)

    t = sub.add_parser(
        "train",
        help="fit the deep models on a catalogue and save them",
        description="Fit CNN, autoencoder and/or VAE on a catalogue and save "
        "them as cnn.safetensors, ae.safetensors and vae.safetensors (weights, "
        "parameters and versions; loading runs no code) for `search --model-dir`.",
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
        help="`milkyway`, `milkyway-illustration` or an image file (default: samples from noise)",
    )
    g.add_argument("--n", type=int, default=16, help="number of images (default: 16)")
    g.add_argument(
        "--scale",
        type=float,
        default=0.5,
        help="spread around the query in units of the prior (default: 0.5)",
    )
    g.add_argument("--out", default="generated.png", help="PNG grid (default: %(default)s)")
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
        "`milkyway`, `milkyway-illustration` or an image file (default: %(default)s)",
    )
    e.add_argument(
        "--out",
        default="report/evaluate",
        help="report folder: index.html, PNGs, results.csv, results.json (default: %(default)s)",
    )
    e.set_defaults(model_dir=None, reframe=None)  # never reuse models across folds
    return parser


def _add_model_options(p, required=False):
    p.add_argument(
        "--model-dir",
        required=required,
        help="load deep models from here if present, save trained ones here",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs of the deep models (default: each model's)",
    )


# ------------------------------------------------------------------ data
def load_catalogue(args):
    """Return (images, labels, label names, description)."""
    from galaxysim.datasets import load_galaxy10, load_image_folder, make_galaxies

    verbose = not args.quiet
    if args.catalogue is None:
        if args.n_catalogue < 1:
            raise UserError("--n-catalog must be at least 1.")
        X, y = make_galaxies(args.n_catalogue, image_size=args.image_size, random_state=args.seed)
        desc = f"built-in procedural catalogue ({args.n_catalogue} galaxies, seed {args.seed})"
        return X, y, list(GALAXY10_CLASSES), desc
    path = Path(args.catalogue)
    if not path.exists():
        raise UserError(f"catalogue {path} does not exist.")
    if path.is_dir():
        bunch = load_image_folder(
            path,
            labels_csv=args.labels_csv,
            label_column=args.label_column,
            crop=args.crop,
            image_size=args.image_size,
            n_jobs=-1,  # reading and decoding release the GIL: use every core
            verbose=verbose,
        )
    else:
        bunch = load_galaxy10(
            path,
            crop=64 if args.crop is None else args.crop,
            image_size=args.image_size,
            verbose=verbose,
        )
    names = [str(n) for n in bunch.target_names] if bunch.target is not None else []
    return bunch.images, bunch.target, names, f"{path} ({len(bunch.images)} images)"


def load_query(args, X):
    """Return the query image (1, s, s, 3), of the catalogue ``X``'s shape, and a description."""
    from galaxysim.datasets import load_milky_way
    from galaxysim.utils._image import frame_images, reframe_images

    if args.query == "milkyway":
        q, desc = load_milky_way(kind="model", image_size=args.image_size), "Milky Way model"
    elif args.query == "milkyway-illustration":
        q = load_milky_way(kind="illustration", image_size=args.image_size)
        desc = "Milky Way illustration (NASA/JPL-Caltech), reframed"
    else:
        path = Path(args.query)
        if not path.is_file():
            raise UserError(
                f"query {args.query!r} is neither `milkyway`, `milkyway-illustration` "
                "nor an existing image file."
            )
        q = frame_images(_read_image(path), crop=args.crop, image_size=args.image_size)
        desc = str(path)
    if args.reframe is not None:
        q = reframe_images(
            q,
            image_size=args.image_size,
            fill_fraction=args.reframe,
            noise_sigma=0.01,
            random_state=args.seed,
        )
        desc += f", reframed to {args.reframe:g} of the frame"
    if q.shape[1:] != X.shape[1:]:
        raise UserError(
            f"query is {q.shape[1]}x{q.shape[2]}x{q.shape[3]} but the catalogue "
            f"is {X.shape[1]}x{X.shape[2]}x{X.shape[3]}; use the same --image-size."
        )
    return q, desc


def label_namer(names):
    """``label value -> name`` for tables: the class name when known, else the value."""
    if not names:
        return str
    return lambda v: names[v] if 0 <= v < len(names) else str(v)


def _read_image(path):
    # the one reader, as for catalogue folders: same file, same pixels
    from galaxysim.utils._imread import ImageReadError, ImageTooLargeError, read_image

    try:
        return read_image(path)[np.newaxis]
    except ImageTooLargeError as exc:
        raise UserError(
            f"query image {path} is {exc.size[0]}x{exc.size[1]} pixels, more than the "
            f"{exc.limit:,} pixels galaxysim reads (a guard against decompression bombs); "
            "shrink it first."
        ) from None
    except ImageReadError as exc:
        raise UserError(f"cannot read image {path}: {exc.reason}") from None


def parse_methods(text):
    methods = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UserError(f"unknown method(s) {bad or text!r}; choose from {', '.join(METHODS)}.")
    return methods


def resolve_label(text, names, labels):
    """A label given by name (case-insensitive) or number -> label value."""
    lowered = [n.lower() for n in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is not None and value in set(np.unique(labels).tolist()):
        return value
    raise UserError(f"unknown label {text!r}; the catalogue has: {', '.join(names)}.")


def _new_model(method, args):
    from galaxysim.nn import AEEncoder, CNNScorer, VAEEncoder

    cls = {"cnn": CNNScorer, "ae": AEEncoder, "vae": VAEEncoder}[method]
    params = {"random_state": args.seed, "verbose": 0 if args.quiet else 1}
    if args.epochs is not None:
        if args.epochs < 1:
            raise UserError("--epochs must be at least 1.")
        params["max_epochs"] = args.epochs
    return cls(**params)


def deep_model(method, args, X, y, *, load=True):
    """A fitted deep model: loaded from --model-dir when saved there (and ``load``),
    else trained, and saved there (atomically: an interrupted run keeps the old file)."""
    from galaxysim.nn import load_model, save_model

    path = Path(args.model_dir) / f"{method}.safetensors" if args.model_dir else None
    if load and path is not None and path.exists():
        model = load_model(path)
        print(f"{method}: loaded {path}", file=sys.stderr)
        return model
    if method == "cnn" and y is None:
        raise UserError("the cnn method needs labels (give --labels-csv / --label-column).")
    model = _new_model(method, args)
    t0 = time.perf_counter()
    model.fit(X, y if method == "cnn" else None)
    print(f"{method}: trained in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if path is not None:
        save_model(model, path)
        print(f"{method}: saved {path}", file=sys.stderr)
    return model


def build_search(method, args, X, y):
    """The search pipeline of one method (images in, ranked catalogue out): the
    library's recipe (:func:`galaxysim.pipeline.make_method_search`).

    Deep models are trained (or loaded from --model-dir) here and frozen, so fitting the
    pipeline only indexes the catalogue.
    """
    from galaxysim.pipeline import make_method_search

    model = deep_model(method, args, X, y) if method in DEEP_METHODS else None
    return make_method_search(method, model=model, n_neighbors=args.k)


# ------------------------------------------------------------------ commands
def cmd_search(args):
    from galaxysim.report import SearchResult, format_table, write_search_report

    methods = parse_methods(args.method)
    if args.k < 1:
        raise UserError("-k must be at least 1.")
    X, y, names, cat_desc = load_catalogue(args)
    query, q_desc = load_query(args, X)
    if (args.per_class or args.within) and y is None:
        raise UserError("--per-class and --within need labels (give --labels-csv).")
    within = resolve_label(args.within, names, y) if args.within else None
    name_of = label_namer(names)
    results = []
    for method in methods:
        t0 = time.perf_counter()
        pipe = build_search(method, args, X, y).fit(X, y)
        if args.per_class:
            dist, ind = pipe.nearest_per_class(query)
            order = np.argsort(dist[0], kind="stable")
            dist, ind = dist[:, order], ind[:, order]
            title = f"{method}: closest galaxy of each class"
        else:
            # as many as there are: the whole catalogue, or the chosen label
            k = min(args.k, len(X) if within is None else int(np.count_nonzero(y == within)))
            dist, ind = pipe.kneighbors(query, k, within=None if within is None else [within])
            title = f"{method}: top {k}" + (
                f" within {name_of(within)}" if within is not None else ""
            )
        elapsed = time.perf_counter() - t0
        label_names = [name_of(int(y[i])) if y is not None else "-" for i in ind[0]]
        res = SearchResult(method, dist[0], ind[0], label_names, title=f"{title} ({elapsed:.2f} s)")
        results.append(res)
        print(format_table(res))
        print()
    if args.out:
        index = write_search_report(
            args.out,
            results,
            query_image=query,
            catalogue_images=X,
            summary={
                "catalogue": cat_desc,
                "query": q_desc,
                "methods": ", ".join(methods),
                "image size": f"{X.shape[1]}x{X.shape[2]}",
            },
        )
        print(f"report written to {index}")
    return 0


def cmd_train(args):
    methods = parse_methods(args.method)
    bad = [m for m in methods if m not in DEEP_METHODS]
    if bad:
        raise UserError(f"train fits deep models only ({', '.join(DEEP_METHODS)}); got {bad}.")
    X, y, _, cat_desc = load_catalogue(args)
    print(f"catalogue: {cat_desc}")
    for method in methods:
        deep_model(method, args, X, y, load=False)  # replaces a saved model once trained
    return 0


def cmd_generate(args):
    from galaxysim.plotting import plot_generated
    from galaxysim.report import save_figure

    if args.n < 1:
        raise UserError("--n must be at least 1.")
    if not (np.isfinite(args.scale) and args.scale >= 0):
        raise UserError(f"--scale must be a finite number >= 0; got {args.scale:g}.")
    X, y, _, cat_desc = load_catalogue(args)
    vae = deep_model("vae", args, X, y)
    if args.like is None:
        images, title = vae.sample(args.n, random_state=args.seed), "VAE samples from noise"
    else:
        args.query, args.reframe = args.like, None
        query, q_desc = load_query(args, X)
        images = vae.generate_like(query, args.n, scale=args.scale, random_state=args.seed)
        title = f"more like the {q_desc} (scale {args.scale:g})"
    out = Path(args.out)
    save_figure(plot_generated(images, title=title), out)
    print(f"{len(images)} generated images written to {out} (VAE trained on {cat_desc})")
    return 0


def cmd_evaluate(args):
    from galaxysim.model_selection import cross_validate_search
    from galaxysim.report import SearchResult, format_scores, write_evaluation_report
    from galaxysim.utils._progress import progress

    methods = parse_methods(args.method)
    if args.folds < 2:
        raise UserError("--folds must be at least 2.")
    if args.k < 1:
        raise UserError("-k must be at least 1.")
    if args.epochs is not None and args.epochs < 1:
        raise UserError("--epochs must be at least 1.")
    X, y, names, cat_desc = load_catalogue(args)
    if y is None:
        raise UserError("evaluate needs labels (give --labels-csv / --label-column).")
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
    query, q_desc = load_query(args, X)
    name_of = label_namer(names)
    print(f"catalogue: {cat_desc}; {args.folds}-fold cross-validation, k={args.k}")

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
            dist, ind = pipe.kneighbors(query, args.k)
            elapsed = time.perf_counter() - t0
            if method in DEEP_METHODS:
                models[method] = pipe.steps[0][1].estimator
            search_results.append(
                SearchResult(
                    method,
                    dist[0],
                    ind[0],
                    [name_of(int(v)) for v in y[ind[0]]],
                    title=f"{method}: top {args.k} for the {q_desc} "
                    f"(whole catalogue, {elapsed:.1f} s)",
                )
            )
            bar.update(1)
    print(format_scores(cv_results, names))
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
        },
        search_results=search_results,
        query_image=query,
        query_desc=q_desc,
        catalogue_images=X,
        models=models,
        random_state=args.seed,
    )
    print(f"report written to {index}")
    return 0


COMMANDS = {
    "search": cmd_search,
    "train": cmd_train,
    "generate": cmd_generate,
    "evaluate": cmd_evaluate,
}


def main(argv=None):
    """Run the ``galaxysim`` command; returns the exit status.

    Run as the process's command (``argv=None``), it first raises glibc's allocator
    thresholds for the process (see the install page); called with an explicit ``argv``
    from Python, it leaves the caller's process settings alone.
    """
    from galaxysim.cli._process import tune_allocator

    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:
        tune_allocator()
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"galaxysim: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, KeyError, ImportError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"galaxysim {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("galaxysim: interrupted", file=sys.stderr)
        return 130
