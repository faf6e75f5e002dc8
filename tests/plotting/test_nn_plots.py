import io

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from galaxysim import GALAXY10_CLASSES
from galaxysim.plotting import (
    plot_confusion_matrix,
    plot_generated,
    plot_latent_map,
    plot_reconstructions,
    plot_training_curves,
)

matplotlib.use("Agg")


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_curves_loss_and_accuracy():
    hist = [
        {"epoch": e, "train_loss": 1 / e, "valid_loss": 1.2 / e, "train_acc": 0.5, "valid_acc": 0.4}
        for e in (1, 2, 3)
    ]
    fig = plot_training_curves(hist, title="CNN")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["train", "valid"]
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [1, 0.5, 1 / 3])
    assert _png(fig)


def test_training_curves_balanced_accuracy_and_kept_epoch():
    class Est:
        best_epoch_ = 2
        history_ = [
            {"epoch": e, "train_loss": 1 / e, "train_acc": 0.5, "valid_acc": 0.4, "valid_bacc": b}
            for e, b in [(1, 0.3), (2, 0.6), (3, 0.5)]
        ]

    fig = plot_training_curves(Est())
    acc = fig.axes[1].get_lines()
    labels = [ln.get_label() for ln in acc]
    assert labels == ["train", "valid", "valid, balanced", "kept: epoch 2"]
    np.testing.assert_allclose(acc[2].get_ydata(), [0.3, 0.6, 0.5])
    np.testing.assert_allclose(acc[3].get_xdata(), [2, 2])
    assert "kept: epoch 2" in [ln.get_label() for ln in fig.axes[0].get_lines()]
    Est.best_epoch_ = 3  # the last epoch kept: nothing to mark
    assert all("kept" not in ln.get_label() for ln in plot_training_curves(Est()).axes[1].lines)


def test_training_curves_from_estimator_and_errors():
    class Est:
        history_ = [{"epoch": 1, "train_loss": 0.3}]

    assert len(plot_training_curves(Est()).axes) == 1
    with pytest.raises(ValueError, match="history"):
        plot_training_curves([])


def test_confusion_matrix_values():
    fig = plot_confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], display_labels=["a", "b"])
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.5, 0.5], [0, 1]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    fig = plot_confusion_matrix(
        [0, 5, 5],
        [0, 5, 0],
        labels=[0, 5],
        normalize=None,
        display_labels=[GALAXY10_CLASSES[0], GALAXY10_CLASSES[5]],
    )
    assert "1" in [t.get_text() for t in fig.axes[0].texts]
    with pytest.raises(ValueError, match="display_labels"):
        plot_confusion_matrix([0, 1], [0, 1], display_labels=["a"])
    assert _png(fig)


def test_reconstructions_originals_above():
    X = np.zeros((5, 16, 16, 3), np.uint8)
    R = np.full((5, 16, 16, 3), 255, np.uint8)
    fig = plot_reconstructions(X, R, n_images=4, titles=["Milky Way", "a", "b", "c"])
    assert len(fig.axes) == 8
    top, bottom = fig.axes[0], fig.axes[4]  # row-major: first row originals
    assert top.images[0].get_array().max() == 0 and bottom.images[0].get_array().min() == 255
    assert top.get_title() == "Milky Way" and top.get_ylabel() == "original"
    with pytest.raises(ValueError, match="reconstructions has 2"):
        plot_reconstructions(X, R[:2])
    assert _png(fig)


def test_generated_grid():
    fig = plot_generated(np.random.default_rng(0).random((11, 16, 16, 3)), n_cols=4, title="VAE")
    assert len(fig.axes) == 11  # empty cells removed
    assert _png(fig)
    assert len(plot_generated(np.zeros((2, 16, 16, 1), np.uint8)).axes) == 2


def test_latent_map_colours_by_label():
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.normal(0, 1, (20, 6)), rng.normal(5, 1, (20, 6))])
    y = np.repeat([5, 2], 20)
    fig = plot_latent_map(Z, y, label_names=GALAXY10_CLASSES, highlight=Z[0], highlight_label="MW")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [GALAXY10_CLASSES[2], GALAXY10_CLASSES[5], "MW"]
    assert ax.get_xlabel().startswith("PC 1")
    with pytest.raises(ValueError, match="labels has 3 entries"):
        plot_latent_map(Z, y[:3])
    with pytest.raises(ValueError, match="2-D array"):
        plot_latent_map(Z[0])
    assert _png(fig)
