"""A sphinx-gallery image scraper for the figures that :mod:`galaxysim.plotting` returns.

galaxysim's plotting functions build :class:`matplotlib.figure.Figure` objects directly,
without pyplot, so sphinx-gallery's matplotlib scraper (which walks pyplot's figure
list) does not see them. This scraper saves every such figure that an example block
leaves in a module-level variable, in the order the variables were first assigned.
"""

import weakref
from pathlib import PurePosixPath

from matplotlib.figure import Figure
from sphinx_gallery.scrapers import figure_rst

_seen = weakref.WeakSet()


def figure_scraper(block, block_vars, gallery_conf, **kwargs):
    """Save the new, pyplot-free figures in the example's globals; return their rST."""
    figures = []
    for value in block_vars["example_globals"].values():
        if (
            isinstance(value, Figure)
            and value.canvas.manager is None  # pyplot figures: the matplotlib scraper
            and value not in _seen
            and not any(value is f for f in figures)
        ):
            figures.append(value)
    paths = []
    for fig, path in zip(figures, block_vars["image_path_iterator"], strict=False):
        fig.savefig(str(path), **kwargs)
        _seen.add(fig)
        paths.append(PurePosixPath(path))
    return figure_rst(paths, gallery_conf["src_dir"]) if paths else ""
