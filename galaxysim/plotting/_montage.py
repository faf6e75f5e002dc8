"""Neighbour montages: a query beside its nearest catalogue galaxies."""

import numpy as np

from galaxysim.plotting._base import literal, new_or_given_figure
from galaxysim.utils.validation import check_images

__all__ = ["plot_neighbors", "show_image"]


def show_image(ax, img, *, frame=True):
    """Draw one channels-last image (grey when it has one channel) without ticks.

    ``frame=False`` also hides the axes' spines.
    """
    img = np.asarray(img)
    img = img[..., 0] if img.shape[-1] == 1 else img
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if not frame:
        for spine in ax.spines.values():
            spine.set_visible(False)


def plot_neighbors(
    query,
    neighbors,
    *,
    labels=None,
    distances=None,
    indices=None,
    title=None,
    query_title="query",
    ncols=None,
    panel_size=1.6,
    fig=None,
):
    """Show a query image beside its nearest neighbours, labelled with class and distance.

    Parameters
    ----------
    query : array-like of shape (height, width, n_channels) or (1, height, width, n_channels)
        The query image.
    neighbors : array-like of shape (n_neighbors, height, width, n_channels)
        Neighbour images, nearest first.
    labels : sequence of str, default=None
        Class name of each neighbour.
    distances : array-like of shape (n_neighbors,), default=None
        Distance of each neighbour to the query.
    indices : array-like of shape (n_neighbors,), default=None
        Catalogue index of each neighbour.
    title : str, default=None
        Figure title (for example the method).
    query_title : str, default="query"
        Caption of the query panel.
    ncols : int, default=None
        Panels per row (default: all in one row, at most 6 neighbours per row).
    panel_size : float, default=1.6
        Side of one panel, in inches, of a new figure (not used with ``fig``).
    fig : matplotlib.figure.Figure or matplotlib.figure.SubFigure, default=None
        Where to lay out the panels, for example one of ``Figure.subfigures()`` to
        put the montage beside other plots; ``title`` becomes its ``suptitle``. By
        default a new Figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The new figure, or the figure that holds ``fig``.

    Examples
    --------
    >>> import numpy as np
    >>> imgs = np.zeros((3, 8, 8, 3), np.uint8)
    >>> fig = plot_neighbors(imgs[0], imgs, labels=["a", "b", "c"], distances=[0, 0.1, 0.2])
    >>> len(fig.axes)
    4

    Beside another plot, in one figure:

    >>> from matplotlib.figure import Figure
    >>> both = Figure(figsize=(10, 3))
    >>> left, right = both.subfigures(1, 2)
    >>> plot_neighbors(imgs[0], imgs[1:], fig=left) is both
    True
    >>> len(left.axes), len(right.axes)
    (3, 0)
    """
    query = check_images(query)[0]
    neighbors = check_images(neighbors)
    n = len(neighbors)
    ncols = min(n, 6) if ncols is None else max(1, int(ncols))
    nrows = int(np.ceil(n / ncols))
    fig, root = new_or_given_figure(
        fig, (panel_size * (ncols + 1.2), panel_size * nrows * 1.25 + 0.4), layout=None
    )
    grid = fig.add_gridspec(
        nrows, ncols + 1, wspace=0.08, hspace=0.45, width_ratios=[1.2] + [1] * ncols
    )
    ax = fig.add_subplot(grid[0, 0])
    show_image(ax, query)
    ax.set_title(literal(query_title), fontsize=9, fontweight="bold")
    for side in ax.spines.values():
        side.set_edgecolor("tab:red")
        side.set_linewidth(2.5)
    for i in range(n):
        ax = fig.add_subplot(grid[i // ncols, 1 + i % ncols])
        show_image(ax, neighbors[i])
        parts = [f"#{i + 1}"]
        if indices is not None:
            parts.append(f"[{int(indices[i])}]")
        caption = " ".join(parts)
        if labels is not None:
            caption += f"\n{literal(labels[i])}"
        if distances is not None:
            caption += f"\nd={float(distances[i]):.4g}"
        ax.set_title(caption, fontsize=7)
    if title:
        fig.suptitle(literal(title), fontsize=11)
    return root
