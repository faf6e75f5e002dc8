"""The headline figures of cross-validated results, as rows of results.csv/json."""

import numpy as np

from galaxysim.report._labels import label_name

__all__ = ["classifier_summary", "class_counts", "evaluation_summary"]


def class_counts(results, y, label_names=None):
    """``{class name: images}`` of the catalogue, in the order of ``results[0].classes``."""
    y = np.asarray(y)
    return {label_name(c, label_names): int(np.sum(y == c)) for c in results[0].classes}


def evaluation_summary(result, label_names=None):
    """The headline figures of one method: a row of results.csv.

    Every figure is :meth:`SearchCVResult.mean` of a per-fold score (the mean over
    folds); the fold sd is that of the balanced precision@k.

    Parameters
    ----------
    result : SearchCVResult
        One method's cross-validated results.
    label_names : list of str, default=None
        Names of int labels.

    Returns
    -------
    row : dict
        ``method``, ``k``, ``precision_at_k_balanced``, ``precision_at_k_balanced_fold_sd``,
        ``precision_at_k_mean``, ``map_at_k_balanced``, ``map_at_k_mean``,
        ``fit_seconds_per_fold``, ``query_seconds_per_fold``, ``precision_at_k[<class>]``
        for every class, ``cnn_accuracy`` and ``cnn_balanced_accuracy`` (NaN without
        predictions).
    """
    row = {
        "method": result.method,
        "k": result.k,
        "precision_at_k_balanced": result.mean("precision_balanced"),
        "precision_at_k_balanced_fold_sd": result.sd("precision_balanced"),
        "precision_at_k_mean": result.mean("precision_mean"),
        "map_at_k_balanced": result.mean("map_balanced"),
        "map_at_k_mean": result.mean("map_mean"),
        "fit_seconds_per_fold": float(np.mean(result.fit_time)),
        "query_seconds_per_fold": float(np.mean(result.query_time)),
    }
    for label, value in zip(result.classes, result.mean("precision_per_class"), strict=True):
        row[f"precision_at_k[{label_name(label, label_names)}]"] = float(value)
    has_cnn = result.predictions is not None
    row["cnn_accuracy"] = result.mean("accuracy") if has_cnn else float("nan")
    row["cnn_balanced_accuracy"] = result.mean("balanced_accuracy") if has_cnn else float("nan")
    return row


def classifier_summary(result, label_names=None):
    """Accuracy, balanced accuracy, recall per class (means over folds) and the
    out-of-fold confusion matrix of a method's classifier, or ``None``."""
    if result.predictions is None:
        return None
    names = [label_name(c, label_names) for c in result.classes]
    return {
        "accuracy": result.mean("accuracy"),
        "balanced_accuracy": result.mean("balanced_accuracy"),
        "recall_per_class": dict(zip(names, result.mean("recall_per_class"), strict=True)),
        "confusion_matrix": result.confusion_matrix().tolist(),
        "confusion_labels": names,
    }
