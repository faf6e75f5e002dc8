"""Matplotlib figures: neighbour montages, training curves, reconstructions, latent maps,
precision@k curves."""

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
