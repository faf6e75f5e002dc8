"""The report written by ``galaxysim search --out``: results.csv, PNG montages, index.html.

Every file is written atomically and index.html last, so an interrupted run never
leaves a report that looks complete.
"""

import csv
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from galaxysim import __version__
from galaxysim.utils._io import atomic_write

__all__ = ["MethodResult", "save_figure", "write_report"]


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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    with atomic_write(path) as f:
        f.write(buf.getvalue())


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
    from galaxysim.plotting import plot_neighbors

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_buf = io.StringIO()
    writer = csv.writer(csv_buf)
    writer.writerow(["method", "rank", "index", "label", "distance"])
    sections = []
    for res in results:
        for rank, index, name, dist in res.rows:
            writer.writerow([res.method, rank, index, name, f"{dist:.8g}"])
        fig = plot_neighbors(
            query_image,
            catalogue_images[res.indices],
            labels=res.label_names,
            distances=res.distances,
            indices=res.indices,
            title=res.title or res.method,
        )
        png = f"montage_{res.method}.png"
        save_figure(fig, out / png)
        table = "".join(
            f"<tr><td>{r}</td><td>{i}</td><td>{html.escape(str(n))}</td><td>{d:.6g}</td></tr>"
            for r, i, n, d in res.rows
        )
        sections.append(
            f"<section><h2>{html.escape(res.title or res.method)}</h2>"
            f'<img src="{png}" alt="{html.escape(res.method)} neighbours">'
            "<table><thead><tr><th>rank</th><th>index</th><th>label</th><th>distance</th>"
            f"</tr></thead><tbody>{table}</tbody></table></section>"
        )
    for title, filename, fig in extra_figures:
        save_figure(fig, out / filename)
        sections.append(
            f"<section><h2>{html.escape(title)}</h2>"
            f'<img src="{filename}" alt="{html.escape(title)}"></section>'
        )
    with atomic_write(out / "results.csv", mode="w") as f:
        f.write(csv_buf.getvalue())
    facts = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
    )
    page = _PAGE.format(version=__version__, facts=facts, sections="\n".join(sections))
    with atomic_write(out / "index.html", mode="w") as f:
        f.write(page)
    return out / "index.html"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>galaxysim report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 1.5em auto;
       padding: 0 1em; color: #1d1d1f; background: #fafafa; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
img {{ max-width: 100%; height: auto; display: block; margin: 0.6em 0;
      border: 1px solid #ddd; background: white; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ padding: 0.2em 0.7em; border-bottom: 1px solid #e3e3e3; text-align: left; }}
section {{ background: white; padding: 0.6em 1em 1em; border-radius: 6px;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); margin-bottom: 1em; }}
footer {{ color: #777; font-size: 0.8em; margin-top: 2em; }}
</style></head><body>
<h1>galaxysim similarity search</h1>
<table class="facts">{facts}</table>
{sections}
<footer>galaxysim {version} &middot; <a href="results.csv">results.csv</a></footer>
</body></html>
"""
