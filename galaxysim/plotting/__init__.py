"""Matplotlib figures: neighbour montages, training curves, reconstructions, latent maps."""

from galaxysim.plotting._montage import plot_neighbors
from galaxysim.plotting._nn import (
    plot_confusion_matrix,
    plot_generated,
    plot_latent_map,
    plot_reconstructions,
    plot_training_curves,
)

__all__ = [
    "plot_confusion_matrix",
    "plot_generated",
    "plot_latent_map",
    "plot_neighbors",
    "plot_reconstructions",
    "plot_training_curves",
]
