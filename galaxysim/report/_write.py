"""The two reports, composed of sections: similarity search and evaluation."""

import csv
import dataclasses
import io
import re
from collections.abc import Mapping

import numpy as np

from galaxysim.report._labels import label_name
from galaxysim.report._page import Report
from galaxysim.report._sections import (
    NEIGHBOUR_COLUMNS,
    SearchQuery,
    add_confusion_matrix,
    add_generated,
    add_latent_map,
    add_neighbours,
    add_per_class_precision,
    add_precision_curves,
    add_query,
    add_reconstructions,
    add_scores,
    add_training_curves,
)
from galaxysim.report._summary import class_counts, classifier_summary, evaluation_summary

__all__ = [
    "neighbours_csv",
    "write_evaluation_report",
    "write_search_report",
]


# cells a spreadsheet would run as a formula (OWASP, "CSV Injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_NUMBER = re.compile(r"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|nan)")


def spreadsheet_safe(value):
    """A CSV cell that a spreadsheet shows as written and never runs as a formula.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a line break (OWASP's
    advice on CSV injection) gets a leading ``'``; numbers, and text that is just a
    number such as ``"-0.5"``, stay as they are.

    Examples
    --------
    >>> print(spreadsheet_safe('=HYPERLINK("http://x", "y")'))
    '=HYPERLINK("http://x", "y")
    >>> spreadsheet_safe("-0.5")
    '-0.5'
    >>> spreadsheet_safe("-1+cmd"), spreadsheet_safe(-3), spreadsheet_safe("Round Smooth")
    ("'-1+cmd", -3, 'Round Smooth')
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_text(header, rows):
    """CSV text of ``header`` and ``rows``, every cell made :func:`spreadsheet_safe`."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in (header, *rows):
        writer.writerow([spreadsheet_safe(v) for v in row])
    return buf.getvalue()


def _csv_value(v):
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.6g}"
    return v


def _results_csv(rows):
    fields = list(dict.fromkeys(key for row in rows for key in row))
    return csv_text(fields, [[_csv_value(row.get(key, "")) for key in fields] for row in rows])


def _neighbour_value(key, value):
    if value is None:
        return ""  # a column the catalogue lacks
    if key == "distance":
        return f"{value:.8g}"
    if isinstance(value, float):
        return "" if np.isnan(value) else repr(value)  # every digit of ra and dec
    return value


def neighbours_csv(results, *, query_column=None):
    """CSV text of ranked neighbours, one row per neighbour.

    The columns are :data:`NEIGHBOUR_COLUMNS`, in this order: ``method, rank, index,
    file, ra, dec, redshift, label, distance``; an identifier the catalogue lacks
    (``file`` of a Galaxy10 file, ``ra`` of a folder) is an empty column, a value
    missing for one galaxy (a NaN redshift) an empty cell. Neighbours of several
    queries add a last column, ``query``, naming each row's query (after the nine, so
    that those keep their places).

    Text that a spreadsheet would run as a formula (a label or file name
    ``=HYPERLINK(...)``) is written with a leading ``'`` (:func:`spreadsheet_safe`).

    Parameters
    ----------
    results : list of SearchResult
        The neighbours, per method (and query).
    query_column : bool, default=None
        Add the ``query`` column; ``None``: when the results are of several queries.

    Returns
    -------
    text : str

    Examples
    --------
    >>> from galaxysim.report import SearchResult
    >>> neighbours_csv([SearchResult("mse", [0.5], [3], ["a"])]).splitlines()
    ['method,rank,index,file,ra,dec,redshift,label,distance', 'mse,1,3,,,,,a,0.5']
    >>> res = SearchResult("mse", [-0.5], [3], ["=1+1"], identifiers={"file": ["@x.png"]})
    >>> neighbours_csv([res]).splitlines()[1]
    "mse,1,3,'@x.png,,,,'=1+1,-0.5"
    """
    if query_column is None:
        query_column = len({res.query for res in results}) > 1
    header = [*NEIGHBOUR_COLUMNS, *(["query"] if query_column else [])]
    return csv_text(
        header,
        [
            [
                res.method,
                *(_neighbour_value(key, row[key]) for key in NEIGHBOUR_COLUMNS[1:]),
                *([res.query] if query_column else []),
            ]
            for res in results
            for row in res.rows
        ],
    )


def write_search_report(
    out_dir,
    results,
    *,
    query_image=None,
    queries=None,
    catalogue_images,
    summary,
    extra_figures=(),
):
    """Write a similarity-search report: one section per query, with a montage and a
    ranked table per method, then results.csv, results.json and index.html.

    Parameters
    ----------
    out_dir : path-like
        Report folder: new, empty, or an earlier galaxysim report, which is replaced
        whole (:class:`Report`); any other folder is refused.
    results : list of SearchResult
        One entry per method (and query: each result's ``query`` names its query).
    query_image : ndarray of shape (1, H, W, C), default=None
        The query as searched, for a search of one query; or give ``queries``.
    queries : list of SearchQuery, default=None
        The queries, each with a section (in this order) holding its results.
    catalogue_images : ndarray of shape (n, H, W, C) or mapping of int to ndarray
        The catalogue, indexed by ``SearchResult.indices``; or only the neighbours'
        images, as ``{catalogue index: image (H, W, C)}`` holding every index of the
        results (a search of a persisted index reads just those from the catalogue).
    summary : dict
        Key/value lines shown at the top of the page (catalogue, query, ...).
    extra_figures : sequence of (title, filename, Figure), default=()
        Further figures to save and show.

    Returns
    -------
    index : pathlib.Path
        Path of index.html, written last.

    Notes
    -----
    ``results.csv`` has the columns of :func:`neighbours_csv` (``query`` last when
    there are several queries); ``results.json`` holds the summary and, per query, its
    name, description, note, matching (what matching it to the catalogue estimated,
    empty when it was not matched) and identifiers (a catalogue member's ``index``,
    ``file``, ...) and its neighbours per method with the same keys as the CSV (null
    for what the catalogue lacks). The montages are ``montage_<method>.png`` for one
    query and ``montage_<n>_<method>.png`` for query ``n`` (from 1) of several; a
    matched query's before/after figure is ``query_matched.png`` (``query_<n>_matched.png``).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from galaxysim.report import SearchResult
    >>> images = np.zeros((3, 8, 8, 3), np.uint8)
    >>> res = SearchResult("mse", [0.0, 1.0], [2, 0], ["a & b", "c"])
    >>> index = write_search_report(tempfile.mkdtemp(), [res], query_image=images[:1],
    ...                             catalogue_images=images, summary={"query": "toy"})
    >>> sorted(p.name for p in index.parent.iterdir())
    ['.galaxysim-report', 'index.html', 'montage_mse.png', 'results.csv', 'results.json']
    >>> "a &amp; b" in index.read_text(encoding="utf-8")
    True
    >>> shown = {2: images[2], 0: images[0]}  # the neighbours' images only
    >>> index = write_search_report(tempfile.mkdtemp(), [res], query_image=images[:1],
    ...                             catalogue_images=shown, summary={"query": "toy"})
    >>> (index.parent / "montage_mse.png").is_file()
    True
    """
    if (queries is None) == (query_image is None):
        raise ValueError("Give either query_image (one query) or queries.")
    if queries is None:
        queries = [SearchQuery("query", query_image)]
        results = [dataclasses.replace(res, query="query") for res in results]
    queries = list(queries)
    names = [q.name for q in queries]
    if len(set(names)) != len(names):
        raise ValueError(f"Query names must differ; got {names}.")
    unknown = sorted({res.query for res in results} - set(names))
    if unknown:
        raise ValueError(f"Results of unknown queries {unknown}; the queries are {names}.")
    several = len(queries) > 1
    with Report(out_dir, "galaxysim similarity search") as report:
        for n, query in enumerate(queries, start=1):
            mine = [res for res in results if res.query == query.name]
            what = query.description or query.name
            add_query(
                report,
                query,
                mine,
                catalogue_images=catalogue_images,
                heading=f"Query {n}: {what}" if several else f"Query: {what}",
                file_prefix=f"montage_{n}_" if several else "montage_",
                matched_filename=f"query_{n}_matched.png" if several else "query_matched.png",
            )
        for title, filename, fig in extra_figures:
            report.add_figure(title, filename, fig)
        report.write_text("results.csv", neighbours_csv(results, query_column=several))
        report.write_json(
            "results.json",
            {
                "summary": {str(k): str(v) for k, v in summary.items()},
                "columns": list(NEIGHBOUR_COLUMNS) + (["query"] if several else []),
                "queries": [
                    {
                        "name": q.name,
                        "description": q.description,
                        "note": q.note,
                        "matching": q.matching,
                        "identifiers": dict(q.identifiers or {}),
                        "results": [
                            {"method": res.method, "title": res.title, "neighbours": res.rows}
                            for res in results
                            if res.query == q.name
                        ],
                    }
                    for q in queries
                ],
            },
        )
        return report.finish(summary)


def write_evaluation_report(
    out_dir,
    cv_results,
    *,
    y,
    label_names=None,
    facts=None,
    search_results=(),
    query_image=None,
    query_desc="query",
    catalogue_images=None,
    models=None,
    random_state=0,
):
    """Write an evaluation report: index.html, PNGs, results.csv, results.json, neighbours.csv.

    Sections: the cross-validated scores (and per class), precision@k curves,
    precision per class, the confusion matrix of every method whose classifier
    predicted, then for the query the neighbour montage of every method, and for every
    deep model the training curves, reconstructions and latent map (autoencoders) and
    generated images (VAEs).

    Parameters
    ----------
    out_dir : path-like
        Report folder: new, empty, or an earlier galaxysim report, which is replaced
        whole (:class:`Report`); any other folder is refused.
    cv_results : dict of str to SearchCVResult or list of SearchCVResult
        Cross-validated results, one per method (:func:`~galaxysim.model_selection.cross_validate_search`).
    y : ndarray of shape (n_samples,)
        Catalogue labels (class counts, chance levels, the latent map's colours).
    label_names : list of str, default=None
        Names of int labels.
    facts : dict, default=None
        Key/value lines at the top of the page (and in results.json).
    search_results : list of SearchResult, default=()
        The query's neighbours per method, from models fitted on the whole catalogue.
    query_image : ndarray of shape (1, H, W, C), default=None
        The query; needed with ``search_results`` or ``models``.
    query_desc : str, default="query"
        What the query is ("Milky Way model").
    catalogue_images : ndarray of shape (n_samples, H, W, C), default=None
        The catalogue; needed with ``search_results`` or ``models``.
    models : dict of str to fitted model, default=None
        Deep models fitted on the whole catalogue, by method: training curves where
        a model has ``history_``, reconstructions and latent map where it has
        ``reconstruct``, generated images where it has ``generate_like``.
    random_state : int, default=0
        Seed of the generated images and of the example galaxy shown for each class.

    Returns
    -------
    index : pathlib.Path
        Path of index.html, written last.

    Examples
    --------
    >>> import tempfile
    >>> from galaxysim.datasets import make_galaxies
    >>> from galaxysim.model_selection import cross_validate_search
    >>> from galaxysim.neighbors import NearestGalaxy
    >>> from galaxysim.pipeline import make_search_pipeline
    >>> from galaxysim.preprocessing import PixelFlatten
    >>> X, y = make_galaxies(40, image_size=16, random_state=0)
    >>> pixels = make_search_pipeline(PixelFlatten(), NearestGalaxy())
    >>> cv = cross_validate_search({"mse": pixels}, X, y, cv=2, k=3, random_state=0)
    >>> index = write_evaluation_report(tempfile.mkdtemp(), cv, y=y)
    >>> sorted(p.name for p in index.parent.iterdir())  # doctest: +NORMALIZE_WHITESPACE
    ['.galaxysim-report', 'index.html', 'neighbours.csv', 'precision_curves.png',
     'precision_per_class.png', 'results.csv', 'results.json']
    """
    results = list(cv_results.values()) if isinstance(cv_results, Mapping) else list(cv_results)
    if not results:
        raise ValueError("cv_results is empty.")
    models = dict(models or {})
    facts = dict(facts or {})
    if (search_results or models) and (query_image is None or catalogue_images is None):
        raise ValueError("search_results and models need query_image and catalogue_images.")
    y = np.asarray(y)
    with Report(out_dir, "galaxysim evaluation") as report:
        k = results[0].k
        labels = results[0].classes
        class_names = [label_name(c, label_names) for c in labels]
        rows = [evaluation_summary(res, label_names) for res in results]

        add_scores(report, results, y=y, label_names=label_names)
        add_precision_curves(report, results)
        add_per_class_precision(report, results, y=y, label_names=label_names)
        classifiers = {}
        for res in results:
            summary = classifier_summary(res, label_names)
            if summary is not None:
                classifiers[res.method] = summary
                add_confusion_matrix(report, res, label_names=label_names)

        # the query's neighbours and the deep models, all fitted on the whole catalogue
        for res in search_results:
            add_neighbours(
                report,
                res,
                query_image=query_image,
                catalogue_images=catalogue_images,
                query_title="query",
                table_open=False,
            )
        for method, model in models.items():
            if getattr(model, "history_", None):
                add_training_curves(report, model, method=method)
        autoencoders = {m: model for m, model in models.items() if hasattr(model, "reconstruct")}
        if autoencoders:
            rng = np.random.default_rng(random_state)
            examples = np.array([rng.choice(np.flatnonzero(y == c)) for c in labels])
            shown = np.concatenate([query_image, catalogue_images[examples]])
            for method, model in autoencoders.items():
                add_reconstructions(
                    report, model, shown, method=method, titles=["query", *class_names]
                )
                add_latent_map(
                    report,
                    model,
                    catalogue_images,
                    y,
                    method=method,
                    label_names=label_names,
                    query_image=query_image,
                    query_desc=query_desc,
                )
        for method, model in models.items():
            if hasattr(model, "generate_like"):
                add_generated(
                    report,
                    model,
                    query_image,
                    method=method,
                    query_desc=query_desc,
                    random_state=random_state,
                )

        # data files, then index.html
        report.write_text("results.csv", _results_csv(rows))
        report.write_text("neighbours.csv", neighbours_csv(search_results))
        report.write_json(
            "results.json",
            {
                **{key: str(v) for key, v in facts.items()},
                "k": k,
                "classes": class_names,
                "class_counts": class_counts(results, y, label_names),
                "methods": {
                    row["method"]: {
                        **row,
                        "precision_at_k_curve_balanced": res.mean("precision_curve_balanced"),
                        "precision_at_k_curve_mean": res.mean("precision_curve_mean"),
                        "precision_at_k_balanced_per_fold": res.fold_scores["precision_balanced"],
                        "fit_seconds": res.fit_time,
                        "query_seconds": res.query_time,
                        **(
                            {"classifier": classifiers[res.method]}
                            if res.method in classifiers
                            else {}
                        ),
                    }
                    for row, res in zip(rows, results, strict=True)
                },
            },
        )
        return report.finish(facts)
