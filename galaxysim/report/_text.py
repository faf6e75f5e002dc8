"""Plain-text tables of results, as the ``galaxysim`` command prints them."""

import numpy as np

from galaxysim.report._summary import evaluation_summary

__all__ = ["format_scores", "format_table"]


def format_table(result):
    """The ranked table of one method's neighbours, as text.

    Columns: rank, index, the identifiers the catalogue has (``file``, ``ra``,
    ``dec``, ``redshift``; NaN shown as ``-``), label, distance.

    Parameters
    ----------
    result : SearchResult
        The neighbours.

    Returns
    -------
    text : str

    Examples
    --------
    >>> from galaxysim.report import SearchResult
    >>> print(format_table(SearchResult("mse", [0.5], [3], ["Round Smooth"], title="mse: top 1")))
    mse: top 1
    rank   index  label                       distance
       1       3  Round Smooth                0.5
    >>> print(format_table(SearchResult("mse", [0.5], [3], ["Spiral"],
    ...                                 identifiers={"file": ["images/g3.png"]})))
    mse
    rank   index  file           label                       distance
       1       3  images/g3.png  Spiral                      0.5
    """
    fmt = {"ra": "{:11.6f}", "dec": "{:11.6f}", "redshift": "{:9.5f}"}
    width = {"ra": 11, "dec": 11, "redshift": 9}
    if "file" in result.columns:
        width["file"] = max([4, *(len(r["file"]) for r in result.rows)])

    def cell(key, value):
        if key == "file":
            return f"{value:<{width['file']}}"
        return f"{'-' if np.isnan(value) else fmt[key].format(value):>{width[key]}}"

    label_width = max([26, *(len(r["label"]) for r in result.rows)])
    head = [f"{'rank':>4}", f"{'index':>6}"]
    head += [cell("file", "file") if k == "file" else f"{k:>{width[k]}}" for k in result.columns]
    lines = [
        f"{result.title or result.method}",
        "  ".join([*head, f"{'label':<{label_width}}", "distance"]),
    ]
    for row in result.rows:
        cells = [f"{row['rank']:>4}", f"{row['index']:>6}"]
        cells += [cell(k, row[k]) for k in result.columns]
        cells += [f"{row['label']:<{label_width}}", f"{row['distance']:.6g}"]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def format_scores(results, label_names=None):
    """The cross-validated scores of every method, one line each, as text.

    Columns: balanced precision@k (mean over folds) and its sd over folds, mean
    precision@k, balanced mAP@k, the CNN's balanced accuracy (``-`` for methods
    without a classifier), fit and query seconds per fold.

    Parameters
    ----------
    results : dict of str to SearchCVResult or list of SearchCVResult
        One per method.
    label_names : list of str, default=None
        Names of int labels.

    Returns
    -------
    text : str
    """
    results = list(results.values()) if isinstance(results, dict) else list(results)
    k = results[0].k if results else 10
    head = (
        f"{'method':<8} {'bal p@' + str(k):>9} {'sd':>6} {'mean p@' + str(k):>10} "
        f"{'bal mAP@' + str(k):>10} {'CNN bal acc':>11} {'fit s':>8} {'query s':>8}"
    )
    lines = [head]
    for res in results:
        row = evaluation_summary(res, label_names)
        acc = row["cnn_balanced_accuracy"]
        lines.append(
            f"{res.method:<8} {row['precision_at_k_balanced']:>9.3f} "
            f"{row['precision_at_k_balanced_fold_sd']:>6.3f} "
            f"{row['precision_at_k_mean']:>10.3f} {row['map_at_k_balanced']:>10.3f} "
            f"{'-' if np.isnan(acc) else f'{acc:.3f}':>11} "
            f"{row['fit_seconds_per_fold']:>8.2f} {row['query_seconds_per_fold']:>8.2f}"
        )
    return "\n".join(lines)
