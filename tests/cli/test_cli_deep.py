"""`galaxysim train`, `search --method cnn,ae,vae --model-dir` and `generate`."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.preprocessing import StandardScaler

import galaxysim.cli._main as cli_main
from galaxysim.cli import main
from galaxysim.cli._models import catalogue_fingerprint
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
    X, y = make_galaxies(N, image_size=SIZE, random_state=0)
    runs = set()
    for method, cls in [("cnn", CNNScorer), ("ae", AEEncoder), ("vae", VAEEncoder)]:
        path = model_dir / f"{method}.safetensors"
        header = read_model_header(path)
        assert header["estimator"] == cls.__name__
        assert header["provenance"]["catalogue"] == catalogue_fingerprint(X, y)
        runs.add(header["provenance"]["run"])
        model = load_model(path)
        assert isinstance(model, cls) and model.image_shape_ == (SIZE, SIZE, 3)
    assert len(runs) == 1  # one training run
    manifest = json.loads((model_dir / "models.json").read_text())
    assert {m: e["run"] for m, e in manifest["models"].items()} == dict.fromkeys(
        ["ae", "cnn", "vae"], runs.pop()
    )
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "ae.safetensors",
        "cnn.safetensors",
        "models.json",
        "vae.safetensors",
    ]  # no temporary folder left


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


def _copy(folder, tmp_path, name="models"):
    copy = tmp_path / name
    shutil.copytree(folder, copy)
    return copy, _files(copy)


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _interrupt_in_epoch(monkeypatch, net_cls_name):
    """Ctrl-C inside skorch's training loop of the nets named ``net_cls_name``."""
    from galaxysim.nn import _nets

    original = _nets._GalaxyNet.on_epoch_end

    def on_epoch_end(self, net, **kwargs):
        if type(self).__name__ == net_cls_name:
            raise KeyboardInterrupt
        return original(self, net, **kwargs)

    monkeypatch.setattr(_nets._GalaxyNet, "on_epoch_end", on_epoch_end)


def test_ctrl_c_during_training_keeps_every_saved_model(model_dir, tmp_path, monkeypatch, capsys):
    # the CNN trains and the interrupt comes in the autoencoder's first epoch: the run
    # is discarded, the CNN included, and nothing half-written stays
    folder, before = _copy(model_dir, tmp_path)
    _interrupt_in_epoch(monkeypatch, "_AENet")
    code = main(["train", *DATA, "--method", "cnn,ae", "--seed", "3", "--model-dir", str(folder)])
    assert code == 130
    err = capsys.readouterr().err
    assert "cnn: trained" in err and "ae: trained" not in err and "saved" not in err
    assert err.strip().endswith("galaxysim train: interrupted")
    assert _files(folder) == before


def test_a_run_stopped_while_moving_its_models_is_refused(model_dir, tmp_path, monkeypatch, capsys):
    import galaxysim.cli._models as models

    folder, before = _copy(model_dir, tmp_path)
    real_replace, moved = os.replace, []

    def killed_after_one(src, dst):
        if Path(src).parent.name.startswith(".run-") and Path(dst).parent == folder:
            if moved:
                raise KeyboardInterrupt  # stands in for a kill between two moves
            moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(models.os, "replace", killed_after_one)
    args = ["train", *DATA, "--method", "cnn,ae", "--seed", "4", "--model-dir", str(folder)]
    assert main(args) == 130
    monkeypatch.setattr(models.os, "replace", real_replace)
    assert [Path(p).name for p in moved] == ["cnn.safetensors"]  # a new cnn beside old models
    assert (folder / "cnn.safetensors").read_bytes() != before["cnn.safetensors"]
    assert (folder / "models.json").read_bytes() == before["models.json"]
    capsys.readouterr()
    for methods in ("cnn", "ae,cnn"):
        code = main(["search", *DATA, "--method", methods, "--model-dir", str(folder)])
        _, err = capsys.readouterr()
        assert code == 2
        assert re.search(r"cnn\.safetensors is from training run \S+, which .*models\.json", err)
        assert "mixes models of two runs" in err and "galaxysim train --model-dir" in err
        assert "trained" not in err  # refused before any training
    # the ae and vae of the last complete run are still used
    assert main(["search", *DATA, "--method", "ae,vae", "--model-dir", str(folder)]) == 0
    # training again repairs the folder
    assert main(["train", *DATA, "--method", "cnn", "--model-dir", str(folder)]) == 0
    assert main(["search", *DATA, "--method", "cnn,ae", "--model-dir", str(folder)]) == 0


def test_a_killed_run_leaves_a_folder_the_next_run_removes(model_dir, tmp_path, capsys):
    import socket

    folder, _ = _copy(model_dir, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64]
    stale = folder / f".run-20240101T000000Z-00000000.{host}.{dead.pid}.part"
    stale.mkdir()
    (stale / "cnn.safetensors").write_bytes(b"half")
    alive = folder / f".run-20240101T000000Z-11111111.{host}.{os.getpid()}.part"
    alive.mkdir()  # a run in progress (this process): left alone
    assert main(["train", *DATA, "--method", "ae", "--model-dir", str(folder)]) == 0
    assert not stale.exists() and alive.exists()


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
    out.write_bytes(b"an older grid")  # replaced
    args = ["generate", *DATA, "--n", "4", "--out", str(out), "--model-dir", str(model_dir)]
    assert main(args + (["--like", like] if like else [])) == 0
    stdout, _ = capsys.readouterr()
    assert f"4 generated images written to {out}" in stdout
    with Image.open(out) as img:
        assert img.format == "PNG" and min(img.size) > 100


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a model is trained: the checks come first."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("trained before the command line was checked")

    for cls in (CNNScorer, AEEncoder, VAEEncoder):
        monkeypatch.setattr(cls, "fit", refuse)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["train", "--method", "mse"], "train fits deep models only"),
        (["generate", "--n", "0"], "--n must be between 1 and 1024; got 0."),
        (["generate", "--n", "100000"], "--n must be between 1 and 1024; got 100000."),
        (["generate", "--like", "milkyway", "--scale", "inf"], "--scale must be a finite number"),
        (["generate", "--like", "nowhere.png"], "--like 'nowhere.png' is neither `milkyway`"),
        (["search", "--method", "cnn", "--epochs", "0"], "--epochs must be at least 1"),
        (["train", "--image-size", "24"], "--image-size 24 does not suit the cnn, ae, vae method"),
    ],
)
def test_user_errors(args, match, tmp_path, capsys, no_training):
    code = main([args[0], *DATA[:4], *args[1:], "-q", "--model-dir", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2 and match in err, err


@pytest.mark.parametrize("command", ["train", "search", "generate"])
def test_model_dir_naming_a_file_fails_before_training(command, tmp_path, capsys, no_training):
    not_a_folder = tmp_path / "models"
    not_a_folder.write_text("a file")
    method = [] if command == "generate" else ["--method", "ae"]
    code = main([command, *DATA, *method, "--model-dir", str(not_a_folder)])
    _, err = capsys.readouterr()
    assert code == 2
    assert re.search(r"--model-dir .*models is a file, not a folder", err), err
    code = main([command, *DATA, *method, "--model-dir", str(not_a_folder / "sub")])
    _, err = capsys.readouterr()
    assert code == 2 and "cannot be created" in err, err


@pytest.mark.parametrize(
    ("out", "match"),
    [
        (".", r"--out \S+ is a folder; name the PNG file"),
        ("grid.jpg", r"--out \S+grid\.jpg must name a \.png file"),
        ("file.txt/grid.png", r"cannot be created: \S+file\.txt is not a folder"),
    ],
)
def test_generate_out_is_checked_before_training(out, match, tmp_path, capsys, no_training):
    (tmp_path / "file.txt").write_text("x")
    code = main(["generate", *DATA, "--out", str(tmp_path / out)])
    _, err = capsys.readouterr()
    assert code == 2 and re.search(match, err), err


def test_a_model_of_another_kind_is_refused(model_dir, tmp_path, capsys, no_training):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(model_dir / "ae.safetensors", folder / "cnn.safetensors")
    code = main(["search", *DATA, "--method", "ae,cnn", "--model-dir", str(folder)])
    _, err = capsys.readouterr()
    assert code == 2
    assert re.search(
        r"cnn\.safetensors holds an AEEncoder model, not the CNNScorer of the cnn method.*"
        r"Rename it to ae\.safetensors",
        err,
    ), err


@pytest.mark.parametrize("kind", ["empty", "truncated", "folder", "fifo"])
def test_a_broken_model_file_is_refused_before_training(
    kind, model_dir, tmp_path, capsys, no_training
):
    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / "vae.safetensors"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes((model_dir / "vae.safetensors").read_bytes()[:5000])
    elif kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    code = main(["search", *DATA, "--method", "ae,vae", "--model-dir", str(folder)])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    match = {
        "empty": "is not a galaxysim model file",
        "truncated": "is not a galaxysim model file",
        "folder": "vae.safetensors is a folder, not a file",
        "fifo": "vae.safetensors is a named pipe (FIFO), not a regular file",
    }[kind]
    assert match in err


def test_a_model_of_another_catalogue_is_used_with_a_warning(model_dir, capsys):
    code = main(["search", *DATA, "--seed", "7", "--method", "ae", "--model-dir", str(model_dir)])
    out, err = capsys.readouterr()
    assert code == 0 and "ae: top 10" in out
    assert re.search(
        r"galaxysim search: warning: \S+ae\.safetensors was trained on another catalogue "
        r"\(60 uint8 images of 32x32x3\) than this one \(60 uint8 images of 32x32x3\)",
        err,
    ), err
    main(["search", *DATA, "--method", "ae", "--model-dir", str(model_dir)])
    assert "warning" not in capsys.readouterr().err  # the catalogue it was trained on


def test_a_model_of_another_image_size_is_refused(model_dir, capsys, no_training):
    args = ["search", "--n-catalog", str(N), "--image-size", "48", "-q", "--method", "ae"]
    assert main([*args, "--model-dir", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert re.search(
        r"trained on 32x32x3 images, but the catalogue's are 48x48x3; use --image", err
    )


def test_search_trains_a_missing_model_as_a_run_of_one(model_dir, tmp_path, capsys):
    folder, before = _copy(model_dir, tmp_path)
    (folder / "vae.safetensors").unlink()
    assert main(["search", *DATA, "--method", "ae,vae", "--model-dir", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "ae: loaded" in err and "vae: trained" in err and "vae: saved" in err
    runs = {
        m: e["run"] for m, e in json.loads((folder / "models.json").read_text())["models"].items()
    }
    assert runs["vae"] == read_model_header(folder / "vae.safetensors")["provenance"]["run"]
    assert runs["ae"] == read_model_header(folder / "ae.safetensors")["provenance"]["run"]
    assert runs["ae"] != runs["vae"]
    assert main(["search", *DATA, "--method", "cnn,ae,vae", "--model-dir", str(folder)]) == 0


def test_a_model_file_that_is_not_safetensors_is_refused(tmp_path, capsys):
    (tmp_path / "ae.safetensors").write_bytes(b"GALAXYSIM-MODEL\n{}\n" + b"\x80\x04junk")
    code = main(["search", *DATA, "--method", "ae", "--model-dir", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "pickle-based format" in err and "not loaded" in err


# ------------------------------------------------------------------ cached embeddings
def _tables(out):
    """The printed tables without their timings."""
    return re.sub(r" \(\d+\.\d+ s\)", "", out)


def _cache(folder):
    return sorted(p.name for p in (folder / "cache").glob("*.npy"))


def test_a_second_search_reads_the_cached_embeddings(model_dir, tmp_path, capsys, monkeypatch):
    import galaxysim.cli._models as models

    folder, _ = _copy(model_dir, tmp_path)
    shutil.rmtree(folder / "cache", ignore_errors=True)
    args = ["search", *DATA, "--method", "cnn,ae,vae", "-k", "5", "--model-dir", str(folder)]
    assert main(args) == 0
    first, err = capsys.readouterr()
    assert "read from" not in err
    assert [name.split("-")[0] for name in _cache(folder)] == ["ae", "cnn", "vae"]

    def no_encoding(*args, **kwargs):
        raise AssertionError("the catalogue was encoded again")

    monkeypatch.setattr(models, "embed", no_encoding)
    assert main(args) == 0
    second, err = capsys.readouterr()
    assert _tables(second) == _tables(first)
    for method in ("cnn", "ae", "vae"):
        assert f"{method}: catalogue embeddings read from {folder / 'cache'}" in err
    # the same neighbours as the pipeline fitted on the images
    X, y = make_galaxies(N, image_size=SIZE, random_state=0)
    query = load_milky_way(kind="model", image_size=SIZE)
    pipe = cli_main.build_search("ae", _args(folder), X, y).fit(X, y)
    cached = cli_main.fit_search("ae", _args(folder), X, y)
    np.testing.assert_array_equal(cached.kneighbors(query)[1], pipe.kneighbors(query)[1])
    np.testing.assert_allclose(cached.kneighbors(query)[0], pipe.kneighbors(query)[0], rtol=1e-6)


def test_cached_embeddings_are_keyed_by_model_and_catalogue(model_dir, tmp_path, capsys):
    folder, _ = _copy(model_dir, tmp_path)
    shutil.rmtree(folder / "cache", ignore_errors=True)
    search = ["search", *DATA, "--method", "ae", "--model-dir", str(folder)]
    assert main(search) == 0
    (first,) = _cache(folder)
    # another catalogue (one image differs is enough: every image is hashed)
    assert main([*search, "--seed", "1"]) == 0
    assert "read from" not in capsys.readouterr().err and len(_cache(folder)) == 2
    # another model file under the same name
    assert main(["train", *DATA, "--method", "ae", "--seed", "2", "--model-dir", str(folder)]) == 0
    capsys.readouterr()
    assert main(search) == 0
    assert "read from" not in capsys.readouterr().err
    # bounded: the newest three per method
    for seed in (3, 4):
        assert main([*search, "--seed", str(seed)]) == 0
    assert len(_cache(folder)) == 3 and first not in _cache(folder)


def test_a_broken_or_unwritable_cache_is_recomputed(model_dir, tmp_path, capsys):
    folder, _ = _copy(model_dir, tmp_path)
    shutil.rmtree(folder / "cache", ignore_errors=True)
    search = ["search", *DATA, "--method", "ae", "-k", "3", "--model-dir", str(folder)]
    assert main(search) == 0
    good, _ = capsys.readouterr()
    (name,) = _cache(folder)
    (folder / "cache" / name).write_bytes(b"\x93NUMPY truncated")
    assert main(search) == 0
    out, err = capsys.readouterr()
    assert _tables(out) == _tables(good)
    assert re.search(r"galaxysim search: warning: the cached embeddings \S+ are unreadable", err)
    assert main(search) == 0 and "read from" in capsys.readouterr().err  # rewritten
    shutil.rmtree(folder / "cache")
    (folder / "cache").write_text("not a folder")
    assert main(search) == 0
    out, err = capsys.readouterr()
    assert _tables(out) == _tables(good)
    assert "galaxysim search: warning: could not cache the ae embeddings" in err


def test_embedding_shows_a_progress_bar(model_dir, tmp_path, capsys):
    folder, _ = _copy(model_dir, tmp_path)
    shutil.rmtree(folder / "cache", ignore_errors=True)
    args = ["search", "--n-catalog", str(N), "--image-size", str(SIZE), "--method", "ae"]
    assert main([*args, "--model-dir", str(folder)]) == 0
    assert "ae: embedding the catalogue" in capsys.readouterr().err


def test_generate_like_a_catalogue_galaxy(model_dir, tmp_path, capsys):
    out = tmp_path / "like.png"
    args = ["generate", *DATA, "--like", "index:4", "--n", "4", "--out", str(out)]
    assert main([*args, "--model-dir", str(model_dir)]) == 0
    assert "more like" not in capsys.readouterr().err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code = main(
        [*args[:-2], "--like", "index:999", "--out", str(out), "--model-dir", str(model_dir)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "galaxysim generate: error: --like index:999: the catalogue has 60" in err
