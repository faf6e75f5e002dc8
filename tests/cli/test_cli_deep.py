"""`galaxysim train`, `search --method cnn,ae,vae --model-dir` and `generate`."""

import argparse

import numpy as np
import pytest
from PIL import Image
from sklearn.preprocessing import StandardScaler

import galaxysim.cli._main as cli_main
from galaxysim.cli import main
from galaxysim.datasets import load_milky_way, make_galaxies
from galaxysim.neighbors import NearestGalaxy
from galaxysim.nn import AEEncoder, CNNScorer, VAEEncoder, load_model
from galaxysim.nn._persistence import read_model_header

N, SIZE = 60, 32
DATA = ["--n-catalog", str(N), "--image-size", str(SIZE), "--epochs", "1", "-q"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("models")
    assert main(["train", *DATA, "--model-dir", str(path)]) == 0
    return path


def test_train_saves_every_model_with_versions(model_dir):
    for method, cls in [("cnn", CNNScorer), ("ae", AEEncoder), ("vae", VAEEncoder)]:
        path = model_dir / f"{method}.safetensors"
        assert read_model_header(path)["estimator"] == cls.__name__
        model = load_model(path)
        assert isinstance(model, cls) and model.image_shape_ == (SIZE, SIZE, 3)
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "ae.safetensors",
        "cnn.safetensors",
        "vae.safetensors",
    ]


def test_search_loads_saved_models(model_dir, capsys):
    code = main(
        ["search", *DATA, "--method", "cnn,ae,vae", "-k", "3", "--model-dir", str(model_dir)]
    )
    out, err = capsys.readouterr()
    assert code == 0
    for method in ("cnn", "ae", "vae"):
        assert f"{method}: loaded {model_dir / (method + '.safetensors')}" in err
        assert f"{method}: top 3" in out
    assert "trained" not in err


def _args(model_dir, k=5):
    return argparse.Namespace(model_dir=str(model_dir), k=k, seed=0, epochs=1, quiet=True)


@pytest.mark.parametrize("method", ["ae", "vae"])
def test_autoencoder_search_is_invariant_standardised_cosine(model_dir, method):
    X, y = make_galaxies(N, image_size=SIZE, random_state=0)
    query = load_milky_way(kind="model", image_size=SIZE)
    pipe = cli_main.build_search(method, _args(model_dir), X, y).fit(X, y)
    dist, ind = pipe.kneighbors(query)
    # the same search by hand
    model = load_model(model_dir / f"{method}.safetensors").set_params(orientation_invariant=True)
    scaler = StandardScaler().fit(model.transform(X))
    search = NearestGalaxy(n_neighbors=5, metric="cosine").fit(scaler.transform(model.transform(X)))
    d_ref, i_ref = search.kneighbors(scaler.transform(model.transform(query)))
    np.testing.assert_array_equal(ind, i_ref)
    np.testing.assert_allclose(dist, d_ref, rtol=1e-5, atol=1e-6)
    # orientation-invariant: a rotated query finds the same galaxies
    np.testing.assert_array_equal(pipe.kneighbors(np.rot90(query, 1, axes=(1, 2)))[1], ind)


def test_cnn_search_compares_class_scores(model_dir):
    X, y = make_galaxies(N, image_size=SIZE, random_state=0)
    query = load_milky_way(kind="model", image_size=SIZE)
    pipe = cli_main.build_search("cnn", _args(model_dir), X, y).fit(X, y)
    cnn = load_model(model_dir / "cnn.safetensors")
    search = NearestGalaxy(n_neighbors=5, metric="euclidean").fit(cnn.transform(X))
    np.testing.assert_array_equal(
        pipe.kneighbors(query)[1], search.kneighbors(cnn.transform(query))[1]
    )


def test_interrupted_train_keeps_the_saved_model(model_dir, tmp_path, monkeypatch, capsys):
    saved = (model_dir / "ae.safetensors").read_bytes()
    backup = tmp_path / "models"
    backup.mkdir()
    (backup / "ae.safetensors").write_bytes(saved)

    def interrupted_fit(self, X, y=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(AEEncoder, "fit", interrupted_fit)
    assert main(["train", *DATA, "--method", "ae", "--model-dir", str(backup)]) == 130
    assert "galaxysim: interrupted" in capsys.readouterr().err
    assert (backup / "ae.safetensors").read_bytes() == saved
    assert [p.name for p in backup.iterdir()] == ["ae.safetensors"]  # no temporary left behind


def test_train_replaces_a_saved_model(tmp_path, capsys):
    assert main(["train", *DATA, "--method", "ae", "--model-dir", str(tmp_path)]) == 0
    first = (tmp_path / "ae.safetensors").read_bytes()
    assert (
        main(["train", *DATA, "--method", "ae", "--seed", "1", "--model-dir", str(tmp_path)]) == 0
    )
    _, err = capsys.readouterr()
    assert "loaded" not in err and err.count("ae: trained") == 2
    assert (tmp_path / "ae.safetensors").read_bytes() != first


@pytest.mark.parametrize("like", [None, "milkyway"])
def test_generate_writes_a_png_grid(model_dir, tmp_path, capsys, like):
    out = tmp_path / "grid.png"
    args = ["generate", *DATA, "--n", "4", "--out", str(out), "--model-dir", str(model_dir)]
    assert main(args + (["--like", like] if like else [])) == 0
    stdout, _ = capsys.readouterr()
    assert f"4 generated images written to {out}" in stdout
    with Image.open(out) as img:
        assert img.format == "PNG" and min(img.size) > 100


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["train", "--method", "mse"], "train fits deep models only"),
        (["generate", "--n", "0"], "--n must be at least 1"),
        (["generate", "--like", "milkyway", "--scale", "inf"], "--scale must be a finite number"),
        (["search", "--method", "cnn", "--epochs", "0"], "--epochs must be at least 1"),
    ],
)
def test_user_errors(args, match, tmp_path, capsys):
    code = main([*args, *DATA[:4], "-q", "--model-dir", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2 and match in err


def test_a_model_file_that_is_not_safetensors_is_refused(tmp_path, capsys):
    (tmp_path / "ae.safetensors").write_bytes(b"GALAXYSIM-MODEL\n{}\n" + b"\x80\x04junk")
    code = main(["search", *DATA, "--method", "ae", "--model-dir", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "pickle-based format" in err and "not loaded" in err
