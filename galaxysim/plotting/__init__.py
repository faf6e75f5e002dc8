"""Matplotlib figures: neighbour montages, training curves, reconstructions, latent maps,
precision@k curves.

Every function returns a :class:`matplotlib.figure.Figure` and never touches pyplot's
state, so it works under any backend (Agg on a headless machine included); save it with
``fig.savefig(path)``. To compose several plots in one figure, tell each where to draw:

- the functions that draw one panel (:func:`plot_confusion_matrix`,
  :func:`plot_latent_map`, :func:`plot_precision_curves`,
  :func:`plot_per_class_precision`) take ``ax=``, the :class:`~matplotlib.axes.Axes`
  to draw in;
- the functions that lay out several panels (:func:`plot_neighbors`,
  :func:`plot_training_curves`, :func:`plot_reconstructions`, :func:`plot_generated`)
  take ``fig=``, an empty :class:`~matplotlib.figure.Figure` or
  :class:`~matplotlib.figure.SubFigure` (one of ``Figure.subfigures()``) to lay them
  out in; their ``title`` becomes its ``suptitle``.

Given ``ax`` or ``fig``, a function creates no figure of its own and returns the
figure that holds what it drew into (the top-level one, which ``savefig`` writes).

Text from the arguments (labels, class and method names, titles) is drawn as written:
a ``$`` is a dollar sign, never the start of mathtext, so a label such as
``"$\\frac{1"`` neither breaks ``savefig`` nor renders as a formula, and a name
starting with ``_`` still gets its legend entry.

Examples
--------
>>> import numpy as np
>>> from matplotlib.figure import Figure
>>> from galaxysim.plotting import plot_confusion_matrix, plot_neighbors
>>> fig = Figure(figsize=(10, 4), layout="constrained")
>>> left, right = fig.subfigures(1, 2)
>>> imgs = np.zeros((4, 8, 8, 3), np.uint8)
>>> plot_neighbors(imgs[0], imgs[1:], fig=left, title="query and neighbours") is fig
True
>>> plot_confusion_matrix([0, 1, 1], [0, 1, 0], ax=right.add_subplot()) is fig
True
>>> len(left.axes), len(right.axes)  # 1 query + 3 neighbours; the matrix and its colorbar
(4, 2)
"""

from galaxysim.plotting._montage import plot_neighbors
from galaxysim.plotting._nn import (
    plot_confusion_matrix,
    plot_generated,
    plot_latent_map,
    plot_reconstructions,
    plot_training_curves,
)
from galaxysim.plotting._retrieval import plot_per_class_precision, plot_precision_curves

__all__ = [
    "plot_confusion_matrix",
    "plot_generated",
    "plot_latent_map",
    "plot_neighbors",
    "plot_per_class_precision",
    "plot_precision_curves",
    "plot_reconstructions",
    "plot_training_curves",
]
