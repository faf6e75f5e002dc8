"""The ``precision`` parameter: bfloat16 autocast in training and inference."""

import pickle

import numpy as np
import pytest
import torch

from galaxysim.nn import AEEncoder, CNNScorer, VAEEncoder
from galaxysim.nn._runtime import autocast, to_float32

ESTIMATORS = [
    (CNNScorer, {}),
    (AEEncoder, {"latent_dim": 8}),
    (VAEEncoder, {"latent_dim": 8}),
]
FAST = {"max_epochs": 2, "batch_size": 16, "random_state": 0}


def _fit(cls, kwargs, X, y, **extra):
    return cls(**FAST, **kwargs, **extra).fit(X, y)


@pytest.mark.parametrize(("cls", "kwargs"), ESTIMATORS)
@pytest.mark.parametrize("bad", ["float16", "bf16", "Float32", None, 32])
def test_precision_validated_in_fit(blobs, cls, kwargs, bad):
    est = cls(precision=bad, **FAST, **kwargs)
    assert est.get_params()["precision"] == bad  # stored as given, checked in fit
    with pytest.raises(ValueError, match=r"'precision' parameter of \w+ must be a str among"):
        est.fit(*blobs)


@pytest.mark.parametrize(("cls", "kwargs"), ESTIMATORS)
def test_default_is_float32(cls, kwargs):
    assert cls(**kwargs).get_params()["precision"] == "float32"


@pytest.mark.parametrize(("cls", "kwargs"), ESTIMATORS)
def test_bfloat16_fits_transforms_deterministically(blobs, cls, kwargs):
    X, y = blobs
    a = _fit(cls, kwargs, X, y, precision="bfloat16")
    b = _fit(cls, kwargs, X, y, precision="bfloat16")
    for p in a.net_.module_.parameters():
        assert p.dtype == torch.float32  # weights stay float32
    assert np.all(np.isfinite([h["train_loss"] for h in a.history_]))
    for (ka, ta), (_, tb) in zip(
        a.net_.module_.state_dict().items(), b.net_.module_.state_dict().items(), strict=True
    ):
        assert torch.equal(ta, tb), ka
    Za = a.transform(X)
    assert Za.dtype == np.float32 and np.all(np.isfinite(Za))
    np.testing.assert_array_equal(Za, b.transform(X))
    np.testing.assert_array_equal(a.transform(X), Za)  # inference repeatable
    # close to, but not bitwise equal to, the float32 model trained the same way
    f = _fit(cls, kwargs, X, y)
    assert f.transform(X).shape == Za.shape
    # pickling keeps the precision
    again = pickle.loads(pickle.dumps(a))
    assert again.precision == "bfloat16"
    np.testing.assert_array_equal(again.transform(X), Za)


def test_bfloat16_cnn_outputs_float32(blobs):
    X, y = blobs
    est = _fit(CNNScorer, {}, X, y, precision="bfloat16")
    proba = est.predict_proba(X)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert est.decision_function(X).dtype == np.float32
    assert est.embed(X).dtype == np.float32
    assert set(est.predict(X)) <= {0, 1, 2}


def test_bfloat16_autoencoder_outputs(blobs):
    X, _ = blobs
    est = _fit(AEEncoder, {"latent_dim": 8}, X, None, precision="bfloat16")
    err = est.reconstruction_error(X)
    assert err.dtype == np.float64 and np.all(np.isfinite(err))
    rec = est.reconstruct(X[:3])
    assert rec.dtype == np.uint8 and rec.shape == (3, 16, 16, 3)


def test_precision_after_fit_is_checked(blobs):
    X, y = blobs
    est = _fit(CNNScorer, {}, X, y)
    est.precision = "float8"
    with pytest.raises(ValueError, match="'precision' parameter of CNNScorer must be"):
        est.predict(X)


def test_helpers():
    with autocast("cpu", "bfloat16"):
        out = torch.nn.Linear(3, 2)(torch.ones(4, 3))
    assert out.dtype == torch.bfloat16
    a, (b, c) = to_float32((out, (out, torch.arange(3))))
    assert a.dtype == b.dtype == torch.float32 and c.dtype == torch.int64
