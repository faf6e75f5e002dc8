import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import get_tags

from galaxysim.nn import AEEncoder
from tests.nn.conftest import make_blob_images

FAST = {"latent_dim": 8, "max_epochs": 1, "batch_size": 16, "random_state": 0}


@pytest.fixture(scope="module")
def fitted(blobs):
    return AEEncoder(**FAST).fit(blobs[0])


def test_fit_unsupervised_and_attributes(blobs):
    X, y = blobs
    est = AEEncoder(**FAST)
    assert est.fit(X) is est
    assert est.image_shape_ == (16, 16, 3)
    assert {"train_loss", "valid_loss"} <= set(est.history_[0])
    est.fit(X, y)  # labels accepted and ignored (Pipeline)
    assert not get_tags(est).target_tags.required
    assert get_tags(est).transformer_tags is not None


def test_clone_and_keyword_only():
    est = AEEncoder(16, lr=0.01)
    assert clone(est).get_params() == est.get_params()
    with pytest.raises(TypeError):
        AEEncoder(16, 5)


@pytest.mark.parametrize("method", ["transform", "inverse_transform", "reconstruction_error"])
def test_not_fitted(blobs, method):
    arg = np.zeros((1, 8), np.float32) if method == "inverse_transform" else blobs[0]
    with pytest.raises(NotFittedError):
        getattr(AEEncoder(), method)(arg)


def test_transform_inverse_transform(fitted, blobs):
    X, _ = blobs
    Z = fitted.transform(X)
    assert Z.shape == (len(X), 8) and Z.dtype == np.float32
    imgs = fitted.inverse_transform(Z)
    assert imgs.shape == X.shape and imgs.dtype == np.uint8
    np.testing.assert_array_equal(fitted.reconstruct(X), imgs)
    err = fitted.reconstruction_error(X)
    assert err.shape == (len(X),) and np.all((err >= 0) & (err <= 1))
    assert list(fitted.get_feature_names_out()) == [f"aeencoder{i}" for i in range(8)]
    with pytest.raises(ValueError, match=r"latent codes of shape \(n_samples, 8\)"):
        fitted.inverse_transform(np.zeros((2, 5)))


def test_determinism_and_pickle(fitted, blobs):
    X, _ = blobs
    state = torch.random.get_rng_state()
    other = AEEncoder(**FAST).fit(X)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(other.transform(X), fitted.transform(X))
    clone_ = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(clone_.transform(X), fitted.transform(X))
    np.testing.assert_array_equal(
        clone_.inverse_transform(clone_.transform(X)), fitted.reconstruct(X)
    )


def test_batch_order_and_dtype_invariance(fitted, blobs):
    X, _ = blobs
    full = fitted.transform(X)
    perm = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_allclose(fitted.transform(X[perm]), full[perm], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.concatenate([fitted.transform(X[:7]), fitted.transform(X[7:])]),
        full,
        rtol=1e-5,
        atol=1e-5,
    )
    for dtype in (np.float32, np.float64):
        np.testing.assert_allclose(
            fitted.transform(X.astype(dtype) / 255), full, rtol=1e-4, atol=1e-4
        )


def test_bad_input(fitted, blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="multiples of 16"):
        AEEncoder(**FAST).fit(np.zeros((4, 24, 24, 3), np.uint8))
    with pytest.raises(ValueError, match="fitted on 16x16x3"):
        fitted.transform(np.zeros((1, 32, 32, 3), np.uint8))
    nan = X.astype(np.float32) / 255
    nan[0, 1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.transform(nan)
    with pytest.raises(ValueError, match="at least 2 images"):
        AEEncoder(**FAST).fit(X[:1])


def test_grey_images():
    X = np.random.default_rng(0).integers(0, 255, (8, 16, 16), dtype=np.uint8)  # (n, H, W)
    est = AEEncoder(**FAST).fit(X)
    assert est.image_shape_ == (16, 16, 1)
    assert est.inverse_transform(est.transform(X)).shape == (8, 16, 16, 1)


def test_reconstruction_beats_mean_image_on_held_out():
    """Training must not silently collapse (the reference ReLU AE went black)."""
    X, _ = make_blob_images(320, random_state=5)
    Xt, _ = make_blob_images(96, random_state=6)
    est = AEEncoder(latent_dim=8, max_epochs=12, batch_size=32, lr=2e-3, random_state=0).fit(X)
    err = est.reconstruction_error(Xt).mean()
    mean_image = X.astype(np.float32).mean(0) / 255
    baseline = ((Xt.astype(np.float32) / 255 - mean_image) ** 2).mean()
    assert err < 0.8 * baseline, (err, baseline, est.history_)
    # and the reconstructions are not black
    assert est.reconstruct(Xt).mean() > 0.3 * Xt.mean()


def _dihedral(X):
    views = [np.rot90(X, k, axes=(1, 2)) for k in range(4)]
    return views + [v[:, :, ::-1] for v in views]


def test_orientation_invariant_codes_are_the_same_for_every_orientation(blobs):
    X, _ = blobs
    est = AEEncoder(orientation_invariant=True, **FAST).fit(X)
    Z = est.transform(X)
    for view in _dihedral(X):
        np.testing.assert_allclose(est.transform(view), Z, rtol=1e-5, atol=1e-6)
    # it is the mean of the plain codes of the 8 orientations
    plain = est.set_params(orientation_invariant=False)
    mean = np.mean([plain.transform(v) for v in _dihedral(X)], axis=0)
    np.testing.assert_allclose(Z, mean, rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain.transform(X), plain.transform(_dihedral(X)[1]), atol=1e-4)


def test_orientation_invariant_non_square_images_use_the_four_flips():
    X = make_blob_images(12, size=32, random_state=2)[0][:, :16]  # 16x32
    est = AEEncoder(orientation_invariant=True, **FAST).fit(X)
    Z = est.transform(X)
    for view in (X[:, ::-1], X[:, :, ::-1], X[:, ::-1, ::-1]):
        np.testing.assert_allclose(est.transform(view), Z, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ audit siblings (issue 10)
def test_training_that_diverges_is_an_error(blobs):
    with pytest.raises(ValueError, match=r"AEEncoder training diverged.*Lower lr \(lr=1e\+30\)"):
        AEEncoder(**{**FAST, "lr": 1e30}).fit(blobs[0])


def test_inverse_transform_refuses_text_and_empty_codes(fitted):
    with pytest.raises(TypeError, match="expects latent codes .*dtype <U1"):
        fitted.inverse_transform([["a"] * 8])
    with pytest.raises(
        ValueError, match=r"shape \(n_samples, 8\) with n_samples >= 1; got \(0, 8\)"
    ):
        fitted.inverse_transform(np.zeros((0, 8)))
