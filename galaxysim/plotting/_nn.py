"""Figures for the deep methods: training curves, confusion matrix, reconstructions,
generated-image grids and latent maps.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot state), so
they work under any backend, including Agg on a headless machine, and returns it; save
it with ``fig.savefig(path)``. Given ``ax=`` (one panel) or ``fig=`` (several panels),
they draw there instead.
"""

import numpy as np

from galaxysim.plotting._base import literal, new_or_given_axes, new_or_given_figure
from galaxysim.plotting._montage import show_image
from galaxysim.utils.validation import check_images

__all__ = [
    "plot_confusion_matrix",
    "plot_generated",
    "plot_latent_map",
    "plot_reconstructions",
    "plot_training_curves",
]


def _history_rows(history):
    rows = getattr(history, "history_", history)  # an estimator, or its history_
    rows = list(rows)
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError(
            "history must be a fitted estimator or its history_ (a non-empty list of "
            "per-epoch dicts with 'train_loss' etc.)."
        )
    return rows


def plot_training_curves(history, *, title=None, figsize=None, fig=None):
    """Plot per-epoch losses (and accuracies, when recorded) from ``history_``.

    Parameters
    ----------
    history : estimator or list of dict
        A fitted galaxysim network estimator, or its ``history_``.
    title : str, default=None
        Figure title.
    figsize : (float, float), default=None
        Size of a new figure in inches; by default 5 inches per panel wide (not used
        with ``fig``).
    fig : matplotlib.figure.Figure or matplotlib.figure.SubFigure, default=None
        Where to lay out the panels, for example one of ``Figure.subfigures()``;
        ``title`` becomes its ``suptitle``. By default a new Figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The new figure, or the figure that holds ``fig``: one panel for the losses,
        a second for the accuracies (and balanced validation accuracy) if present; a dotted line marks the epoch whose weights an
        estimator kept (``best_epoch_``) when it is not the last.

    Examples
    --------
    >>> hist = [{"epoch": 1, "train_loss": 1.0, "valid_loss": 1.1},
    ...         {"epoch": 2, "train_loss": 0.7, "valid_loss": 0.9}]
    >>> fig = plot_training_curves(hist)
    >>> len(fig.axes)
    1
    """
    rows = _history_rows(history)
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    # (key, legend label, line style) per panel
    panels = [("loss", [("train_loss", "train", "o-"), ("valid_loss", "valid", "s--")])]
    if any("train_acc" in r or "valid_acc" in r for r in rows):
        accuracy = [("train_acc", "train", "o-"), ("valid_acc", "valid", "s--")]
        panels.append(("accuracy", [*accuracy, ("valid_bacc", "valid, balanced", "^:")]))
    best = getattr(history, "best_epoch_", None)  # the epoch a CNNScorer kept
    fig, root = new_or_given_figure(fig, figsize or (5 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (ylabel, curves) in zip(axes, panels, strict=True):
        for key, label, style in curves:
            pts = [(e, r[key]) for e, r in zip(epochs, rows, strict=True) if key in r]
            if pts:
                ex, vals = zip(*pts, strict=True)
                ax.plot(ex, vals, style, ms=3, label=label)
        if best is not None and best != epochs[-1]:
            ax.axvline(best, color="0.4", lw=1, ls=(0, (1, 3)), label=f"kept: epoch {best}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(literal(title))
    return root


def plot_confusion_matrix(
    y_true, y_pred, *, labels=None, display_labels=None, normalize="true", title=None, ax=None
):
    """Plot a confusion matrix with per-cell values, rows being the true classes.

    A :class:`sklearn.metrics.ConfusionMatrixDisplay` with galaxysim's defaults:
    rows normalised (per-class recall on the diagonal), the colour scale from 0 to 1,
    slanted tick labels for long class names.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted labels.
    labels : array-like, default=None
        Label order; by default the sorted union of both.
    display_labels : list of str, default=None
        Tick labels (for example ``galaxysim.GALAXY10_CLASSES``); by default ``labels``.
    normalize : {"true", "pred", "all"} or None, default="true"
        As in :func:`sklearn.metrics.confusion_matrix`; ``"true"`` shows per-class
        recall on the diagonal.
    title : str, default=None
        Axes title.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw in (a colorbar is added beside it); by default the one Axes of
        a new Figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The new figure, or the figure that holds ``ax``.

    See Also
    --------
    sklearn.metrics.ConfusionMatrixDisplay : The display drawn here.

    Examples
    --------
    >>> fig = plot_confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2])
    >>> fig.axes[0].get_xlabel()
    'predicted'
    """
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix
    from sklearn.utils.multiclass import unique_labels

    cm = confusion_matrix(y_true, y_pred, labels=labels, normalize=normalize)
    if labels is None:
        labels = unique_labels(y_true, y_pred)
    names = [literal(v) for v in (labels if display_labels is None else display_labels)]
    if len(names) != len(labels):
        raise ValueError(f"display_labels has {len(names)} names for {len(labels)} labels.")
    size = max(3.5, 0.55 * len(labels) + 2.0)
    ax, fig = new_or_given_axes(ax, (size + 1.0, size))
    ConfusionMatrixDisplay(cm, display_labels=names).plot(
        ax=ax,
        cmap="Blues",
        values_format=".2f" if normalize else "d",
        xticks_rotation=45,
        im_kw={"vmin": 0, "vmax": 1 if normalize else None},
        text_kw={"fontsize": 8},
    )
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(literal(title))
    return fig


def plot_reconstructions(
    originals, reconstructions, *, n_images=8, titles=None, title=None, fig=None
):
    """Show original images (top row) above their reconstructions (bottom row).

    Parameters
    ----------
    originals : array-like of shape (n_samples, height, width, n_channels)
        Input images (uint8 or float in [0, 1]); the Milky Way can be one of them.
    reconstructions : array-like of the same shape
        Reconstructions, for example ``ae.reconstruct(originals)``.
    n_images : int, default=8
        Columns shown (the first ``n_images``).
    titles : list of str, default=None
        Column titles (for example class names or "Milky Way").
    title : str, default=None
        Figure title.
    fig : matplotlib.figure.Figure or matplotlib.figure.SubFigure, default=None
        Where to lay out the panels, for example one of ``Figure.subfigures()``;
        ``title`` becomes its ``suptitle``. By default a new Figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The new figure, or the figure that holds ``fig``: two rows of image axes,
        labelled "original" and "reconstruction".

    Examples
    --------
    >>> import numpy as np
    >>> X = np.zeros((3, 16, 16, 3), np.uint8)
    >>> len(plot_reconstructions(X, X).axes)
    6
    """
    orig = check_images(originals, name="originals")
    recon = check_images(reconstructions, name="reconstructions")
    if orig.shape[0] != recon.shape[0]:
        raise ValueError(
            f"originals has {orig.shape[0]} images but reconstructions has {recon.shape[0]}."
        )
    n = min(int(n_images), len(orig))
    fig, root = new_or_given_figure(fig, (1.4 * n + 0.8, 3.2))
    axes = fig.subplots(2, n, squeeze=False)
    for j in range(n):
        for i, imgs in enumerate((orig, recon)):
            ax = axes[i, j]
            show_image(ax, imgs[j], frame=False)
        if titles is not None and j < len(titles):
            axes[0, j].set_title(literal(titles[j]), fontsize=8)
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("reconstruction")
    if title:
        fig.suptitle(literal(title))
    return root


def plot_generated(images, *, n_cols=8, titles=None, title=None, fig=None):
    """Show images (for example VAE samples) in a grid.

    Parameters
    ----------
    images : array-like of shape (n_samples, height, width, n_channels)
        Images, uint8 or float in [0, 1].
    n_cols : int, default=8
        Images per row.
    titles : list of str, default=None
        One small title per image.
    title : str, default=None
        Figure title.
    fig : matplotlib.figure.Figure or matplotlib.figure.SubFigure, default=None
        Where to lay out the panels, for example one of ``Figure.subfigures()``;
        ``title`` becomes its ``suptitle``. By default a new Figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The new figure, or the figure that holds ``fig``.

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_generated(np.zeros((10, 16, 16, 3), np.uint8), n_cols=5)
    >>> len(fig.axes)
    10
    """
    imgs = check_images(images, name="images")
    n = len(imgs)
    n_cols = max(1, min(int(n_cols), n))
    n_rows = -(-n // n_cols)
    fig, root = new_or_given_figure(fig, (1.3 * n_cols, 1.3 * n_rows + (0.4 if title else 0)))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= n:
            ax.remove()
            continue
        show_image(ax, imgs[k], frame=False)
        if titles is not None and k < len(titles):
            ax.set_title(literal(titles[k]), fontsize=7)
    if title:
        fig.suptitle(literal(title))
    return root


def plot_latent_map(
    latents,
    labels=None,
    *,
    label_names=None,
    highlight=None,
    highlight_label="query",
    title=None,
    random_state=0,
    ax=None,
):
    """Map latent codes (or any features) to 2-D with PCA, coloured by label.

    Parameters
    ----------
    latents : array-like of shape (n_samples, n_features)
        Latent codes, for example ``ae.transform(X)``.
    labels : array-like of shape (n_samples,), default=None
        Colour of each point; one legend entry per label.
    label_names : sequence or dict, default=None
        Names for the labels (``galaxysim.GALAXY10_CLASSES`` for Galaxy10 codes).
    highlight : array-like of shape (n_features,) or (m, n_features), default=None
        Extra points drawn as large stars (the Milky Way's code, say), projected with
        the same PCA.
    highlight_label : str, default="query"
        Legend entry of the highlighted points.
    title : str, default=None
        Axes title.
    random_state : int, default=0
        Seed of the PCA solver.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw in; by default the one Axes of a new Figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The new figure, or the figure that holds ``ax``; the axes are labelled with
        the explained variance of both components.

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.random.default_rng(0).normal(size=(30, 8))
    >>> fig = plot_latent_map(Z, np.arange(30) % 3)
    >>> fig.axes[0].get_xlabel().startswith("PC 1")
    True
    """
    from sklearn.decomposition import PCA

    Z = np.asarray(latents, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] < 2 or Z.shape[1] < 2:
        raise ValueError(
            f"latents must be a 2-D array with at least 2 rows and 2 columns; got {Z.shape}."
        )
    pca = PCA(n_components=2, random_state=random_state).fit(Z)
    P = pca.transform(Z)
    ax, fig = new_or_given_axes(ax, (6.4, 5.0))
    from matplotlib.lines import Line2D

    handles = []
    if labels is None:
        ax.scatter(P[:, 0], P[:, 1], s=10, alpha=0.6)
    else:
        labels = np.asarray(labels)
        if len(labels) != len(Z):
            raise ValueError(f"labels has {len(labels)} entries for {len(Z)} latents.")
        uniq = np.unique(labels)
        colours = _label_colours(len(uniq))
        for k, lab in enumerate(uniq):
            m = labels == lab
            ax.scatter(P[m, 0], P[m, 1], s=10, alpha=0.6, color=colours[k])
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker="o",
                    ms=6,
                    color=colours[k],
                    label=literal(_label_name(lab, label_names)),
                )
            )
    if highlight is not None:
        H = pca.transform(np.atleast_2d(np.asarray(highlight, dtype=np.float64)))
        ax.scatter(
            H[:, 0],
            H[:, 1],
            s=220,
            marker="*",
            color="black",
            edgecolor="yellow",
            linewidths=1.0,
            zorder=5,
        )
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="*",
                ms=12,
                color="black",
                markeredgecolor="yellow",
                label=literal(highlight_label),
            )
        )
    ev = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC 1 ({ev[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({ev[1]:.0%} of variance)")
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")
    if title:
        ax.set_title(literal(title))
    return fig


def _label_name(lab, label_names):
    if label_names is None:
        return str(lab)
    try:
        return str(label_names[lab])
    except (KeyError, IndexError, TypeError):
        return str(lab)


def _label_colours(k):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]
