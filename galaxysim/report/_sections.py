"""The sections of a report: one function per section, each adding it to a Report."""

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from galaxysim.report._labels import label_name
from galaxysim.report._page import file_stem, table
from galaxysim.report._summary import class_counts, evaluation_summary

__all__ = [
    "IDENTIFIERS",
    "NEIGHBOUR_COLUMNS",
    "SearchQuery",
    "SearchResult",
    "add_query",
    "neighbour_table",
    "add_confusion_matrix",
    "add_generated",
    "add_latent_map",
    "add_neighbours",
    "add_per_class_precision",
    "add_precision_curves",
    "add_reconstructions",
    "add_scores",
    "add_training_curves",
]


IDENTIFIERS = ("file", "ra", "dec", "redshift")
"""The catalogue identifiers a neighbour may carry besides its row index and label."""

NEIGHBOUR_COLUMNS = (
    "method",
    "rank",
    "index",
    "file",
    "ra",
    "dec",
    "redshift",
    "label",
    "distance",
)
"""The columns of a search's ``results.csv``, in this order (plus ``query`` last when
the search had several queries)."""


@dataclass
class SearchResult:
    """The ranked neighbours of one query for one method (one table of a report).

    Parameters
    ----------
    method : str
        Method name (also names the montage file).
    distances : ndarray of shape (n_neighbors,)
        Distances, nearest first.
    indices : ndarray of shape (n_neighbors,)
        Catalogue row indices.
    label_names : list of str
        Label name of each neighbour.
    title : str, default=""
        Heading (default: the method).
    identifiers : dict of str to sequence, default=None
        What else identifies each neighbour in its catalogue: any of ``"file"`` (the
        path relative to a folder catalogue), ``"ra"``, ``"dec"`` (degrees) and
        ``"redshift"``, one value per neighbour. A key left out is a column the
        catalogue lacks (left empty in the CSV, not shown in the tables); NaN is a
        value missing for that galaxy.
    query : str, default=""
        Name of the query these are the neighbours of (a report of several queries).
    ranks : sequence of int, default=None
        Rank of each neighbour (default 1, 2, ...; the k closest of each class are
        ranked within their class).

    Attributes
    ----------
    rows : list of dict
        One per neighbour: ``rank``, ``index``, ``file``, ``ra``, ``dec``,
        ``redshift``, ``label`` and ``distance``, None where the catalogue lacks
        the identifier.
    columns : list of str
        The identifiers the catalogue has (keys of ``identifiers``, in
        :data:`IDENTIFIERS` order).

    Examples
    --------
    >>> res = SearchResult("mse", [0.5, 0.75], [3, 1], ["a", "b"], identifiers={"file": ["x.png", "y.png"]})
    >>> res.rows[0]
    {'rank': 1, 'index': 3, 'file': 'x.png', 'ra': None, 'dec': None, 'redshift': None, 'label': 'a', 'distance': 0.5}
    >>> res.columns
    ['file']
    """

    method: str
    distances: np.ndarray
    indices: np.ndarray
    label_names: list
    title: str = ""
    identifiers: dict | None = None
    query: str = ""
    ranks: list | None = None
    rows: list = field(init=False)
    columns: list = field(init=False)

    def __post_init__(self):
        identifiers = dict(self.identifiers or {})
        unknown = sorted(set(identifiers) - set(IDENTIFIERS))
        if unknown:
            raise ValueError(f"Unknown identifiers {unknown}; give any of {list(IDENTIFIERS)}.")
        n = len(self.indices)
        ranks = range(1, n + 1) if self.ranks is None else self.ranks
        for key, values in [*identifiers.items(), ("label_names", self.label_names),
                            ("distances", self.distances), ("ranks", ranks)]:  # fmt: skip
            if len(values) != n:
                raise ValueError(f"{key} has {len(values)} values for {n} neighbours.")
        self.columns = [k for k in IDENTIFIERS if k in identifiers]
        self.rows = [
            {
                "rank": int(ranks[j]),
                "index": int(i),
                **{k: _identifier(identifiers, k, j) for k in IDENTIFIERS},
                "label": name,
                "distance": float(d),
            }
            for j, (i, name, d) in enumerate(
                zip(self.indices, self.label_names, self.distances, strict=True)
            )
        ]


def _identifier(identifiers, key, j):
    if key not in identifiers:
        return None
    value = identifiers[key][j]
    if key == "file":
        return str(value)
    return float(value)


def neighbour_table(result):
    """The HTML :func:`table` of a result: rank, index, the identifiers the catalogue
    has, label, distance."""
    header = ["rank", "index", *result.columns, "label", "distance"]
    formats = {"ra": "{:.6f}", "dec": "{:.6f}", "redshift": "{:.5f}"}
    rows = []
    for row in result.rows:
        cells = [row["rank"], row["index"]]
        for key in result.columns:
            v = row[key]
            cells.append(v if key == "file" or np.isnan(v) else formats[key].format(v))
        rows.append([*cells, row["label"], f"{row['distance']:.6g}"])
    return table(header, rows)


@dataclass
class SearchQuery:
    """One query of a search report: its image and what it is.

    Parameters
    ----------
    name : str
        Short name, as the command line gave it (``"index:123"``, a file name); the
        ``query`` of its :class:`SearchResult` objects.
    image : ndarray of shape (1, H, W, C)
        The query as searched.
    description : str, default=""
        What the query is ("Milky Way model", "catalogue galaxy 123 (g123.png)").
    note : str, default=""
        A remark shown with its results (for example that the galaxy itself is left
        out of its neighbours).
    identifiers : dict, default=None
        For a catalogue member: its ``index`` and the identifiers of
        :class:`SearchResult` (written to results.json).
    unmatched : ndarray of shape (1, H, W, C), default=None
        For a query matched to the catalogue's survey
        (:class:`~galaxysim.preprocessing.SurveyImager`): the query before matching,
        shown beside ``image``.
    matching : str, default=""
        What the matching estimated (``SurveyImager.describe()``), shown with the
        query and written to results.json.
    """

    name: str
    image: np.ndarray
    description: str = ""
    note: str = ""
    identifiers: dict | None = None
    unmatched: np.ndarray | None = None
    matching: str = ""


def _images_of(catalogue_images, indices, query_image):
    """The images of catalogue rows ``indices``, from the whole catalogue (an array) or
    from ``{catalogue index: image}`` holding only the neighbours shown."""
    if not isinstance(catalogue_images, Mapping):
        return catalogue_images[np.asarray(indices, dtype=np.intp)]
    missing = [int(i) for i in indices if int(i) not in catalogue_images]
    if missing:
        raise ValueError(
            f"catalogue_images has no image of the neighbours {missing[:5]}; give the "
            "whole catalogue (an array) or {catalogue index: image} of every neighbour shown."
        )
    if len(indices) == 0:
        return np.empty((0, *np.shape(query_image)[1:]), dtype=np.asarray(query_image).dtype)
    return np.stack([np.asarray(catalogue_images[int(i)]) for i in indices])


def _neighbour_block(report, result, *, query_image, catalogue_images, filename, query_title):
    """Save the montage of one result; return what its template shows."""
    from galaxysim.plotting import plot_neighbors
    from galaxysim.report._page import save_figure

    heading = result.title or result.method
    fig = plot_neighbors(
        query_image,
        _images_of(catalogue_images, result.indices, query_image),
        labels=result.label_names,
        distances=result.distances,
        indices=result.indices,
        title=heading,
        query_title=query_title,
    )
    save_figure(fig, report.out / filename)
    return {"heading": heading, "filename": filename, "table": neighbour_table(result)}


def add_neighbours(
    report, result, *, query_image, catalogue_images, query_title="query", table_open=True
):
    """Add one method's neighbour montage and its ranked table.

    Parameters
    ----------
    report : Report
        The report.
    result : SearchResult
        The neighbours.
    query_image : ndarray of shape (1, H, W, C)
        The query.
    catalogue_images : ndarray of shape (n, H, W, C) or mapping of int to ndarray
        The catalogue, indexed by ``result.indices``; or ``{catalogue index: image
        (H, W, C)}`` of the neighbours only.
    query_title : str, default="query"
        Caption of the query panel.
    table_open : bool, default=True
        Show the ranked table unfolded.
    """
    block = _neighbour_block(
        report,
        result,
        query_image=query_image,
        catalogue_images=catalogue_images,
        filename=f"montage_{file_stem(result.method)}.png",
        query_title=query_title,
    )
    report.add_section(
        block["heading"],
        "neighbours.html",
        filename=block["filename"],
        alt=block["heading"],
        table=block["table"],
        table_open=table_open,
    )


def _before_after(query, path):
    """Save the query before and after matching side by side; return the figure's file
    name."""
    from matplotlib.figure import Figure

    from galaxysim.plotting import plot_generated
    from galaxysim.report._page import save_figure

    pair = [query.unmatched, query.image]
    if len({im.dtype for im in pair}) > 1:
        pair = [im.astype(np.float32) / 255 if im.dtype == np.uint8 else im for im in pair]
    save_figure(
        plot_generated(
            np.concatenate(pair),
            n_cols=2,
            titles=["before: unmatched", "after: matched, as searched"],
            fig=Figure(figsize=(4.2, 2.3), layout="constrained"),
        ),
        path,
    )
    return path.name


def add_query(
    report,
    query,
    results,
    *,
    catalogue_images,
    heading,
    file_prefix="montage_",
    matched_filename="query_matched.png",
):
    """Add one query's section: how it was given (its name, when that is not its
    description, which ``heading`` should say), its note, for a query matched to the
    catalogue what the matching estimated and the query before and after, then every
    method's montage and ranked table.

    Parameters
    ----------
    report : Report
        The report.
    query : SearchQuery
        The query.
    results : list of SearchResult
        Its neighbours, one per method.
    catalogue_images : ndarray of shape (n, H, W, C) or mapping of int to ndarray
        The catalogue, indexed by the results' ``indices``; or ``{catalogue index:
        image (H, W, C)}`` of the neighbours only.
    heading : str
        Section heading.
    file_prefix : str, default="montage_"
        Start of the montages' file names (``<prefix><method>.png``).
    matched_filename : str, default="query_matched.png"
        File name of the before/after figure of a matched query (``query.unmatched``
        given).
    """
    before_after = ""
    if query.unmatched is not None:
        before_after = _before_after(query, report.out / matched_filename)
    blocks = [
        _neighbour_block(
            report,
            res,
            query_image=query.image,
            catalogue_images=catalogue_images,
            filename=f"{file_prefix}{file_stem(res.method)}.png",
            query_title="query",
        )
        for res in results
    ]
    # the heading says what the query is; the caption how it was given, when that differs
    given = query.name if query.description and query.name != query.description else ""
    report.add_section(
        heading,
        "query.html",
        given=given,
        note=query.note,
        matching=query.matching,
        before_after=before_after,
        blocks=blocks,
    )


def add_scores(report, results, *, y, label_names=None):
    """Add the cross-validated scores table and the precision@k-per-class table.

    Parameters
    ----------
    report : Report
        The report.
    results : list of SearchCVResult
        One per method.
    y : ndarray of shape (n_samples,)
        Catalogue labels (class counts; a class's share is its chance level).
    label_names : list of str, default=None
        Names of int labels.
    """
    k = results[0].k
    counts = class_counts(results, y, label_names)
    n_total = sum(counts.values())
    header = ["method", f"balanced p@{k}", "fold sd", f"mean p@{k}", f"balanced mAP@{k}"]
    header += ["CNN balanced acc.", "fit s / fold", "query s / fold"]
    rows = [evaluation_summary(res, label_names) for res in results]
    scores = table(
        header,
        [
            (
                r["method"],
                r["precision_at_k_balanced"],
                r["precision_at_k_balanced_fold_sd"],
                r["precision_at_k_mean"],
                r["map_at_k_balanced"],
                r["cnn_balanced_accuracy"],
                f"{r['fit_seconds_per_fold']:.2f}",
                f"{r['query_seconds_per_fold']:.3f}",
            )
            for r in rows
        ],
    )
    per_class = table(
        ["method", *(f"{n} ({c})" for n, c in counts.items())],
        [(res.method, *res.mean("precision_per_class")) for res in results]
        + [("chance (class share)", *(c / n_total for c in counts.values()))],
    )
    report.add_section(
        "Cross-validated retrieval quality",
        "scores.html",
        k=k,
        n_folds=results[0].n_folds,
        chance=1 / len(counts),
        scores=scores,
        per_class=per_class,
    )


def add_precision_curves(report, results):
    """Add the balanced precision@j curves for j from 1 to k, means over folds."""
    from galaxysim.plotting import plot_precision_curves

    report.add_figure(
        "Precision@k curves",
        "precision_curves.png",
        plot_precision_curves(
            {res.method: res.mean("precision_curve_balanced").tolist() for res in results},
            chance=1 / len(results[0].classes),
            ylabel="balanced precision@k",
            title=f"balanced precision@k, {results[0].n_folds}-fold CV",
        ),
    )


def add_per_class_precision(report, results, *, y, label_names=None):
    """Add the bars of precision@k per class and method, with the chance levels
    (each class's share of the catalogue labels ``y``)."""
    from galaxysim.plotting import plot_per_class_precision

    k = results[0].k
    counts = class_counts(results, y, label_names)
    n_total = sum(counts.values())
    report.add_figure(
        "Precision per class",
        "precision_per_class.png",
        plot_per_class_precision(
            {
                res.method: dict(zip(counts, res.mean("precision_per_class"), strict=True))
                for res in results
            },
            chance={n: c / n_total for n, c in counts.items()},
            ylabel=f"precision@{k}",
            title=f"precision@{k} per class (dotted: chance = class share)",
        ),
    )


def add_confusion_matrix(report, result, *, label_names=None):
    """Add the out-of-fold confusion matrix of a method's classifier, with its recalls.

    Parameters
    ----------
    report : Report
        The report.
    result : SearchCVResult
        A result with ``predictions``.
    label_names : list of str, default=None
        Names of int labels.
    """
    from galaxysim.plotting import plot_confusion_matrix

    class_names = [label_name(c, label_names) for c in result.classes]
    recall = result.mean("recall_per_class")
    report.add_figure(
        f"{result.method.upper()} confusion matrix (out of fold)",
        f"confusion_{file_stem(result.method)}.png",
        plot_confusion_matrix(
            result.y_true,
            result.predictions,
            labels=result.classes,
            display_labels=class_names,
            title=f"{result.method}: accuracy {result.mean('accuracy'):.3f}, "
            f"balanced {result.mean('balanced_accuracy'):.3f}",
        ),
        caption="Rows are true classes, normalised to per-class recall; predictions "
        "of each fold's CNN on its test fold.",
        table=table(["class", "recall"], list(zip(class_names, recall, strict=True))),
    )


def add_training_curves(report, model, *, method):
    """Add the training curves of a fitted deep model (its ``history_``)."""
    from galaxysim.plotting import plot_training_curves

    report.add_figure(
        f"{method.upper()} training curves",
        f"training_{file_stem(method)}.png",
        plot_training_curves(model, title=f"{method}: training on the whole catalogue"),
    )


def add_reconstructions(report, model, images, *, method, titles=None):
    """Add originals above an autoencoder's reconstructions of them."""
    from galaxysim.plotting import plot_reconstructions

    report.add_figure(
        f"{method.upper()} reconstructions",
        f"reconstructions_{file_stem(method)}.png",
        plot_reconstructions(
            images,
            model.reconstruct(images),
            n_images=len(images),
            titles=titles,
            title=f"{method}: originals (top) and reconstructions (bottom)",
        ),
    )


def add_latent_map(
    report, model, catalogue_images, y, *, method, label_names=None, query_image, query_desc
):
    """Add the catalogue's latent codes (PCA), coloured by label, with the query marked."""
    from galaxysim.plotting import plot_latent_map

    report.add_figure(
        f"{method.upper()} latent map",
        f"latent_{file_stem(method)}.png",
        plot_latent_map(
            model.transform(catalogue_images),
            y,
            label_names=label_names,
            highlight=model.transform(query_image),
            highlight_label=query_desc,
            title=f"{method} latent space (PCA), coloured by label",
        ),
    )


def add_generated(report, model, query_image, *, method, query_desc, n_images=16, random_state=0):
    """Add images generated by a VAE near the query's latent code (scale 0.5)."""
    from galaxysim.plotting import plot_generated

    report.add_figure(
        f"{method.upper()}: more like the query",
        f"generated_{file_stem(method)}.png",
        plot_generated(
            model.generate_like(query_image, n_images, scale=0.5, random_state=random_state),
            title=f"{method.upper()}: {n_images} galaxies generated near the {query_desc} "
            "(scale 0.5)",
        ),
    )
