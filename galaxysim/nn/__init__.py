"""Deep methods: a CNN classifier, an autoencoder and a VAE behind scikit-learn estimators.

The only subpackage that imports torch and skorch. Images stay channels-last NumPy arrays
everywhere else; :mod:`galaxysim.nn` converts them to torch's ``(N, C, H, W)``.
"""

from galaxysim.nn._autoencoder import AEEncoder, VAEEncoder
from galaxysim.nn._cnn import CNNScorer
from galaxysim.nn._modules import CNNClassifierModule, ConvAutoencoderModule, ConvVAEModule
from galaxysim.nn._persistence import load_model, save_model

__all__ = [
    "AEEncoder",
    "CNNClassifierModule",
    "CNNScorer",
    "ConvAutoencoderModule",
    "ConvVAEModule",
    "VAEEncoder",
    "load_model",
    "save_model",
]
