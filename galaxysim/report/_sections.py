"""The sections of a report: one function per section, each adding it to a Report."""

from dataclasses import dataclass, field

import numpy as np

from galaxysim.report._labels import label_name
from galaxysim.report._page import file_stem, table
from galaxysim.report._summary import class_counts, evaluation_summary

__all__ = [
    "SearchResult",
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
        Catalogue indices.
    label_names : list of str
        Label name of each neighbour.
    title : str, default=""
        Heading (default: the method).

    Attributes
    ----------
    rows : list of tuple
        ``(rank, index, label name, distance)``, rank from 1.

    Examples
    --------
    >>> SearchResult("mse", [0.5, 0.75], [3, 1], ["a", "b"]).rows
    [(1, 3, 'a', 0.5), (2, 1, 'b', 0.75)]
    """

    method: str
    distances: np.ndarray
    indices: np.ndarray
    label_names: list
    title: str = ""
    rows: list = field(init=False)

    def __post_init__(self):
        self.rows = [
            (rank + 1, int(i), name, float(d))
            for rank, (i, name, d) in enumerate(
                zip(self.indices, self.label_names, self.distances, strict=True)
            )
        ]


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
    catalogue_images : ndarray of shape (n, H, W, C)
        The catalogue, indexed by ``result.indices``.
    query_title : str, default="query"
        Caption of the query panel.
    table_open : bool, default=True
        Show the ranked table unfolded.
    """
    from galaxysim.plotting import plot_neighbors
    from galaxysim.report._page import save_figure

    heading = result.title or result.method
    filename = f"montage_{file_stem(result.method)}.png"
    fig = plot_neighbors(
        query_image,
        catalogue_images[result.indices],
        labels=result.label_names,
        distances=result.distances,
        indices=result.indices,
        title=heading,
        query_title=query_title,
    )
    save_figure(fig, report.out / filename)
    rows = table(
        ["rank", "index", "label", "distance"],
        [(r, i, n, f"{d:.6g}") for r, i, n, d in result.rows],
    )
    report.add_section(
        heading,
        "neighbours.html",
        filename=filename,
        alt=heading,
        table=rows,
        table_open=table_open,
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
