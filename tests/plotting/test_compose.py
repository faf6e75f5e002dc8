"""Composing figures: every plotting function draws into the caller's Axes (ax=) or
Figure/SubFigure (fig=), creates no figure of its own then, and returns the top-level
figure."""

import io

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from galaxysim.plotting import (
    plot_confusion_matrix,
    plot_generated,
    plot_latent_map,
    plot_neighbors,
    plot_per_class_precision,
    plot_precision_curves,
    plot_reconstructions,
    plot_training_curves,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

RNG = np.random.default_rng(0)
IMGS = RNG.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
HIST = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.5 + e / 10} for e in (1, 2, 3)]
Z = RNG.normal(size=(30, 4))

# name -> call drawing one panel into ax
SINGLE = {
    "confusion_matrix": lambda ax: plot_confusion_matrix([0, 1, 1], [0, 1, 0], ax=ax),
    "latent_map": lambda ax: plot_latent_map(Z, np.arange(30) % 3, ax=ax),
    "precision_curves": lambda ax: plot_precision_curves({"mse": [0.5, 0.4]}, ax=ax),
    "per_class_precision": lambda ax: plot_per_class_precision({"mse": {"a": 0.5}}, ax=ax),
}
# name -> (call laying out its panels in fig, number of panels it draws)
MULTI = {
    "neighbors": (lambda fig: plot_neighbors(IMGS[0], IMGS[1:], fig=fig, title="t"), 5),
    "training_curves": (lambda fig: plot_training_curves(HIST, fig=fig, title="t"), 2),
    "reconstructions": (lambda fig: plot_reconstructions(IMGS, IMGS, fig=fig, title="t"), 10),
    "generated": (lambda fig: plot_generated(IMGS, n_cols=3, fig=fig, title="t"), 5),
}


@pytest.fixture
def new_figures(monkeypatch):
    """Every Figure created from now on (pyplot's included)."""
    created = []
    init = Figure.__init__

    def spy(self, *args, **kwargs):
        created.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "__init__", spy)
    yield created
    plt.close("all")


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_plots_in_one_figure(new_figures):
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_cm, ax_map = fig.subplots(1, 2)
    assert plot_confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], ax=ax_cm, title="CNN") is fig
    assert plot_latent_map(Z, np.arange(30) % 3, ax=ax_map, title="AE codes") is fig
    assert new_figures == [fig]  # only the caller's own figure was ever created
    assert plt.get_fignums() == []  # and nothing through pyplot either
    np.testing.assert_allclose(ax_cm.images[0].get_array(), [[0.5, 0.5], [0, 1]])
    assert ax_cm.get_title() == "CNN" and ax_cm.get_xlabel() == "predicted"
    assert ax_map.get_title() == "AE codes" and len(ax_map.collections) == 3
    assert len(fig.axes) == 3  # both panels and the matrix's colorbar
    assert _png(fig)


def test_two_multi_panel_plots_in_subfigures(new_figures):
    fig = Figure(figsize=(12, 4))
    left, right = fig.subfigures(1, 2)
    assert plot_neighbors(IMGS[0], IMGS[1:], fig=left, title="montage") is fig
    assert plot_training_curves(HIST, fig=right, title="curves") is fig
    assert new_figures == [fig]
    assert len(left.axes) == 5 and len(right.axes) == 2
    assert left.axes[0].images[0].get_array().shape == (16, 16, 3)
    assert right.axes[0].get_lines()[0].get_label() == "train"
    assert left.get_suptitle() == "montage" and fig.get_suptitle() == ""
    assert _png(fig)


@pytest.mark.parametrize("name", SINGLE)
def test_single_panel_draws_into_given_axes(name, new_figures):
    fig = Figure()
    sub = fig.subfigures(1, 2)[1]
    ax = sub.add_subplot()
    assert SINGLE[name](ax) is fig  # the top-level figure, even from a SubFigure
    assert new_figures == [fig]
    assert ax.has_data()
    # without ax: a new figure each call, the one that is returned
    own = SINGLE[name](None)
    assert isinstance(own, Figure) and own is not fig and new_figures[-1] is own


@pytest.mark.parametrize("name", MULTI)
def test_multi_panel_draws_into_given_figure(name, new_figures):
    call, n_panels = MULTI[name]
    fig = Figure()
    target, other = fig.subfigures(1, 2)
    assert call(target) is fig
    assert new_figures == [fig]
    assert len(target.axes) == n_panels and other.axes == []
    assert target.get_suptitle() == "t"
    own = call(None)
    assert isinstance(own, Figure) and own is not fig and len(own.axes) == n_panels
    assert call(Figure()) is new_figures[-1]  # a whole Figure works too


def test_wrong_targets_are_refused():
    fig = Figure()
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        plot_precision_curves({"mse": [0.5]}, ax=fig)
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure or SubFigure"):
        plot_generated(IMGS, fig=fig.add_subplot())
