"""Figures of retrieval quality: precision@k curves and per-class precision."""

import numpy as np

from galaxysim.plotting._base import literal, new_or_given_axes

__all__ = ["plot_per_class_precision", "plot_precision_curves"]


def plot_precision_curves(curves, *, chance=None, ylabel="precision@k", title=None, ax=None):
    """Plot precision@k against k, one line per method.

    Parameters
    ----------
    curves : dict
        ``{method name: sequence of precision@k for k = 1, 2, ...}``.
    chance : float, default=None
        Precision of a random ranking, drawn as a dotted line (``1 / n_classes`` for
        balanced precision).
    ylabel : str, default="precision@k"
        Y axis label.
    title : str, default=None
        Axes title.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw in; by default the one Axes of a new Figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The new figure, or the figure that holds ``ax``.

    Examples
    --------
    >>> fig = plot_precision_curves({"mse": [0.6, 0.55, 0.5], "cnn": [0.8, 0.78, 0.77]})
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['mse', 'cnn']
    """
    if not curves:
        raise ValueError("curves is empty: give {method: [precision@1, precision@2, ...]}.")
    ax, fig = new_or_given_axes(ax, (6.4, 3.8))
    markers = "os^Dv<>ph*"
    kmax = 1
    lines = []
    for i, (name, values) in enumerate(curves.items()):
        values = np.asarray(values, dtype=float)
        if values.ndim != 1 or len(values) == 0:
            raise ValueError(f"curve {name!r} must be a non-empty 1-D sequence.")
        ks = np.arange(1, len(values) + 1)
        kmax = max(kmax, len(values))
        (line,) = ax.plot(ks, values, marker=markers[i % len(markers)], ms=4, label=literal(name))
        lines.append(line)
    if chance is not None:
        lines.append(ax.axhline(chance, color="grey", ls=":", lw=1.2, label="chance"))
    ax.set_xlabel("k (neighbours)")
    ax.set_ylabel(literal(ylabel))
    ax.set_xticks(np.unique(np.linspace(1, kmax, min(kmax, 10)).round().astype(int)))
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(handles=lines, fontsize=8, ncols=2)  # a name starting "_" is kept too
    if title:
        ax.set_title(literal(title))
    return fig


def plot_per_class_precision(per_class, *, chance=None, ylabel="precision@k", title=None, ax=None):
    """Grouped bar chart of per-class precision, one bar colour per method.

    Parameters
    ----------
    per_class : dict
        ``{method name: {class name: precision}}``; every method lists the same classes.
    chance : dict, default=None
        ``{class name: precision of a random ranking}`` (the class's share of the
        catalogue), drawn as short black ticks.
    ylabel : str, default="precision@k"
        Y axis label.
    title : str, default=None
        Axes title.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw in; by default the one Axes of a new Figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The new figure, or the figure that holds ``ax``.

    Examples
    --------
    >>> fig = plot_per_class_precision({"mse": {"spiral": 0.7, "elliptical": 0.5},
    ...                                 "cnn": {"spiral": 0.9, "elliptical": 0.8}})
    >>> len(fig.axes[0].patches)
    4
    """
    if not per_class:
        raise ValueError("per_class is empty: give {method: {class: precision}}.")
    methods = list(per_class)
    classes = list(per_class[methods[0]])
    for m in methods:
        if list(per_class[m]) != classes:
            raise ValueError(f"method {m!r} lists other classes than {methods[0]!r}.")
    n_m, n_c = len(methods), len(classes)
    width = 0.8 / n_m
    x = np.arange(n_c)
    ax, fig = new_or_given_axes(ax, (max(6.4, 0.35 * n_m * n_c + 2), 3.8))
    handles = []
    for i, m in enumerate(methods):
        vals = [per_class[m][c] for c in classes]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=literal(m))
        handles.append(bars)
        if n_c * n_m <= 40:
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    if chance is not None:
        for j, c in enumerate(classes):
            if c in chance:
                ax.hlines(chance[c], j - 0.45, j + 0.45, color="black", ls=":", lw=1.2)
        handles += ax.plot([], [], color="black", ls=":", label="chance")
    ax.set_xticks(
        x,
        [literal(c) for c in classes],
        rotation=30 if n_c > 5 else 0,
        ha="right" if n_c > 5 else "center",
    )
    ax.set_ylabel(literal(ylabel))
    ax.set_ylim(0, 1.08)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(literal(title))
    return fig
