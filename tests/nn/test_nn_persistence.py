"""Model files: safetensors tensors plus JSON, loaded without running code from the file."""

import json
import os
import pathlib
import pickle

import joblib
import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import galaxysim
from galaxysim.nn import AEEncoder, CNNScorer, VAEEncoder, load_model, save_model
from galaxysim.nn._persistence import read_model_header

FAST = {"max_epochs": 1, "batch_size": 16, "random_state": 0}


@pytest.fixture(scope="module")
def cnn(blobs):
    return CNNScorer(**FAST).fit(*blobs)


@pytest.fixture(scope="module")
def ae(blobs):
    return AEEncoder(latent_dim=4, **FAST).fit(blobs[0])


@pytest.fixture(scope="module")
def vae(blobs):
    return VAEEncoder(latent_dim=4, beta=0.5, **FAST).fit(blobs[0])


def _round_trip(est, tmp_path, name="model.safetensors"):
    path = save_model(est, tmp_path / "sub" / name)
    return load_model(path), path


def _same_fitted_state(a, b):
    assert type(a) is type(b)
    assert a.get_params() == b.get_params()
    assert a.image_shape_ == b.image_shape_ and a.history_ == b.history_
    ka, kb = a.net_.module_.state_dict(), b.net_.module_.state_dict()
    assert ka.keys() == kb.keys() and all(torch.equal(ka[k], kb[k]) for k in ka)


def test_cnn_round_trip_bitwise(cnn, blobs, tmp_path):
    X, y = blobs
    loaded, _ = _round_trip(cnn, tmp_path)
    _same_fitted_state(cnn, loaded)
    assert loaded.best_epoch_ == cnn.best_epoch_
    assert loaded.classes_.dtype == cnn.classes_.dtype
    np.testing.assert_array_equal(loaded.classes_, cnn.classes_)
    for method in ("predict_proba", "decision_function", "embed", "predict"):
        np.testing.assert_array_equal(getattr(loaded, method)(X), getattr(cnn, method)(X))
    assert loaded.score(X, y) == cnn.score(X, y)


@pytest.mark.parametrize(
    ("labels", "extra"),
    [
        (np.array(["core", "disk", "ring"]), {"balance": "loss"}),  # <U4 classes, class weights
        (np.array([0.5, 1.5, 2.5], np.float32), {}),
        (None, {"groups": {"compact": (0,), "extended": (1, 2)}}),  # object classes
    ],
)
def test_cnn_labels_and_class_weights_survive(blobs, tmp_path, labels, extra):
    X, y = blobs
    y = y if labels is None else labels[y]
    cnn = CNNScorer(**FAST, **extra).fit(X, y)
    loaded, _ = _round_trip(cnn, tmp_path)
    _same_fitted_state(cnn, loaded)
    assert loaded.classes_.dtype == cnn.classes_.dtype
    np.testing.assert_array_equal(loaded.classes_, cnn.classes_)
    np.testing.assert_array_equal(loaded.predict(X), cnn.predict(X))
    if "balance" in extra:
        assert torch.equal(loaded.net_.criterion_.weight, cnn.net_.criterion_.weight)
    if "groups" in extra:
        assert loaded.get_params()["groups"] == {"compact": (0,), "extended": (1, 2)}


def test_ae_round_trip_bitwise(ae, blobs, tmp_path):
    X, _ = blobs
    loaded, _ = _round_trip(ae, tmp_path)
    _same_fitted_state(ae, loaded)
    Z = ae.transform(X)
    np.testing.assert_array_equal(loaded.transform(X), Z)
    np.testing.assert_array_equal(loaded.inverse_transform(Z), ae.inverse_transform(Z))
    np.testing.assert_array_equal(loaded.reconstruction_error(X), ae.reconstruction_error(X))
    np.testing.assert_array_equal(
        loaded.set_params(orientation_invariant=True).transform(X),
        ae.set_params(orientation_invariant=True).transform(X),
    )
    ae.set_params(orientation_invariant=False)
    assert list(loaded.get_feature_names_out()) == list(ae.get_feature_names_out())


def test_vae_round_trip_bitwise(vae, blobs, tmp_path):
    X, _ = blobs
    loaded, _ = _round_trip(vae, tmp_path)
    _same_fitted_state(vae, loaded)
    np.testing.assert_array_equal(loaded.transform(X), vae.transform(X))
    np.testing.assert_array_equal(
        loaded.generate_like(X[:2], 3, random_state=1), vae.generate_like(X[:2], 3, random_state=1)
    )
    np.testing.assert_array_equal(loaded.sample(3, random_state=2), vae.sample(3, random_state=2))
    np.testing.assert_array_equal(loaded.interpolate(X[0], X[1], 4), vae.interpolate(X[0], X[1], 4))
    assert loaded.net_.beta == 0.5


def test_loading_leaves_the_global_rng_alone(ae, tmp_path):
    path = save_model(ae, tmp_path / "ae.safetensors")
    state = torch.get_rng_state()
    load_model(path)
    assert torch.equal(torch.get_rng_state(), state)


def test_header_records_versions_and_class(cnn, tmp_path):
    path = save_model(cnn, tmp_path / "cnn.safetensors")
    header = read_model_header(path)
    assert header["format"] == 2
    assert header["galaxysim"] == galaxysim.__version__
    assert header["torch"] == torch.__version__
    assert header["estimator"] == "CNNScorer"
    assert header["module"]["channels"] == 32


def _rewrite(path, edit):
    with safetensors.safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    header = json.loads(metadata["galaxysim.model"])
    edit(header)
    metadata = {"galaxysim.model": json.dumps(header)}
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))


def test_incompatible_versions_rejected_with_fix(cnn, tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(cnn, path)
    _rewrite(path, lambda h: h.update(galaxysim="9.4.0"))
    with pytest.raises(ValueError, match=r"saved by galaxysim 9\.4\.0.*Retrain.*galaxysim train"):
        load_model(path)
    save_model(cnn, path)
    _rewrite(path, lambda h: h.update(torch="99.1.0+cpu"))
    with pytest.raises(ValueError, match=r"torch 99\.1\.0\+cpu.*Upgrade torch"):
        load_model(path)
    save_model(cnn, path)
    _rewrite(path, lambda h: h.update(format=3))
    with pytest.raises(ValueError, match="uses model file format 3; this galaxysim reads format 2"):
        load_model(path)
    save_model(cnn, path)
    _rewrite(path, lambda h: h.update(torch="2.0.1"))  # older torch: fine
    assert isinstance(load_model(path), CNNScorer)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello\nworld\n", b"\x89PNG\r\n\x1a\n" + bytes(64), b"\x10" + bytes(7) + b"{}"],
    ids=["empty", "text", "png", "short-header"],
)
def test_foreign_files_rejected(tmp_path, content):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a galaxysim model file"):
        load_model(path)


def test_truncated_file_rejected(ae, tmp_path):
    path = tmp_path / "ae.safetensors"
    save_model(ae, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="is not a galaxysim model file.*unreadable"):
        load_model(path)


def test_safetensors_without_galaxysim_metadata_rejected(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors.torch.save({"w": torch.ones(2)}, metadata={"a": "b"}))
    with pytest.raises(ValueError, match="without galaxysim's metadata"):
        load_model(path)


class _Payload:
    """Unpickling this creates a file: a stand-in for arbitrary code in a pickle."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickle_payloads_are_never_unpickled(tmp_path):
    # the payload is real: unpickling it does create its marker
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()

    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    old = tmp_path / "cnn.joblib"  # the earlier format: magic line, JSON line, pickle
    header = {"format": 1, "galaxysim": galaxysim.__version__, "torch": torch.__version__}
    old.write_bytes(b"GALAXYSIM-MODEL\n" + json.dumps(header).encode() + b"\n" + payload)
    with pytest.raises(ValueError, match="earlier, pickle-based format.*not loaded.*arbitrary"):
        load_model(old)
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(payload)
    with pytest.raises(ValueError, match="not a galaxysim model file"):
        load_model(raw)
    joblib.dump(_Payload(marker), tmp_path / "j.safetensors")
    with pytest.raises(ValueError, match="not a galaxysim model file"):
        load_model(tmp_path / "j.safetensors")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h.update(estimator="os.system"), "names the estimator 'os.system'.*one of"),
        (lambda h: h.update(estimator="Pipeline"), "names the estimator 'Pipeline'"),
        (lambda h: h.update(estimator=["CNNScorer"]), "names the estimator"),
        (lambda h: h["params"].update(lr=-1.0), "invalid CNNScorer.*'lr' parameter"),
        (lambda h: h["params"].update(shell="rm -rf /"), "invalid CNNScorer"),
        (lambda h: h["params"].pop("lr"), "invalid CNNScorer"),
        (lambda h: h["params"].update(groups={"py/object": "os.system"}), "invalid CNNScorer"),
        (lambda h: h["fitted"]["classes_"].update(dtype="|V8"), "invalid CNNScorer.*classes_"),
        (lambda h: h["fitted"]["classes_"].update(values=[[0], 1, 2]), "invalid CNNScorer"),
        (  # 2 GB per label from a 100-byte header
            lambda h: h["fitted"]["classes_"].update(dtype="<U500000000"),
            "invalid CNNScorer.*wider than any label",
        ),
        (lambda h: h["fitted"].update(image_shape_=[16, 16]), "invalid CNNScorer.*image_shape_"),
        (lambda h: h["fitted"].pop("best_epoch_"), "invalid CNNScorer"),
        (lambda h: h["module"].update(channels=8), "invalid CNNScorer.*arguments do not match"),
        (
            lambda h: (h["params"].update(channels=8), h["module"].update(channels=8)),
            "tensors do not fit a CNNScorer",
        ),
    ],
)
def test_crafted_headers_rejected(cnn, tmp_path, edit, match):
    path = tmp_path / "cnn.safetensors"
    save_model(cnn, path)
    _rewrite(path, edit)
    with pytest.raises(ValueError, match=match):
        load_model(path)


def test_unexpected_tensor_rejected(ae, tmp_path):
    path = tmp_path / "ae.safetensors"
    save_model(ae, path)
    with safetensors.safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    tensors["extra.x"] = torch.zeros(1)
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))
    with pytest.raises(ValueError, match="unexpected tensor 'extra.x'"):
        load_model(path)


@pytest.mark.parametrize(
    "obj",
    [make_pipeline(StandardScaler()), FunctionTransformer(), {"net": 1}],
    ids=["pipeline", "sklearn-estimator", "dict"],
)
def test_save_model_refuses_other_objects(obj, tmp_path):
    with pytest.raises(TypeError, match="CNNScorer, AEEncoder and VAEEncoder.*pickle or joblib"):
        save_model(obj, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_save_model_refuses_unfitted_and_unsavable(ae, tmp_path):
    with pytest.raises(NotFittedError):
        save_model(AEEncoder(), tmp_path / "a.safetensors")
    rs = AEEncoder(latent_dim=4, **{**FAST, "random_state": np.random.RandomState(0)})
    rs.net_, rs.image_shape_, rs.history_ = ae.net_, ae.image_shape_, ae.history_
    with pytest.raises(ValueError, match="random_state to an int or None"):
        save_model(rs, tmp_path / "b.safetensors")
    changed = pickle.loads(pickle.dumps(ae)).set_params(latent_dim=8)
    with pytest.raises(ValueError, match="no longer match its network"):
        save_model(changed, tmp_path / "c.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_pickle_and_joblib_of_estimators_and_pipelines_keep_working(cnn, ae, blobs, tmp_path):
    X, y = blobs
    pipe = make_pipeline(AEEncoder(latent_dim=4, **FAST), StandardScaler()).fit(X)
    for obj, out in [(cnn, cnn.predict_proba(X)), (ae, ae.transform(X)), (pipe, pipe.transform(X))]:
        again = pickle.loads(pickle.dumps(obj))
        joblib.dump(obj, tmp_path / "obj.joblib")
        from_joblib = joblib.load(tmp_path / "obj.joblib")
        method = "predict_proba" if obj is cnn else "transform"
        np.testing.assert_array_equal(getattr(again, method)(X), out)
        np.testing.assert_array_equal(getattr(from_joblib, method)(X), out)


def test_interrupted_save_leaves_previous_file(ae, tmp_path, monkeypatch):
    path = tmp_path / "ae.safetensors"
    save_model(ae, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("galaxysim.nn._persistence._serialize", boom)
    with pytest.raises(KeyboardInterrupt):
        save_model(ae, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ae.safetensors"]  # no partial file left


# ------------------------------------------------------------------ kinds, paths, provenance
@pytest.mark.parametrize(
    ("saved", "kind", "match"),
    [
        ("ae", VAEEncoder, "holds an AEEncoder, not the VAEEncoder wanted here"),
        ("vae", AEEncoder, "holds a VAEEncoder, not the AEEncoder wanted here"),
        ("cnn", AEEncoder, "holds a CNNScorer, not the AEEncoder wanted here"),
    ],
)
def test_kind_is_checked(request, tmp_path, saved, kind, match):
    path = save_model(request.getfixturevalue(saved), tmp_path / "cnn.safetensors")
    with pytest.raises(ValueError, match=match):
        load_model(path, kind=kind)
    model = request.getfixturevalue(saved)
    assert type(load_model(path, kind=type(model))) is type(model)


def test_kind_must_be_one_of_the_classes(ae, tmp_path):
    path = save_model(ae, tmp_path / "ae.safetensors")
    for kind in ("AEEncoder", StandardScaler):
        with pytest.raises(TypeError, match="kind must be one of AEEncoder, CNNScorer, VAEEncoder"):
            load_model(path, kind=kind)
    assert isinstance(load_model(path, kind=AEEncoder), AEEncoder)


def test_a_directory_or_fifo_is_refused_without_blocking(tmp_path):
    folder = tmp_path / "d.safetensors"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=r"Model file .*d\.safetensors is a folder"):
        load_model(folder)
    fifo = tmp_path / "f.safetensors"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    with pytest.raises(ValueError, match=r"Model file .*f\.safetensors is a named pipe \(FIFO\)"):
        load_model(fifo)
    with pytest.raises(ValueError, match="FIFO"):
        read_model_header(fifo)
    with pytest.raises(FileNotFoundError, match="missing.safetensors does not exist"):
        load_model(tmp_path / "missing.safetensors")


def test_provenance_is_recorded(ae, tmp_path):
    prov = {"run": "r1", "catalogue": {"images": 3, "shape": [16, 16, 3], "hash": "ab"}}
    path = save_model(ae, tmp_path / "ae.safetensors", provenance=prov)
    assert read_model_header(path)["provenance"] == prov
    assert "provenance" not in read_model_header(save_model(ae, tmp_path / "plain.safetensors"))
    _same_fitted_state(ae, load_model(path))


@pytest.mark.parametrize(
    ("provenance", "error"),
    [({"x": float("nan")}, ValueError), ({"x": object()}, ValueError), (["run"], TypeError)],
)
def test_provenance_must_be_json(ae, tmp_path, provenance, error):
    with pytest.raises(error, match="provenance must"):
        save_model(ae, tmp_path / "ae.safetensors", provenance=provenance)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ Ctrl-C during fit
@pytest.mark.parametrize("cls", [CNNScorer, AEEncoder, VAEEncoder])
def test_ctrl_c_during_fit_propagates(blobs, cls, monkeypatch, tmp_path):
    # skorch's NeuralNet.partial_fit swallows KeyboardInterrupt and returns as if
    # training had finished; the estimators must not come out of it fitted
    from galaxysim.nn import _nets

    epochs = []

    def interrupted(self, net, **kwargs):
        epochs.append(len(net.history))
        raise KeyboardInterrupt

    monkeypatch.setattr(_nets._GalaxyNet, "on_epoch_end", interrupted)
    est = cls(**{**FAST, "max_epochs": 3, "verbose": 1})
    with pytest.raises(KeyboardInterrupt):
        est.fit(*blobs)
    assert epochs == [1]  # stopped in the first epoch
    assert not hasattr(est, "net_")
    with pytest.raises(NotFittedError):
        save_model(est, tmp_path / "never-written.safetensors")


def test_save_model_to_a_folder_names_the_folder(ae, tmp_path):
    with pytest.raises(
        IsADirectoryError,
        match=r"Model file .* is a folder; pass a file path, for example .*aeencoder\.safetensors",
    ):
        save_model(ae, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no temporary file left
