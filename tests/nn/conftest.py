"""Tiny synthetic image data for the galaxysim.nn tests (16x16, rotation-invariant classes)."""

import numpy as np
import pytest


def make_blob_images(n_samples, *, size=16, n_classes=3, noise=0.04, random_state=0):
    """Easy, orientation-free classes: 0 compact bright core, 1 wide diffuse disk, 2 ring.

    Returns uint8 images ``(n, size, size, 3)`` and labels ``0 .. n_classes-1``.
    """
    rng = np.random.default_rng(random_state)
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    X = np.empty((n_samples, size, size, 3), dtype=np.float32)
    for i, lab in enumerate(y):
        cy, cx = size / 2 - 0.5 + rng.uniform(-1, 1, 2)
        r = np.hypot(yy - cy, xx - cx) / size
        bright = rng.uniform(0.7, 1.0)
        if lab == 0:
            img = bright * np.exp(-((r / 0.08) ** 2))
        elif lab == 1:
            img = 0.6 * bright * np.exp(-((r / 0.3) ** 2))
        else:
            img = bright * np.exp(-(((r - 0.3) / 0.06) ** 2))
        colour = np.array([1.0, 0.9, 0.8]) if lab == 0 else np.array([0.8, 0.9, 1.0])
        X[i] = img[..., None] * colour
    X += rng.normal(0, noise, X.shape)
    return (np.clip(X, 0, 1) * 255).round().astype(np.uint8), y


@pytest.fixture(scope="session")
def blobs():
    return make_blob_images(48, random_state=0)


@pytest.fixture(scope="session")
def blobs_big():
    return make_blob_images(240, random_state=1)
