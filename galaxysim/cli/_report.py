"""The HTML reports of ``galaxysim search --out`` and ``galaxysim evaluate --out``.

One machinery for both: a :class:`Report` collects sections (figures saved as PNG,
tables, text) and writes index.html from one page template. Every file is written
atomically and index.html last, so an interrupted run never leaves a report that looks
complete.
"""

import csv
import html
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxysim import __version__
from galaxysim.utils._io import atomic_write

__all__ = ["MethodResult", "Report", "save_figure", "write_report"]


@dataclass
class MethodResult:
    """Ranked neighbours of one query for one method (one table of the report)."""

    method: str
    distances: np.ndarray
    indices: np.ndarray
    label_names: list
    title: str = ""
    rows: list = field(default_factory=list)  # (rank, index, label name, distance)

    def __post_init__(self):
        self.rows = [
            (rank + 1, int(i), name, float(d))
            for rank, (i, name, d) in enumerate(
                zip(self.indices, self.label_names, self.distances, strict=True)
            )
        ]


def format_table(result):
    """The ranked table printed for one method."""
    lines = [
        f"{result.title or result.method}",
        f"{'rank':>4}  {'index':>6}  {'label':<26}  distance",
    ]
    for rank, index, name, dist in result.rows:
        lines.append(f"{rank:>4}  {index:>6}  {name:<26}  {dist:.6g}")
    return "\n".join(lines)


def save_figure(fig, path):
    """Save a matplotlib figure as PNG, atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def html_table(header, rows, *, numeric_format="{:.3f}"):
    """An HTML table; floats are formatted with ``numeric_format``, the rest escaped."""

    def cell(v, tag):
        if isinstance(v, float | np.floating):
            text = "&ndash;" if np.isnan(v) else numeric_format.format(v)
            return f'<{tag} class="num">{text}</{tag}>'
        if isinstance(v, int | np.integer):
            return f'<{tag} class="num">{v}</{tag}>'
        return f"<{tag}>{html.escape(str(v))}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Report:
    """A report folder: PNG figures, tables and data files, then index.html.

    Parameters
    ----------
    out_dir : path-like
        Report folder (created).
    title : str
        Page heading.
    """

    def __init__(self, out_dir, title):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.sections = []  # (anchor, heading, html)
        self.links = []

    def _add(self, heading, body):
        anchor = _slug(heading)
        taken = {a for a, _, _ in self.sections}
        base, n = anchor, 2
        while anchor in taken:
            anchor, n = f"{base}-{n}", n + 1
        self.sections.append((anchor, heading, body))

    def add_figure(self, heading, filename, fig, *, caption="", extra_html=""):
        """Save ``fig`` as ``filename`` and show it in a section."""
        save_figure(fig, self.out / filename)
        cap = f"<p class='caption'>{html.escape(caption)}</p>" if caption else ""
        self._add(
            heading,
            f'{cap}<img src="{html.escape(filename)}" alt="{html.escape(heading)}">{extra_html}',
        )

    def add_html(self, heading, body):
        """A section with ready HTML (a table, say)."""
        self._add(heading, body)

    def write_text(self, filename, text, *, link=True):
        """Write a data file (CSV, JSON) atomically and link it in the footer."""
        with atomic_write(self.out / filename, mode="w") as f:
            f.write(text)
        if link:
            self.links.append(filename)

    def write_json(self, filename, obj):
        """Write ``obj`` as indented JSON (NaN written as null)."""
        self.write_text(filename, json.dumps(_json_safe(obj), indent=2) + "\n")

    def finish(self, facts):
        """Write index.html (last) and return its path.

        Parameters
        ----------
        facts : dict
            Key/value lines shown at the top of the page.
        """
        facts_html = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in facts.items()
        )
        nav = ""
        if len(self.sections) > 2:
            nav = (
                "<nav>"
                + " &middot; ".join(
                    f'<a href="#{a}">{html.escape(h)}</a>' for a, h, _ in self.sections
                )
                + "</nav>"
            )
        body = "\n".join(
            f'<section id="{a}"><h2>{html.escape(h)}</h2>{b}</section>' for a, h, b in self.sections
        )
        links = " &middot; ".join(
            f'<a href="{html.escape(n)}">{html.escape(n)}</a>' for n in self.links
        )
        page = _PAGE.format(
            title=html.escape(self.title),
            version=__version__,
            facts=facts_html,
            nav=nav,
            sections=body,
            links=links,
        )
        with atomic_write(self.out / "index.html", mode="w") as f:
            f.write(page)
        return self.out / "index.html"


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


def neighbour_section(
    report, result, *, query_image, catalogue_images, query_title="query", table_open=True
):
    """Add one method's montage and ranked table to ``report``."""
    from galaxysim.plotting import plot_neighbors

    fig = plot_neighbors(
        query_image,
        catalogue_images[result.indices],
        labels=result.label_names,
        distances=result.distances,
        indices=result.indices,
        title=result.title or result.method,
        query_title=query_title,
    )
    table = html_table(
        ["rank", "index", "label", "distance"],
        [(r, i, n, f"{d:.6g}") for r, i, n, d in result.rows],
    )
    report.add_figure(
        result.title or result.method,
        f"montage_{result.method}.png",
        fig,
        extra_html=f"<details{' open' if table_open else ''}><summary>ranked table</summary>"
        f"{table}</details>",
    )


def neighbours_csv(results):
    """CSV text of ranked neighbours: method, rank, index, label, distance."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["method", "rank", "index", "label", "distance"])
    for res in results:
        for rank, index, name, dist in res.rows:
            writer.writerow([res.method, rank, index, name, f"{dist:.8g}"])
    return buf.getvalue()


def write_report(out_dir, results, *, query_image, catalogue_images, summary, extra_figures=()):
    """Write results.csv, one montage PNG per method and index.html into ``out_dir``.

    Parameters
    ----------
    out_dir : path-like
        Report folder (created).
    results : list of MethodResult
        One entry per method.
    query_image : ndarray of shape (1, H, W, C)
        The query as searched.
    catalogue_images : ndarray of shape (n, H, W, C)
        The catalogue, indexed by ``MethodResult.indices``.
    summary : dict
        Key/value lines shown at the top of the page (catalogue, query, ...).
    extra_figures : sequence of (title, filename, Figure), default=()
        Further figures to save and show.

    Returns
    -------
    index : pathlib.Path
        Path of index.html.
    """
    report = Report(out_dir, "galaxysim similarity search")
    for res in results:
        neighbour_section(report, res, query_image=query_image, catalogue_images=catalogue_images)
    for title, filename, fig in extra_figures:
        report.add_figure(title, filename, fig)
    report.write_text("results.csv", neighbours_csv(results))
    return report.finish(summary)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 1.5em auto;
       padding: 0 1em; color: #1d1d1f; background: #fafafa; line-height: 1.4; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin: 0.3em 0 0.4em; }}
img {{ max-width: 100%; max-height: 80vh; width: auto; height: auto; display: block;
      margin: 0.6em 0; border: 1px solid #ddd; background: white; }}
table {{ border-collapse: collapse; font-size: 0.9em; margin: 0.4em 0; }}
td, th {{ padding: 0.2em 0.7em; border-bottom: 1px solid #e3e3e3; text-align: left; }}
table.facts th, td:first-child {{ white-space: nowrap; }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
section {{ background: white; padding: 0.6em 1em 1em; border-radius: 6px;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); margin-bottom: 1em; overflow-x: auto; }}
nav {{ font-size: 0.9em; margin: 0.8em 0 1.2em; }}
.caption {{ color: #444; font-size: 0.92em; margin: 0.2em 0; }}
summary {{ cursor: pointer; color: #555; font-size: 0.9em; }}
footer {{ color: #777; font-size: 0.8em; margin-top: 2em; }}
</style></head><body>
<h1>{title}</h1>
<table class="facts">{facts}</table>
{nav}
{sections}
<footer>galaxysim {version} &middot; {links}</footer>
</body></html>
"""
