"""A small HDF5 catalogue with duplicated images (ties), and tiny fitted deep models."""

import h5py
import numpy as np
import pytest

N, SIZE = 150, 16


def _catalogue_images(n=N, size=SIZE, seed=0):
    """Coarse pixel levels and images repeated in other blocks: many equal distances."""
    rng = np.random.default_rng(seed)
    X = (rng.integers(0, 4, size=(n, size, size, 3)) * 85).astype(np.uint8)
    X[100:110] = X[:10]
    X[140:145] = X[20:25]
    y = (np.arange(n) % 4).astype(np.uint8)
    return X, y


def _write_h5(path, X, y=None, *, ra=True, chunks=10, compression="gzip"):
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=X, chunks=(chunks, *X.shape[1:]), compression=compression)
        if y is not None:
            f.create_dataset("ans", data=y)
        if ra:
            f.create_dataset("ra", data=np.linspace(10, 20, len(X)))
            f.create_dataset("dec", data=np.linspace(-5, 5, len(X)))
    return path


@pytest.fixture(scope="session")
def make_images():
    """``make_images(n=150, size=16, seed=0)``: images with ties and labels 0-3."""
    return _catalogue_images


@pytest.fixture(scope="session")
def write_h5():
    """``write_h5(path, X, y=None, *, ra=True, chunks=10, compression="gzip")``: an HDF5
    catalogue."""
    return _write_h5


@pytest.fixture(scope="session")
def data():
    return _catalogue_images()


@pytest.fixture(scope="session")
def models(data):
    from galaxysim.nn import AEEncoder, CNNScorer, VAEEncoder

    X, y = data
    kw = {"max_epochs": 1, "random_state": 0, "verbose": 0}
    return {
        "ae": AEEncoder(latent_dim=6, **kw).fit(X[:48]),
        "vae": VAEEncoder(latent_dim=6, **kw).fit(X[:48]),
        "cnn": CNNScorer(**kw).fit(X[:48], y[:48]),
    }
