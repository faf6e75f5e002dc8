"""galaxysim: rank galaxy image catalogues by similarity to a query image.

Classical pixel methods and deep methods (CNN class scores, autoencoder and VAE
latents) share one scikit-learn interface. See :mod:`galaxysim.datasets`,
:mod:`galaxysim.preprocessing`, :mod:`galaxysim.neighbors` and :mod:`galaxysim.nn`.
"""

__version__ = "0.1.0"

GALAXY10_CLASSES = (
    "Disturbed",
    "Merging",
    "Round Smooth",
    "In-between Round Smooth",
    "Cigar Shaped Smooth",
    "Barred Spiral",
    "Unbarred Tight Spiral",
    "Unbarred Loose Spiral",
    "Edge-on without Bulge",
    "Edge-on with Bulge",
)
"""Galaxy10 class names, indexed by the integer label 0-9."""

GALAXY10_GROUPS = {
    "disturbed/merging": (0, 1),
    "smooth": (2, 3, 4),
    "barred spiral": (5,),
    "unbarred spiral": (6, 7),
    "edge-on": (8, 9),
}
"""The five coarse groups of Galaxy10 classes used by the 5-class CNN."""

__all__ = ["GALAXY10_CLASSES", "GALAXY10_GROUPS", "__version__"]
