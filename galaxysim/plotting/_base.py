"""Where a plotting function draws: a new Figure, or the caller's Axes or (Sub)Figure."""

from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase

__all__ = ["new_or_given_axes", "new_or_given_figure", "root_figure"]


def root_figure(artist):
    """The top-level :class:`~matplotlib.figure.Figure` holding ``artist``.

    An Axes of a SubFigure, or a SubFigure, belongs to the Figure that holds the
    SubFigure; that Figure is what ``savefig`` writes.
    """
    fig = artist if isinstance(artist, FigureBase) else artist.figure
    while not isinstance(fig, Figure):  # SubFigure -> its parent, up to the Figure
        fig = fig.figure
    return fig


def new_or_given_axes(ax, figsize):
    """Return ``(ax, fig)``: the caller's Axes and its Figure, or a new Figure's Axes.

    A new Figure uses the constrained layout; a given Axes is drawn into as it is.
    """
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig.add_subplot(), fig
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes; got {type(ax).__name__}.")
    return ax, root_figure(ax)


def new_or_given_figure(fig, figsize, *, layout="constrained"):
    """Return ``(target, root)``: where to lay out the panels, and the Figure to return.

    ``target`` is the caller's Figure or SubFigure, or a new Figure of ``figsize``.
    """
    if fig is None:
        new = Figure(figsize=figsize, layout=layout)
        return new, new
    if not isinstance(fig, FigureBase):
        raise TypeError(
            f"fig must be a matplotlib Figure or SubFigure (for example one of "
            f"Figure.subfigures()); got {type(fig).__name__}."
        )
    return fig, root_figure(fig)
