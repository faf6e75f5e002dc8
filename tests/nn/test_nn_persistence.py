import json

import numpy as np
import pytest
import torch

import galaxysim
from galaxysim.nn import AEEncoder, CNNScorer, load_model, save_model
from galaxysim.nn._persistence import read_model_header


@pytest.fixture(scope="module")
def cnn(blobs):
    return CNNScorer(max_epochs=1, batch_size=16, random_state=0).fit(*blobs)


def test_round_trip_same_outputs(cnn, blobs, tmp_path):
    path = save_model(cnn, tmp_path / "sub" / "cnn.joblib")
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.transform(blobs[0]), cnn.transform(blobs[0]))
    header = read_model_header(path)
    assert header["galaxysim"] == galaxysim.__version__
    assert header["torch"] == torch.__version__
    assert header["estimator"] == "CNNScorer"


def _rewrite_header(path, **changes):
    raw = path.read_bytes()
    magic, header, rest = raw.split(b"\n", 2)
    h = json.loads(header)
    h.update(changes)
    path.write_bytes(magic + b"\n" + json.dumps(h).encode() + b"\n" + rest)


def test_incompatible_versions_rejected_with_fix(cnn, tmp_path):
    path = tmp_path / "m.joblib"
    save_model(cnn, path)
    _rewrite_header(path, galaxysim="9.4.0")
    with pytest.raises(ValueError, match=r"saved by galaxysim 9\.4\.0.*Retrain.*galaxysim train"):
        load_model(path)
    save_model(cnn, path)
    _rewrite_header(path, torch="99.1.0+cpu")
    with pytest.raises(ValueError, match=r"torch 99\.1\.0\+cpu.*Upgrade torch"):
        load_model(path)
    save_model(cnn, path)
    _rewrite_header(path, torch="2.0.1")  # older torch: fine
    assert isinstance(load_model(path), CNNScorer)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "x.joblib"
    path.write_bytes(b"hello\nworld\n")
    with pytest.raises(ValueError, match="not a galaxysim model file"):
        load_model(path)


def test_interrupted_save_leaves_previous_file(blobs, tmp_path, monkeypatch):
    ae = AEEncoder(latent_dim=4, max_epochs=1, random_state=0).fit(blobs[0])
    path = tmp_path / "ae.joblib"
    save_model(ae, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("galaxysim.nn._persistence.joblib.dump", boom)
    with pytest.raises(KeyboardInterrupt):
        save_model(ae, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ae.joblib"]  # no partial file left
