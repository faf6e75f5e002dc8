"""HTML reports of searches and evaluations, rendered from Jinja2 templates.

The templates ship as package data (``galaxysim/report/templates/*.html``) and every
value rendered into them is escaped by the template engine. A :class:`Report` collects
sections (one ``add_*`` function per section) and data files in a staging folder,
writes index.html last and swaps the folder into place whole: a reader sees the
earlier report or the new one, never a mix. :func:`check_report_dir` tells early
whether a folder can take a report (new, empty, or an earlier report). CSV cells that
a spreadsheet would run as formulas are neutralised. Neighbours carry their catalogue
identifiers (row index, file, ra, dec, redshift, label: :class:`SearchResult`); a
search report has one section per query (:class:`SearchQuery`). :func:`write_search_report` and
:func:`write_evaluation_report` compose the two reports of the ``galaxysim`` command;
:func:`format_table` and :func:`format_scores` are the text tables it prints.
"""

from galaxysim.report._folder import check_report_dir
from galaxysim.report._labels import label_name
from galaxysim.report._page import Report, save_figure, table
from galaxysim.report._sections import (
    IDENTIFIERS,
    NEIGHBOUR_COLUMNS,
    SearchQuery,
    SearchResult,
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
    neighbour_table,
)
from galaxysim.report._summary import classifier_summary, evaluation_summary
from galaxysim.report._text import format_scores, format_table
from galaxysim.report._write import (
    neighbours_csv,
    write_evaluation_report,
    write_search_report,
)

__all__ = [
    "IDENTIFIERS",
    "NEIGHBOUR_COLUMNS",
    "Report",
    "SearchQuery",
    "SearchResult",
    "add_confusion_matrix",
    "add_generated",
    "add_latent_map",
    "add_neighbours",
    "add_per_class_precision",
    "add_precision_curves",
    "add_query",
    "add_reconstructions",
    "add_scores",
    "add_training_curves",
    "check_report_dir",
    "classifier_summary",
    "evaluation_summary",
    "format_scores",
    "format_table",
    "label_name",
    "neighbour_table",
    "neighbours_csv",
    "save_figure",
    "table",
    "write_evaluation_report",
    "write_search_report",
]
