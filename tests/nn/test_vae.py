import pickle

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from galaxysim.nn import VAEEncoder

FAST = {"latent_dim": 8, "max_epochs": 2, "batch_size": 16, "random_state": 0}


@pytest.fixture(scope="module")
def fitted(blobs):
    return VAEEncoder(**FAST).fit(blobs[0])


def test_transform_gives_deterministic_posterior_means(fitted, blobs):
    X, _ = blobs
    Z = fitted.transform(X)
    assert Z.shape == (len(X), 8) and Z.dtype == np.float32
    np.testing.assert_array_equal(fitted.transform(X), Z)  # means, not samples
    assert np.all(np.isfinite([h["train_loss"] for h in fitted.history_]))


def test_same_seed_same_model_and_pickle(fitted, blobs):
    X, _ = blobs
    np.testing.assert_array_equal(VAEEncoder(**FAST).fit(X).transform(X), fitted.transform(X))
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.sample(3, random_state=1), fitted.sample(3, random_state=1))


def test_sample(fitted):
    a = fitted.sample(5, random_state=0)
    assert a.shape == (5, 16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, fitted.sample(5, random_state=0))
    assert not np.array_equal(a, fitted.sample(5, random_state=1))
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        fitted.sample(0)


def test_generate_like(fitted, blobs):
    X, _ = blobs
    out = fitted.generate_like(X[:2], 4, random_state=0)
    assert out.shape == (8, 16, 16, 3) and out.dtype == np.uint8
    # scale 0 gives the reconstruction of the query
    np.testing.assert_array_equal(
        fitted.generate_like(X[0], 2, scale=0.0)[0], fitted.reconstruct(X[:1])[0]
    )
    for bad in (-1, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="scale must be a finite number >= 0"):
            fitted.generate_like(X[:1], 2, scale=bad)
    with pytest.raises(ValueError, match="fitted on 16x16x3"):
        fitted.generate_like(np.zeros((32, 32, 3), np.uint8), 2)


def test_interpolate(fitted, blobs):
    X, _ = blobs
    path = fitted.interpolate(X[0], X[1], n_steps=4)
    assert path.shape == (4, 16, 16, 3) and path.dtype == np.uint8
    np.testing.assert_array_equal(path[0], fitted.reconstruct(X[:1])[0])
    np.testing.assert_array_equal(path[-1], fitted.reconstruct(X[1:2])[0])
    with pytest.raises(ValueError, match="n_steps must be an int >= 2"):
        fitted.interpolate(X[0], X[1], n_steps=1)
    with pytest.raises(ValueError, match="x_a must be one image"):
        fitted.interpolate(X[:2], X[1], n_steps=3)


def test_not_fitted(blobs):
    with pytest.raises(NotFittedError):
        VAEEncoder().sample(2)


def test_orientation_invariant_transform_leaves_generation_alone(blobs):
    X, _ = blobs
    inv = VAEEncoder(orientation_invariant=True, **FAST).fit(X)
    plain = VAEEncoder(**FAST).fit(X)
    np.testing.assert_allclose(
        inv.transform(np.rot90(X, 1, axes=(1, 2))), inv.transform(X), rtol=1e-5, atol=1e-6
    )
    # generate_like and interpolate decode the plain posterior means
    np.testing.assert_array_equal(
        inv.generate_like(X[0], 2, scale=0.0)[0], plain.reconstruct(X[:1])[0]
    )
    np.testing.assert_array_equal(inv.interpolate(X[0], X[1], 3), plain.interpolate(X[0], X[1], 3))


# ------------------------------------------------------------------ audit siblings (issue 10)
def test_too_large_a_beta_diverges_clearly(blobs):
    with pytest.raises(ValueError, match=r"VAEEncoder training diverged.*Lower lr or beta"):
        VAEEncoder(**{**FAST, "beta": 1e300}).fit(blobs[0])


@pytest.mark.parametrize(
    "call, what",
    [
        (lambda v, X: v.sample(2**40), r"VAEEncoder\.sample of 1,099,511,627,776 images"),
        (lambda v, X: v.generate_like(X[:2], 2**40), r"generate_like of 2,199,023,255,552 images"),
        (
            lambda v, X: v.interpolate(X[0], X[1], n_steps=2**40),
            r"interpolate of 1,099,511,627,776 images",
        ),
    ],
)
def test_too_many_images_are_refused_before_allocating(fitted, blobs, call, what):
    with pytest.raises(MemoryError, match=rf"{what} would take .*Ask for fewer images"):
        call(fitted, blobs[0])


def test_latents_that_overflow_are_refused(fitted, blobs):
    with pytest.raises(ValueError, match="NaN or infinite"):
        fitted.generate_like(blobs[0][:1], 2, scale=1e39, random_state=0)
    assert fitted.generate_like(blobs[0][:1], 2, scale=3.0, random_state=0).dtype == np.uint8
