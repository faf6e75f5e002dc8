"""Parameter validation of the nn estimators (scikit-learn's _parameter_constraints)."""

import numpy as np
import pytest
from sklearn.base import clone

from galaxysim.nn import AEEncoder, CNNScorer, VAEEncoder
from galaxysim.utils._sklearn_compat import InvalidParameterError

ESTIMATORS = [CNNScorer, AEEncoder, VAEEncoder]
FAST = {"max_epochs": 1, "batch_size": 16, "random_state": 0}

COMMON_BAD = [
    ("augment", "no", "'augment' parameter .* must be an instance of 'bool'"),
    ("augment", 1, "'augment' parameter .* must be an instance of 'bool'"),
    ("channels", 0, r"'channels' parameter .* in the range \[1, 4096\]"),
    ("channels", 2**40, r"'channels' parameter .* in the range \[1, 4096\]"),
    ("channels", 8.0, "'channels' parameter .* must be an int"),
    ("max_epochs", 0, "'max_epochs' parameter .* in the range"),
    ("batch_size", -4, "'batch_size' parameter .* in the range"),
    ("batch_size", True, "'batch_size' parameter .* must not be a bool"),
    ("lr", 0.0, r"'lr' parameter .* in the range \(0.0, inf\)"),
    ("lr", float("inf"), r"'lr' parameter .* in the range \(0.0, inf\)"),
    ("lr", float("nan"), "'lr' parameter"),
    ("lr", "fast", "'lr' parameter"),
    ("validation_fraction", 1.0, r"'validation_fraction' parameter .* \[0.0, 1.0\)"),
    ("validation_fraction", -0.1, "'validation_fraction' parameter"),
    ("device", 0, "'device' parameter .* must be an instance of 'str'"),
    ("n_jobs", 0, "'n_jobs' parameter"),
    ("n_jobs", 2.5, "'n_jobs' parameter"),
    ("precision", "float16", "'precision' parameter .* a str among"),
    ("random_state", "seed", "'random_state' parameter"),
    ("verbose", -1, "'verbose' parameter"),
]

SPECIFIC_BAD = {
    CNNScorer: [
        ("n_classes", 1, r"'n_classes' parameter .* \[2, inf\)"),
        ("groups", "galaxy11", "'groups' parameter .* among {'galaxy10-5'}"),
        ("groups", ["a"], "'groups' parameter"),
        ("output", "logits", "'output' parameter"),
        ("hidden", 2**40, r"'hidden' parameter .* \[1, 4096\]"),
        ("dropout", 1.0, r"'dropout' parameter .* \[0.0, 1.0\)"),
        ("dropout", -0.5, "'dropout' parameter"),
        ("balance", "smote", "'balance' parameter"),
        ("lr_schedule", "cosine", "'lr_schedule' parameter"),
        ("restore_best", "yes", "'restore_best' parameter .* must be an instance of 'bool'"),
    ],
    AEEncoder: [
        ("latent_dim", 0, r"'latent_dim' parameter .* \[1, 4096\]"),
        ("latent_dim", 2**40, r"'latent_dim' parameter .* \[1, 4096\]"),
        ("orientation_invariant", "yes", "'orientation_invariant' parameter .* 'bool'"),
    ],
    VAEEncoder: [
        ("latent_dim", 2**40, r"'latent_dim' parameter .* \[1, 4096\]"),
        ("beta", -1, r"'beta' parameter .* \[0.0, inf\)"),
        ("beta", float("inf"), r"'beta' parameter .* \[0.0, inf\)"),
        ("orientation_invariant", 0, "'orientation_invariant' parameter"),
    ],
}

CASES = [
    (cls, name, value, match)
    for cls in ESTIMATORS
    for name, value, match in COMMON_BAD + SPECIFIC_BAD[cls]
]


@pytest.mark.parametrize(
    ("cls", "name", "value", "match"),
    CASES,
    ids=[f"{c.__name__}-{n}={v!r}" for c, n, v, _ in CASES],
)
def test_bad_parameter_refused_when_fit_starts(blobs, cls, name, value, match, monkeypatch):
    X, y = blobs
    est = cls(**{**FAST, name: value})
    assert est.get_params()[name] is value  # __init__ only stores
    clone(est)

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(cls, "_fit_net", no_training)  # refused before any work
    with pytest.raises(InvalidParameterError, match=match):
        est.fit(X, y if cls is CNNScorer else None)


def test_invalid_parameter_error_is_a_value_error():
    assert issubclass(InvalidParameterError, ValueError)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_parameter_has_a_constraint(cls):
    assert set(cls._parameter_constraints) == set(cls().get_params())


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_accepted_edge_values(blobs, cls):
    X, y = blobs
    params = {
        "augment": np.bool_(False),
        "validation_fraction": 0.0,
        "n_jobs": -1,
        "verbose": False,
        "random_state": np.random.RandomState(0),
        "device": "auto",
    }
    if cls is CNNScorer:
        params.update(dropout=0.0, groups={"a": (0,), "b": (1, 2)}, balance=None, n_classes=2)
    else:
        params.update(orientation_invariant=np.bool_(True))
    if cls is VAEEncoder:
        params["beta"] = 0
    est = cls(**{**FAST, **params}).fit(X, y if cls is CNNScorer else None)
    assert np.all(np.isfinite(est.transform(X[:2])))


def test_parameters_changed_after_fit_are_checked_at_inference(blobs):
    X, _ = blobs
    ae = AEEncoder(latent_dim=4, **FAST).fit(X)
    ae.set_params(orientation_invariant="yes")  # truthy, but not a bool
    with pytest.raises(InvalidParameterError, match="'orientation_invariant' parameter"):
        ae.transform(X[:2])
    ae.set_params(orientation_invariant=False, n_jobs=0)
    with pytest.raises(InvalidParameterError, match="'n_jobs' parameter"):
        ae.inverse_transform(np.zeros((1, 4), np.float32))
