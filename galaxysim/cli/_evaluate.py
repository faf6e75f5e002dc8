"""``galaxysim evaluate``: cross-validated retrieval quality of every method, and its report.

Each method's search pipeline is fitted on the training folds (deep models are trained
there too, never on the test fold) and queried with every test-fold image; the labels of
the returned training-fold neighbours give precision@k and mean average precision.
Out-of-fold results of all folds are pooled before averaging. The figures of the query
(neighbour montages, reconstructions, latent map, generated images) come from models
fitted on the whole catalogue, as ``galaxysim search`` would use them.
"""

import csv
import io
import time
from dataclasses import dataclass, field

import numpy as np

from galaxysim.metrics import mean_average_precision, precision_at_k, precision_at_k_per_class

__all__ = ["MethodScores", "cross_validate_method", "format_scores", "write_evaluation_report"]


@dataclass
class MethodScores:
    """Pooled out-of-fold retrieval quality of one method."""

    method: str
    k: int
    y_true: np.ndarray  # (n,) label of every image, queried once (from its test fold)
    neighbor_labels: np.ndarray  # (n, k) labels of its training-fold neighbours
    fold_of: np.ndarray  # (n,) fold index of every image
    n_relevant: np.ndarray  # (n,) training-fold images sharing its label
    fit_seconds: list = field(default_factory=list)  # per fold
    query_seconds: list = field(default_factory=list)  # per fold
    predictions: np.ndarray | None = None  # out-of-fold CNN class predictions
    histories: list = field(default_factory=list)  # per fold history_ of deep models

    def p_at_k(self, k=None, average="balanced"):
        return precision_at_k(self.y_true, self.neighbor_labels, k=k or self.k, average=average)

    def fold_p_at_k(self, average="balanced"):
        return [
            precision_at_k(
                self.y_true[self.fold_of == f],
                self.neighbor_labels[self.fold_of == f],
                k=self.k,
                average=average,
            )
            for f in np.unique(self.fold_of)
        ]

    def curve(self, average="balanced"):
        return [self.p_at_k(k, average) for k in range(1, self.k + 1)]

    def mean_ap(self, average="balanced"):
        return mean_average_precision(
            self.y_true, self.neighbor_labels, n_relevant=self.n_relevant, average=average
        )

    def per_class(self):
        return precision_at_k_per_class(self.y_true, self.neighbor_labels)

    def summary(self, names):
        """A flat dict of the headline numbers (results.csv / results.json)."""
        folds = self.fold_p_at_k()
        row = {
            "method": self.method,
            "k": self.k,
            "precision_at_k_balanced": self.p_at_k(),
            "precision_at_k_balanced_fold_sd": float(np.std(folds, ddof=1))
            if len(folds) > 1
            else float("nan"),
            "precision_at_k_mean": self.p_at_k(average="mean"),
            "map_at_k_balanced": self.mean_ap("balanced"),
            "map_at_k_mean": self.mean_ap("mean"),
            "fit_seconds_per_fold": float(np.mean(self.fit_seconds)),
            "query_seconds_per_fold": float(np.mean(self.query_seconds)),
        }
        for label, value in self.per_class().items():
            row[f"precision_at_k[{_name(label, names)}]"] = value
        acc = self.classifier_scores(names)
        row["cnn_accuracy"] = acc["accuracy"] if acc else float("nan")
        row["cnn_balanced_accuracy"] = acc["balanced_accuracy"] if acc else float("nan")
        return row

    def classifier_scores(self, names):
        """Accuracy, balanced accuracy, per-class recall and confusion matrix (CNN only)."""
        if self.predictions is None:
            return None
        from sklearn.metrics import balanced_accuracy_score, confusion_matrix, recall_score

        labels = np.unique(self.y_true)
        recall = recall_score(
            self.y_true, self.predictions, labels=labels, average=None, zero_division=0
        )
        return {
            "accuracy": float(np.mean(self.predictions == self.y_true)),
            "balanced_accuracy": float(balanced_accuracy_score(self.y_true, self.predictions)),
            "recall_per_class": {
                _name(c, names): float(r) for c, r in zip(labels, recall, strict=True)
            },
            "confusion_matrix": confusion_matrix(
                self.y_true, self.predictions, labels=labels
            ).tolist(),
            "confusion_labels": [_name(c, names) for c in labels],
        }


def _name(label, names):
    label = label.item() if hasattr(label, "item") else label
    if names and isinstance(label, int) and 0 <= label < len(names):
        return names[label]
    return str(label)


def cross_validate_method(method, build, X, y, splits, k, *, on_fold=None):
    """Fit ``build(X_train, y_train)`` per fold and query it with the test fold.

    Parameters
    ----------
    method : str
        Method name.
    build : callable
        ``build(X_train, y_train) -> SearchPipeline`` (unfitted search step; deep
        models trained inside, on the training fold only).
    X, y : ndarray
        Images and labels.
    splits : list of (train index, test index)
        The folds.
    k : int
        Neighbours per query.
    on_fold : callable, default=None
        Called after each fold (progress).

    Returns
    -------
    scores : MethodScores
    """
    n = len(X)
    neighbor_labels = np.empty((n, k), dtype=y.dtype)
    fold_of = np.full(n, -1)
    n_relevant = np.zeros(n, dtype=np.int64)
    scores = MethodScores(method, k, y, neighbor_labels, fold_of, n_relevant)
    preds = None
    for f, (train, test) in enumerate(splits):
        t0 = time.perf_counter()
        pipe = build(X[train], y[train]).fit(X[train], y[train])
        t1 = time.perf_counter()
        ind = pipe.kneighbors(X[test], k, return_distance=False)
        t2 = time.perf_counter()
        neighbor_labels[test] = y[train][ind]
        fold_of[test] = f
        labs, cnt = np.unique(y[train], return_counts=True)
        count_of = dict(zip(labs.tolist(), cnt.tolist(), strict=True))
        n_relevant[test] = [count_of.get(v, 0) for v in y[test].tolist()]
        scores.fit_seconds.append(t1 - t0)
        scores.query_seconds.append(t2 - t1)
        model = _deep_model_of(pipe)
        if model is not None:
            scores.histories.append(getattr(model, "history_", None))
            if hasattr(model, "predict"):
                if preds is None:
                    preds = np.empty_like(y)
                preds[test] = model.predict(X[test])
        if on_fold is not None:
            on_fold()
    scores.predictions = preds
    return scores


def _deep_model_of(pipe):
    first = pipe.steps[0][1]
    return getattr(first, "estimator", None)  # FrozenEstimator around a deep model


def format_scores(scores, names):
    """The table printed by ``galaxysim evaluate``."""
    k = scores[0].k if scores else 10
    head = (
        f"{'method':<8} {'bal p@' + str(k):>9} {'sd':>6} {'mean p@' + str(k):>10} "
        f"{'bal mAP@' + str(k):>10} {'CNN bal acc':>11} {'fit s':>8} {'query s':>8}"
    )
    lines = [head]
    for s in scores:
        row = s.summary(names)
        acc = row["cnn_balanced_accuracy"]
        lines.append(
            f"{s.method:<8} {row['precision_at_k_balanced']:>9.3f} "
            f"{row['precision_at_k_balanced_fold_sd']:>6.3f} "
            f"{row['precision_at_k_mean']:>10.3f} {row['map_at_k_balanced']:>10.3f} "
            f"{'-' if np.isnan(acc) else f'{acc:.3f}':>11} "
            f"{row['fit_seconds_per_fold']:>8.2f} {row['query_seconds_per_fold']:>8.2f}"
        )
    return "\n".join(lines)


def _results_csv(rows):
    buf = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                key: (
                    ""
                    if isinstance(v, float) and np.isnan(v)
                    else f"{v:.6g}"
                    if isinstance(v, float)
                    else v
                )
                for key, v in row.items()
            }
        )
    return buf.getvalue()


def write_evaluation_report(
    out_dir,
    scores,
    *,
    names,
    y,
    facts,
    search_results,
    query_image,
    query_desc,
    catalogue_images,
    models,
    seed=0,
):
    """Write the evaluation report: index.html, PNGs, results.csv and results.json.

    Parameters
    ----------
    out_dir : path-like
        Report folder.
    scores : list of MethodScores
        Cross-validated scores, one per method.
    names : list of str
        Label names.
    y : ndarray
        Catalogue labels.
    facts : dict
        Key/value lines at the top of the page (and in results.json).
    search_results : list of MethodResult
        The query's neighbours per method, from models fitted on the whole catalogue.
    query_image : ndarray of shape (1, H, W, C)
        The query.
    query_desc : str
        What the query is ("Milky Way model").
    catalogue_images : ndarray
        The catalogue.
    models : dict
        ``{"cnn"/"ae"/"vae": fitted model}`` trained on the whole catalogue.
    seed : int, default=0
        Seed of the generated images and of the examples shown.

    Returns
    -------
    index : pathlib.Path
    """
    from galaxysim.cli._report import Report, html_table, neighbour_section, neighbours_csv
    from galaxysim.plotting import (
        plot_confusion_matrix,
        plot_generated,
        plot_latent_map,
        plot_per_class_precision,
        plot_precision_curves,
        plot_reconstructions,
        plot_training_curves,
    )

    report = Report(out_dir, "galaxysim evaluation")
    k = scores[0].k
    labels = np.unique(y)
    class_names = [_name(c, names) for c in labels]
    counts = {_name(c, names): int(np.sum(y == c)) for c in labels}
    chance = {_name(c, names): counts[_name(c, names)] / len(y) for c in labels}
    rows = [s.summary(names) for s in scores]

    # -- the table
    header = ["method", f"balanced p@{k}", "fold sd", f"mean p@{k}", f"balanced mAP@{k}"]
    header += ["CNN balanced acc.", "fit s / fold", "query s / fold"]
    table_rows = [
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
    ]
    per_class_rows = [(s.method, *(s.per_class()[c] for c in labels)) for s in scores] + [
        ("chance (class share)", *(chance[n] for n in class_names))
    ]
    report.add_html(
        "Cross-validated retrieval quality",
        "<p class='caption'>Every image queries the models fitted on the other folds; "
        f"p@{k} is the share of its {k} nearest training-fold galaxies with its label. "
        "<b>Balanced</b> figures average over classes first, so a large class does not "
        "hide a poor one; chance level (random ranking) is "
        f"{1 / len(labels):.3f} balanced.</p>"
        + html_table(header, table_rows)
        + f"<h3>Precision@{k} per class</h3>"
        + html_table(["method", *(f"{n} ({counts[n]})" for n in class_names)], per_class_rows),
    )

    # -- curves and per-class bars
    report.add_figure(
        "Precision@k curves",
        "precision_curves.png",
        plot_precision_curves(
            {s.method: s.curve() for s in scores},
            chance=1 / len(labels),
            ylabel="balanced precision@k",
            title=f"balanced precision@k, {len(np.unique(scores[0].fold_of))}-fold CV",
        ),
    )
    report.add_figure(
        "Precision per class",
        "precision_per_class.png",
        plot_per_class_precision(
            {s.method: {_name(c, names): v for c, v in s.per_class().items()} for s in scores},
            chance=chance,
            ylabel=f"precision@{k}",
            title=f"precision@{k} per class (dotted: chance = class share)",
        ),
    )

    # -- classifier
    extra = {}
    for s in scores:
        cls = s.classifier_scores(names)
        if cls is None:
            continue
        extra[s.method] = cls
        recall = html_table(
            ["class", "recall"], [(c, v) for c, v in cls["recall_per_class"].items()]
        )
        report.add_figure(
            f"{s.method.upper()} confusion matrix (out of fold)",
            f"confusion_{s.method}.png",
            plot_confusion_matrix(
                s.y_true,
                s.predictions,
                labels=labels,
                display_labels=class_names,
                title=f"{s.method}: accuracy {cls['accuracy']:.3f}, "
                f"balanced {cls['balanced_accuracy']:.3f}",
            ),
            caption="Rows are true classes, normalised to per-class recall; predictions "
            "of each fold's CNN on its test fold.",
            extra_html=recall,
        )

    # -- the query's neighbours (whole-catalogue models)
    for res in search_results:
        neighbour_section(
            report,
            res,
            query_image=query_image,
            catalogue_images=catalogue_images,
            query_title="query",
            table_open=False,
        )

    # -- deep models: training curves, reconstructions, latent map, generated images
    for method in ("cnn", "ae", "vae"):
        model = models.get(method)
        if model is not None and getattr(model, "history_", None):
            report.add_figure(
                f"{method.upper()} training curves",
                f"training_{method}.png",
                plot_training_curves(model, title=f"{method}: training on the whole catalogue"),
            )
    rng = np.random.default_rng(seed)
    examples = np.array([rng.choice(np.flatnonzero(y == c)) for c in labels])
    shown = np.concatenate([query_image, catalogue_images[examples]])
    titles = ["query", *class_names]
    for method in ("ae", "vae"):
        model = models.get(method)
        if model is None:
            continue
        report.add_figure(
            f"{method.upper()} reconstructions",
            f"reconstructions_{method}.png",
            plot_reconstructions(
                shown,
                model.reconstruct(shown),
                n_images=len(shown),
                titles=titles,
                title=f"{method}: originals (top) and reconstructions (bottom)",
            ),
        )
        report.add_figure(
            f"{method.upper()} latent map",
            f"latent_{method}.png",
            plot_latent_map(
                model.transform(catalogue_images),
                y,
                label_names=names,
                highlight=model.transform(query_image),
                highlight_label=query_desc,
                title=f"{method} latent space (PCA), coloured by label",
            ),
        )
    if models.get("vae") is not None:
        vae = models["vae"]
        report.add_figure(
            "VAE: more like the query",
            "generated_vae.png",
            plot_generated(
                vae.generate_like(query_image, 16, scale=0.5, random_state=seed),
                title=f"VAE: 16 galaxies generated near the {query_desc} (scale 0.5)",
            ),
        )

    # -- data files, then index.html
    report.write_text("results.csv", _results_csv(rows))
    report.write_text("neighbours.csv", neighbours_csv(search_results))
    report.write_json(
        "results.json",
        {
            **{key: str(v) for key, v in facts.items()},
            "k": k,
            "classes": class_names,
            "class_counts": counts,
            "methods": {
                r["method"]: {
                    **r,
                    "precision_at_k_curve_balanced": s.curve("balanced"),
                    "precision_at_k_curve_mean": s.curve("mean"),
                    "precision_at_k_balanced_per_fold": s.fold_p_at_k(),
                    "fit_seconds": s.fit_seconds,
                    "query_seconds": s.query_seconds,
                    **({"classifier": extra[s.method]} if s.method in extra else {}),
                }
                for r, s in zip(rows, scores, strict=True)
            },
        },
    )
    return report.finish(facts)
