import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import get_tags

from galaxysim import GALAXY10_GROUPS
from galaxysim.nn import CNNScorer
from tests.nn.conftest import make_blob_images

FAST = {"max_epochs": 1, "batch_size": 16, "random_state": 0}


@pytest.fixture(scope="module")
def fitted(blobs):
    X, y = blobs
    return CNNScorer(**FAST).fit(X, y)


def test_fit_returns_self_and_sets_attributes(blobs):
    X, y = blobs
    est = CNNScorer(**FAST)
    assert est.fit(X, y) is est
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    assert est.image_shape_ == (16, 16, 3)
    assert len(est.history_) == 1
    assert {"train_loss", "valid_loss", "train_acc", "valid_acc"} <= set(est.history_[0])


def test_init_only_stores_params_and_clones():
    est = CNNScorer(5, groups="galaxy10-5", lr=0.01, device="nonsense", max_epochs=-3)
    assert est.get_params()["device"] == "nonsense"  # validated in fit, not __init__
    c = clone(est)
    assert c.get_params() == est.get_params()
    with pytest.raises(TypeError):
        CNNScorer(5, "galaxy10-5")  # keyword-only after the first


def test_tags():
    tags = get_tags(CNNScorer())
    assert tags.estimator_type == "classifier"
    assert tags.transformer_tags is not None
    assert not tags.input_tags.two_d_array
    assert tags.target_tags.required


@pytest.mark.parametrize("method", ["predict", "predict_proba", "transform", "embed"])
def test_not_fitted(blobs, method):
    with pytest.raises(NotFittedError):
        getattr(CNNScorer(), method)(blobs[0])


def test_outputs(fitted, blobs):
    X, _ = blobs
    proba = fitted.predict_proba(X)
    assert proba.dtype == np.float32 and proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(fitted.transform(X), proba)
    assert set(fitted.predict(X)) <= {0, 1, 2}
    emb = fitted.embed(X)
    assert emb.shape == (len(X), 64) and emb.dtype == np.float32
    assert 0 <= fitted.score(X, blobs[1]) <= 1
    assert list(fitted.get_feature_names_out()) == ["proba_0", "proba_1", "proba_2"]
    est = clone(fitted).set_params(output="embedding")
    assert est.fit_transform(X, blobs[1]).shape == (len(X), 64)


def test_same_random_state_same_model_bitwise(blobs):
    X, y = blobs
    state = torch.random.get_rng_state()
    a = CNNScorer(**FAST).fit(X, y)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    b = CNNScorer(**FAST).fit(X, y)
    for (ka, ta), (_, tb) in zip(
        a.net_.module_.state_dict().items(), b.net_.module_.state_dict().items(), strict=True
    ):
        assert torch.equal(ta, tb), ka
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    c = CNNScorer(**{**FAST, "random_state": 1}).fit(X, y)
    assert not np.array_equal(a.transform(X), c.transform(X))


def test_pickle_and_joblib_round_trip(fitted, blobs, tmp_path):
    X, _ = blobs
    expected = fitted.transform(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).transform(X), expected)
    joblib.dump(fitted, tmp_path / "cnn.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "cnn.joblib").transform(X), expected)


def test_batch_split_and_order_do_not_change_outputs(fitted, blobs):
    X, _ = blobs
    full = fitted.transform(X)
    parts = np.concatenate([fitted.transform(X[:5]), fitted.transform(X[5:])])
    np.testing.assert_allclose(parts, full, rtol=1e-5, atol=1e-6)
    perm = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(fitted.transform(X[perm]), full[perm], rtol=1e-5, atol=1e-6)


def test_uint8_float32_float64_accepted(fitted, blobs):
    X, _ = blobs
    ref = fitted.transform(X)
    for dtype in (np.float32, np.float64):
        out = fitted.transform(X.astype(dtype) / 255)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    # float training data works too
    est = CNNScorer(**FAST).fit(X.astype(np.float64) / 255, blobs[1])
    assert est.transform(X).dtype == np.float32


def test_single_image_query(fitted, blobs):
    assert fitted.predict_proba(blobs[0][0]).shape == (1, 3)


def test_arbitrary_labels(blobs):
    X, y = blobs
    names = np.array(["ring", "core", "disk"])[y]
    est = CNNScorer(**FAST).fit(X, names)
    np.testing.assert_array_equal(est.classes_, ["core", "disk", "ring"])
    assert set(est.predict(X)) <= set(names)


def test_galaxy10_groups(blobs):
    X, _ = blobs
    y10 = np.arange(len(X)) % 10
    est = CNNScorer(groups="galaxy10-5", **FAST).fit(X, y10)
    assert list(est.classes_) == list(GALAXY10_GROUPS)
    assert est.predict_proba(X).shape == (len(X), 5)
    assert set(est.predict(X)) <= set(GALAXY10_GROUPS)
    assert 0 <= est.score(X, y10) <= 1
    with pytest.raises(ValueError, match="belong to no group"):
        CNNScorer(groups="galaxy10-5", **FAST).fit(X, y10 + 20)


def _weights(est):
    return est.net_.module_.state_dict()


def test_restore_best_keeps_the_best_validated_epoch(blobs_big):
    # seed 1: validation balanced accuracy peaks at epoch 4 of 6, then plateaus
    X, y = blobs_big
    # constant rate: a one-cycle schedule depends on max_epochs, so no shorter run
    # would retrace the same epochs
    params = {"max_epochs": 6, "batch_size": 16, "random_state": 1}
    params.update(lr_schedule="constant", lr=1e-3, dropout=0.25)
    best = CNNScorer(**params).fit(X, y)
    scores = [h["valid_bacc"] for h in best.history_]
    assert best.best_epoch_ == 1 + int(np.argmax(scores)) == 4, scores
    # the kept weights are bitwise those of a run stopped at that epoch, not the last's
    upto = CNNScorer(**{**params, "max_epochs": 4, "restore_best": False}).fit(X, y)
    last = CNNScorer(**{**params, "restore_best": False}).fit(X, y)
    assert upto.best_epoch_ == 4 and last.best_epoch_ == 6
    for name, w in _weights(best).items():
        assert torch.equal(w, _weights(upto)[name]), name
    assert not all(torch.equal(w, _weights(last)[k]) for k, w in _weights(best).items())
    # the net does not carry a second copy of the weights into pickles
    assert dict(best.net_.callbacks_)["restore_best"].best_model_weights_ is None
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(best)).transform(X), best.transform(X))


@pytest.mark.parametrize("validation_fraction", [0.1, None])
def test_one_cycle_schedule_peaks_at_lr_and_anneals(blobs, validation_fraction):
    X, y = blobs  # 48 images: batches of 16 do not divide the training split evenly
    params = {**FAST, "max_epochs": 3, "lr": 0.01, "validation_fraction": validation_fraction}
    est = CNNScorer(**params).fit(X, y)
    n_train = len(X) - (5 if validation_fraction else 0)
    lrs = np.concatenate(est.net_.history[:, "batches", :, "event_lr"])  # the rate of each batch
    assert len(lrs) == 3 * -(-n_train // 16)  # one cycle over exactly the batches trained
    assert lrs[0] == pytest.approx(0.01 / 25) and lrs[-1] == pytest.approx(0.01 / 25 / 1e4)
    assert 0.009 < lrs.max() <= 0.01 and np.argmax(lrs) < len(lrs) / 2
    constant = CNNScorer(**params, lr_schedule="constant").fit(X, y)
    assert constant.net_.optimizer_.param_groups[0]["lr"] == 0.01
    assert "lr_schedule" not in dict(constant.net_.callbacks_)


def test_restore_best_without_validation_keeps_the_last_epoch(blobs):
    X, y = blobs
    est = CNNScorer(**{**FAST, "max_epochs": 2}, validation_fraction=None).fit(X, y)
    assert est.best_epoch_ == 2 and "valid_bacc" not in est.history_[-1]


def test_validation_accuracy_and_balanced_accuracy(blobs_big):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    X, y = blobs_big
    keep = (y != 2) | (np.arange(len(y)) % 4 == 0)  # class 2 rare: accuracy != balanced
    X, y = X[keep], y[keep]
    est = CNNScorer(**FAST, restore_best=False).fit(X, y)
    valid = est._split(len(X), y, 0).valid_idx  # the split fit made (seed 0, stratified)
    pred = est.predict(X[valid])
    row = est.history_[-1]
    assert row["valid_acc"] == pytest.approx(accuracy_score(y[valid], pred))
    assert row["valid_bacc"] == pytest.approx(balanced_accuracy_score(y[valid], pred))
    assert 0 <= row["train_bacc"] <= 1


def test_balance_options(blobs):
    X, y = blobs
    for balance in ("loss", None):
        est = CNNScorer(balance=balance, augment=False, **FAST).fit(X, y)
        assert est.predict(X).shape == y.shape


@pytest.mark.parametrize(
    ("kwargs", "fit_args", "match"),
    [
        ({}, "no_y", "needs labels"),
        ({}, "one_class", "single class"),
        ({"n_classes": 5}, None, "n_classes=5 but y has 3 classes"),
        ({"device": "tpu"}, None, "device must be 'cpu', 'cuda' or 'auto'"),
    ],
)
def test_bad_fit_arguments(blobs, kwargs, fit_args, match):
    X, y = blobs
    if fit_args == "no_y":
        y = None
    elif fit_args == "one_class":
        y = np.zeros(len(X), int)
    with pytest.raises((ValueError, RuntimeError), match=match):
        CNNScorer(**{**FAST, **kwargs}).fit(X, y)


def test_fewer_samples_than_classes(blobs):
    X = blobs[0][:2]
    with pytest.raises(ValueError, match="2 images for 5 classes"):
        CNNScorer(groups="galaxy10-5", **FAST).fit(X, np.array([0, 9]))


def test_bad_images(fitted, blobs):
    X, y = blobs
    bad = X.astype(np.float32) / 255
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        CNNScorer(**FAST).fit(bad, y)
    with pytest.raises(ValueError, match="multiples of 16"):
        CNNScorer(**FAST).fit(np.zeros((6, 20, 20, 3), np.uint8), np.arange(6) % 2)
    with pytest.raises(ValueError, match="fitted on 16x16x3"):
        fitted.predict(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="expected 1 \\(grey\\) or 3 \\(RGB\\)"):
        fitted.predict(np.zeros((2, 16, 16, 2), np.uint8))
    with pytest.raises(ValueError, match="3 labels but there are"):
        CNNScorer(**FAST).fit(X, y[:3])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu(blobs):
    with pytest.raises(RuntimeError, match="no CUDA GPU is available.*device='cpu'"):
        CNNScorer(**{**FAST, "device": "cuda"}).fit(*blobs)
    est = CNNScorer(**{**FAST, "device": "auto"}).fit(*blobs)
    assert est.net_.device == "cpu"


def test_learns_easy_problem_above_chance():
    X, y = make_blob_images(300, random_state=3)
    Xt, yt = make_blob_images(150, random_state=4)
    est = CNNScorer(max_epochs=6, batch_size=32, lr=3e-3, random_state=0).fit(X, y)
    # chance is 1/3; the three shapes are easy, so demand far more
    assert est.score(Xt, yt) >= 0.8, est.history_


# ------------------------------------------------------------------ audit siblings (issue 10)
def test_training_that_diverges_is_an_error_not_a_nan_model(blobs):
    X, y = blobs
    # a finite but absurd learning rate: weights around 1e29, every output NaN
    with pytest.raises(
        ValueError, match=r"CNNScorer training diverged: .*NaN.*Lower lr \(lr=1e\+30\)"
    ):
        CNNScorer(**{**FAST, "lr": 1e30}).fit(X, y)


@pytest.mark.parametrize(
    "groups, match",
    [
        ({"a": 0, "b": (1, 2)}, r"groups\['a'\] is 0; each group maps to a list or tuple"),
        ({"a": "01", "b": "2"}, r"groups\['a'\] is '01'"),
        ({"a": (0, 1), "b": (1, 2)}, "Label 1 is in two groups, 'a' and 'b'"),
        ({"a": (0, 1, 2), "b": ()}, r"groups\['b'\] is empty"),
    ],
)
def test_bad_group_dicts_are_clear_errors(blobs, groups, match):
    X, y = blobs
    with pytest.raises(ValueError, match=match):
        CNNScorer(groups=groups, **FAST).fit(X, y)
