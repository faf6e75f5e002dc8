"""A report: sections rendered from Jinja2 templates, data files, then index.html,
staged and swapped into place whole."""

import io
import json
import re
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from galaxysim import __version__
from galaxysim.report._folder import ReportFolder
from galaxysim.utils._io import atomic_write

__all__ = ["Report", "save_figure", "table"]

# templates ship as package data (galaxysim/report/templates/*.html); every value
# rendered into them is escaped by the engine
_ENV = Environment(
    loader=PackageLoader("galaxysim.report", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


def render(template, **context):
    """Render ``templates/<template>`` (escaping every value) into HTML markup."""
    return Markup(_ENV.get_template(template).render(**context))


def save_figure(fig, path):
    """Save a matplotlib figure as PNG, atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : path-like
        Destination PNG; an interrupted write leaves any previous file in place.

    Examples
    --------
    >>> import os, tempfile
    >>> from matplotlib.figure import Figure
    >>> path = os.path.join(tempfile.mkdtemp(), "fig.png")
    >>> save_figure(Figure(figsize=(1, 1)), path)
    >>> open(path, "rb").read(4)
    b'\\x89PNG'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def _cell(value, numeric_format):
    if isinstance(value, float | np.floating):
        text = "\N{EN DASH}" if np.isnan(value) else numeric_format.format(value)
        return {"text": text, "num": True}
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return {"text": str(value), "num": True}
    return {"text": str(value), "num": False}


def table(header, rows, *, numeric_format="{:.3f}"):
    """Cells of an HTML table for the templates' ``table`` macro.

    Floats are formatted with ``numeric_format`` (NaN as a dash) and right-aligned
    like ints; everything else is shown as text (escaped when rendered).

    Parameters
    ----------
    header : sequence
        Column headings.
    rows : sequence of sequence
        The rows.
    numeric_format : str, default="{:.3f}"
        Format of floats.

    Returns
    -------
    table : dict
        ``{"header": cells, "rows": [cells, ...]}``, each cell ``{"text", "num"}``.

    Examples
    --------
    >>> table(["a", "b"], [["x & y", 0.5]])["rows"]
    [[{'text': 'x & y', 'num': False}, {'text': '0.500', 'num': True}]]
    """
    return {
        "header": [_cell(h, numeric_format) for h in header],
        "rows": [[_cell(v, numeric_format) for v in row] for row in rows],
    }


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def file_stem(name):
    """``name`` made safe as part of a file name (method names chosen by a user)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "method"


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return None if np.isnan(obj) else float(obj)
    return obj


class Report:
    """A report folder: PNG figures, sections and data files, then index.html.

    Each section is rendered from a template of ``galaxysim/report/templates``. The
    files are written into a fresh staging folder beside ``out_dir`` (index.html last)
    and :meth:`finish` swaps it into place whole, so a reader of ``out_dir`` sees the
    earlier complete report or the new complete one, never a mix of two runs, and an
    interrupted run leaves the earlier report as it was. ``out_dir`` must be new, empty
    or an earlier galaxysim report holding only its own files (it is then replaced);
    anything else is refused, never deleted (:func:`check_report_dir`). The staging
    folders of runs that were killed are removed by the next report written there.

    Use it as a context manager (or call :meth:`discard`) to remove the staging
    folder at once when building the report fails.

    Parameters
    ----------
    out_dir : path-like
        Report folder (created, or replaced whole by :meth:`finish`).
    title : str
        Page heading.

    Attributes
    ----------
    path : pathlib.Path
        The report folder, absolute.
    out : pathlib.Path
        Where the files are written until :meth:`finish`: the staging folder.
    sections : list of dict
        ``{"anchor", "heading", "body"}`` of every section so far.
    links : list of str
        Data files linked in the footer.

    Examples
    --------
    >>> import tempfile
    >>> with Report(tempfile.mkdtemp(), "a & b") as report:
    ...     report.add_section("Numbers", "figure.html", caption="<none>", filename="x.png",
    ...                        alt="x", table=None)
    ...     index = report.finish({"catalogue": "toy"})
    >>> page = index.read_text(encoding="utf-8")
    >>> "<h1>a &amp; b</h1>" in page, "&lt;none&gt;" in page
    (True, True)
    """

    def __init__(self, out_dir, title):
        self._folder = ReportFolder(out_dir)
        self._given = Path(out_dir)
        self.path = self._folder.dest
        self.out = self._folder.staging
        self.title = title
        self.sections = []
        self.links = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.discard()  # nothing left to remove after finish

    def discard(self):
        """Remove the staging folder; ``out_dir`` is left as it was (after :meth:`finish`,
        nothing to do)."""
        self._folder.discard()

    def add_section(self, heading, template, **context):
        """Add a section whose body is ``template`` rendered with ``context``.

        Parameters
        ----------
        heading : str
            Section heading (also its anchor, made unique).
        template : str
            File name in ``galaxysim/report/templates``.
        **context : dict
            Template variables (escaped when rendered).
        """
        anchor = _slug(heading)
        taken = {s["anchor"] for s in self.sections}
        base, n = anchor, 2
        while anchor in taken:
            anchor, n = f"{base}-{n}", n + 1
        body = render(template, **context)
        self.sections.append({"anchor": anchor, "heading": heading, "body": body})

    def add_figure(self, heading, filename, fig, *, caption="", table=None):
        """Save ``fig`` as ``filename`` and show it in a section, with an optional table.

        Parameters
        ----------
        heading : str
            Section heading (and the image's alt text).
        filename : str
            PNG file name in the report folder.
        fig : matplotlib.figure.Figure
            The figure.
        caption : str, default=""
            Text above the figure.
        table : dict, default=None
            A :func:`table` shown below the figure.
        """
        save_figure(fig, self.out / filename)
        self.add_section(
            heading, "figure.html", caption=caption, filename=filename, alt=heading, table=table
        )

    def write_text(self, filename, text, *, link=True):
        """Write a data file (CSV, JSON) atomically, as UTF-8, and link it in the footer."""
        with atomic_write(self.out / filename, mode="w") as f:
            f.write(text)
        if link:
            self.links.append(filename)

    def write_json(self, filename, obj):
        """Write ``obj`` as indented JSON (NaN written as null)."""
        self.write_text(filename, json.dumps(_json_safe(obj), indent=2) + "\n")

    def finish(self, facts):
        """Write index.html (last), swap the report into place and return its path.

        Parameters
        ----------
        facts : dict
            Key/value lines shown at the top of the page.

        Returns
        -------
        index : pathlib.Path
            ``index.html`` in the report folder (``out_dir / "index.html"``).
        """
        page = render(
            "page.html",
            title=self.title,
            version=__version__,
            facts=[(str(k), str(v)) for k, v in facts.items()],
            sections=self.sections,
            links=self.links,
        )
        with atomic_write(self.out / "index.html", mode="w") as f:
            f.write(page)
        self._folder.commit()
        return self._given / "index.html"
