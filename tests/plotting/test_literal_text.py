"""Every text a plotting function draws from its arguments (labels, class and method
names, titles) is drawn as written: never parsed as mathtext (a '$\\frac{1' label made
savefig raise), never dropped from a legend (a name starting '_')."""

import io

import numpy as np
import pytest
from matplotlib.cbook import is_math_text
from matplotlib.figure import Figure
from matplotlib.text import Text

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

# unparsable mathtext, an odd '$', valid mathtext that must not render as math, a
# name matplotlib's legend would hide, and a control character no font has
NAMES = ["$\\frac{1", "a_b^c$", "$x^2$", "_hidden", "tab\there"]
TITLE = "$\\alpha$ vs $\\frac{1$"  # even: mathtext, and unparsable
IMAGES = np.zeros((len(NAMES), 8, 8, 3), np.uint8)


def texts(fig):
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def legend_texts(fig):
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]


def check_drawn_literally(fig):
    fig.savefig(io.BytesIO(), format="png")  # raised ValueError before
    drawn = texts(fig)
    assert not [t for t in drawn if is_math_text(t)], drawn
    return drawn


CASES = {
    "neighbors": lambda: plot_neighbors(
        IMAGES[0], IMAGES, labels=NAMES, title=TITLE, query_title=NAMES[0]
    ),
    "training_curves": lambda: plot_training_curves(
        [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}], title=TITLE
    ),
    "confusion_matrix": lambda: plot_confusion_matrix(
        np.arange(5), np.arange(5), display_labels=NAMES, title=TITLE
    ),
    "reconstructions": lambda: plot_reconstructions(IMAGES, IMAGES, titles=NAMES, title=TITLE),
    "generated": lambda: plot_generated(IMAGES, titles=NAMES, title=TITLE),
    "latent_map": lambda: plot_latent_map(
        np.random.default_rng(0).normal(size=(20, 4)),
        np.arange(20) % 5,
        label_names=NAMES,
        highlight=np.zeros(4),
        highlight_label=NAMES[1],
        title=TITLE,
    ),
    "precision_curves": lambda: plot_precision_curves(
        {name: [0.5, 0.4] for name in NAMES}, chance=0.1, ylabel=NAMES[0], title=TITLE
    ),
    "per_class_precision": lambda: plot_per_class_precision(
        {name: dict.fromkeys(NAMES, 0.5) for name in NAMES},
        chance=dict.fromkeys(NAMES, 0.2),
        ylabel=NAMES[0],
        title=TITLE,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_user_text_is_drawn_literally(case):
    drawn = check_drawn_literally(CASES[case]())
    assert any("alpha" in t for t in drawn)  # the title is there


@pytest.mark.parametrize("case", ["latent_map", "precision_curves", "per_class_precision"])
def test_legends_keep_every_name(case):
    fig = CASES[case]()
    entries = legend_texts(fig)
    for name in ("_hidden", "a_b^c"):
        assert any(name in t for t in entries), entries


def test_class_names_as_tick_labels():
    fig = CASES["per_class_precision"]()
    fig.savefig(io.BytesIO(), format="png")
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(ticks) == len(NAMES) and "tab here" in ticks  # no missing-glyph box
    fig = CASES["confusion_matrix"]()
    fig.savefig(io.BytesIO(), format="png")
    assert len(fig.axes[0].get_yticklabels()) == len(NAMES)


def test_drawn_into_a_given_figure():
    fig = Figure()
    left, right = fig.subfigures(1, 2)
    plot_neighbors(IMAGES[0], IMAGES, labels=NAMES, title=TITLE, fig=left)
    plot_precision_curves({n: [0.5] for n in NAMES}, title=TITLE, ax=right.add_subplot())
    check_drawn_literally(fig)
