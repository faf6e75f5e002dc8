"""Where a plotting function draws (a new Figure, or the caller's Axes or (Sub)Figure),
and text drawn as written."""

import re

from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase

__all__ = ["literal", "new_or_given_axes", "new_or_given_figure", "root_figure"]

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # all but the line break


def literal(text):
    r"""``text`` as matplotlib should draw it: as written, never parsed as mathtext.

    Every ``$`` is escaped, so a label such as ``"$\frac{1"`` (which mathtext cannot
    parse: ``savefig`` would raise) or ``"$x$"`` is drawn character for character;
    control characters other than the line break (no font has them) become spaces.

    Examples
    --------
    >>> print(literal(r"$\frac{1"), literal("a_b^c$"), literal(3))
    \$\frac{1 a_b^c\$ 3
    """
    return _CONTROL.sub(" ", str(text)).replace("$", r"\$")


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
