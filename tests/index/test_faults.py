"""Damaged indexes, changed catalogues, interrupted builds and bad arguments."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.exceptions import NotFittedError

import galaxysim.index._build as build_module
from galaxysim.datasets import open_catalogue
from galaxysim.index import SearchIndex, build_index
from galaxysim.nn import AEEncoder, save_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def index_of(tmp_path, data, write_h5):
    """``index_of(methods, **kw)``: an index of the test catalogue, built in tmp_path."""
    X, y = data
    src = write_h5(tmp_path / "cat.h5", X, y)

    def build(methods="mse", out="index", **kw):
        kw = {"crop": None, "image_size": None, "block_size": 50, "verbose": 0, **kw}
        return build_index(src, methods, tmp_path / out, **kw)

    return build


def staging_folders(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


# ---------------------------------------------------------------- a damaged index
def test_missing_or_truncated_file(index_of):
    path = index_of()
    rows = path / "rows" / "pixels.npy"
    data = rows.read_bytes()
    rows.write_bytes(data[:-100])
    with pytest.raises(ValueError, match=r"damaged: its file rows/pixels.npy has \d+ bytes, the"):
        SearchIndex.open(path)
    rows.unlink()
    with pytest.raises(ValueError, match="damaged: its file rows/pixels.npy is missing.*Rebuild"):
        SearchIndex.open(path)


def test_corrupt_content_is_found_by_verify(index_of):
    path = index_of()
    rows = path / "rows" / "pixels.npy"
    data = bytearray(rows.read_bytes())
    data[-5] ^= 0xFF
    rows.write_bytes(bytes(data))
    SearchIndex.open(path)  # sizes only: same size
    with pytest.raises(ValueError, match="the content of its file rows/pixels.npy changed"):
        SearchIndex.open(path, verify=True)


def test_corrupt_rows_header(index_of):
    path = index_of()
    rows = path / "rows" / "pixels.npy"
    data = bytearray(rows.read_bytes())
    data[:6] = b"NOTNPY"
    rows.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged: its rows rows/pixels.npy are unreadable"):
        SearchIndex.open(path)


def test_corrupt_identifiers_and_manifest(index_of):
    path = index_of()
    table = path / "identifiers.parquet"
    table.write_bytes(b"\0" * table.stat().st_size)
    with pytest.raises(ValueError, match="damaged: its identifiers.parquet is unreadable"):
        SearchIndex.open(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged: its manifest.json is unreadable"):
        SearchIndex.open(path)


def test_corrupt_model_file(index_of, models):
    path = index_of("ae", models={"ae": models["ae"]})
    model = path / "models" / "ae.safetensors"
    data = bytearray(model.read_bytes())
    data[8:40] = b"x" * 32  # inside the JSON header
    model.write_bytes(bytes(data))
    index = SearchIndex.open(path)  # models load on a method's first search
    with pytest.raises(ValueError, match="Cannot load the 'ae' model of the search index"):
        index.kneighbors(np.zeros((16, 16, 3), np.uint8), k=2)


def test_newer_format_is_refused(index_of):
    path = index_of()
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format version 99.*reads versions up to 1. Upgrade"):
        SearchIndex.open(path)


def test_manifest_naming_files_outside_the_index(index_of):
    path = index_of()
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["methods"]["mse"]["rows"] = "../cat.h5"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="names no rows of the 'mse' method"):
        SearchIndex.open(path)
    manifest["files"]["../cat.h5"] = {"bytes": 1, "sha256": ""}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="lists a file outside the index: '../cat.h5'"):
        SearchIndex.open(path)


def test_not_an_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        SearchIndex.open(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="is not a galaxysim search index"):
        SearchIndex.open(tmp_path)


# ---------------------------------------------------------------- the catalogue
def test_changed_catalogue_is_refused_when_reading_neighbours(tmp_path, data, write_h5):
    X, y = data
    src = write_h5(tmp_path / "cat.h5", X, y, compression=None)
    path = build_index(src, "mse", tmp_path / "index", crop=None, image_size=None, verbose=0)
    index = SearchIndex.open(path)
    X2 = X.copy()
    hashed = index.manifest["catalogue"]["sample_rows"][5]
    X2[hashed] = 255 - X2[hashed]  # the file keeps its size
    write_h5(tmp_path / "cat.h5", X2, y, compression=None)
    _, ind = index.kneighbors(X[:1], k=3)  # searching needs only the index
    with pytest.raises(ValueError, match="changed since the search index .* pixels of its images"):
        index.neighbour_images(ind[0])
    y2 = y.copy()
    y2[0] = 3
    write_h5(tmp_path / "cat.h5", X, y2, compression=None)
    with pytest.raises(ValueError, match="labels or identifier columns differ"):
        SearchIndex.open(index.path).neighbour_images([0])
    write_h5(tmp_path / "cat.h5", X[:-1], y[:-1])
    with pytest.raises(ValueError, match="its number or shape of images"):
        SearchIndex.open(index.path).neighbour_images([0])
    (tmp_path / "cat.h5").unlink()
    with pytest.raises(FileNotFoundError, match="catalogue of the search index .* not found"):
        SearchIndex.open(index.path).neighbour_images([0])
    assert index.kneighbors(X[:1], k=3)[1].tolist() == ind.tolist()


# ---------------------------------------------------------------- interrupted builds
def test_failing_block_leaves_no_index_and_rerun_works(tmp_path, index_of, monkeypatch):
    calls = []
    real = build_module._write_rows

    def failing(*args):
        calls.append(args[2])
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real(*args)

    monkeypatch.setattr(build_module, "_write_rows", failing)
    with pytest.raises(OSError, match="disk full"):
        index_of()
    out = tmp_path / "index"
    assert not out.exists() and staging_folders(out) == []
    monkeypatch.setattr(build_module, "_write_rows", real)
    path = index_of()
    assert SearchIndex.open(path, verify=True).methods == ("mse",)
    # a failed rebuild leaves the earlier index as it was
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    calls.clear()
    monkeypatch.setattr(build_module, "_write_rows", failing)
    with pytest.raises(OSError, match="disk full"):
        index_of("mse,maxabs")
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    assert staging_folders(out) == []


def test_corrupt_image_names_the_file_and_leaves_no_index(tmp_path, data):
    X, y = data
    (tmp_path / "cat").mkdir()
    rows = [["file", "label"]]
    for i in range(12):
        Image.fromarray(X[i]).save(tmp_path / "cat" / f"g{i}.png")
        rows.append([f"g{i}.png", int(y[i])])
    with open(tmp_path / "cat" / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    good = (tmp_path / "cat" / "g7.png").read_bytes()
    (tmp_path / "cat" / "g7.png").write_bytes(good[:30])
    out = tmp_path / "index"
    with pytest.raises(ValueError, match=r"g7\.png \(catalogue image 7, in the block"):
        build_index(tmp_path / "cat", "mse", out, image_size=None, block_size=4, verbose=0)
    assert not out.exists() and staging_folders(out) == []
    (tmp_path / "cat" / "g7.png").write_bytes(good)
    build_index(tmp_path / "cat", "mse", out, image_size=None, block_size=4, verbose=0)
    np.testing.assert_array_equal(SearchIndex.open(out).neighbour_images([7]), X[[7]])


# build argv[2] -> argv[3], stalling at the second block; touch argv[4] when stalled
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import galaxysim.index._build as build
    from galaxysim.index import build_index

    src, out, ready = sys.argv[1:4]
    real = build._write_rows
    calls = []

    def stalling(*args):
        calls.append(1)
        if len(calls) == 2:
            Path(ready).touch()
            time.sleep(120)
        return real(*args)

    build._write_rows = stalling
    build_index(src, "mse", out, crop=None, image_size=None, block_size=50, verbose=0)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killed_build_leaves_no_trusted_index(tmp_path, index_of):
    index_of(out="first")  # writes cat.h5
    out, ready = tmp_path / "index", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "cat.h5"), str(out), str(ready)], env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, "the build ended before it stalled"
            assert time.monotonic() < deadline, "the build never stalled"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    (staging,) = staging_folders(out)  # the dead build's, holding half its rows
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        SearchIndex.open(out)
    with pytest.raises(FileNotFoundError, match="is not a galaxysim search index"):
        SearchIndex.open(tmp_path / staging)  # no manifest: never trusted
    index_of()  # the next build removes it and starts again
    assert staging_folders(out) == []
    assert SearchIndex.open(out, verify=True).n_samples == 150


# ---------------------------------------------------------------- arguments
def test_bad_arguments(tmp_path, index_of, models, data):
    with pytest.raises(ValueError, match=r"Unknown or no methods \['pca'\]"):
        index_of("mse,pca")
    with pytest.raises(ValueError, match="'ae' method needs a fitted model: pass models="):
        index_of("ae")
    with pytest.raises(TypeError, match="embeds with an AEEncoder; models\\['ae'\\] is 'VAE"):
        index_of("ae", models={"ae": models["vae"]})
    with pytest.raises(NotFittedError, match="The AEEncoder of the 'ae' method is not fitted"):
        index_of("ae", models={"ae": AEEncoder()})
    with pytest.raises(ValueError, match="models names methods that are not indexed"):
        index_of("mse", models={"ae": models["ae"]})
    with pytest.raises(ValueError, match="pixel rows are searched exactly"):
        index_of("mse", algorithm="hnsw")
    with pytest.raises(ValueError, match="algorithm for 'ae' must be one of"):
        index_of("ae", models={"ae": models["ae"]}, algorithm={"ae": "annoy"})
    with pytest.raises(TypeError, match="approximate_params sets 'metric'"):
        index_of("ae", models={"ae": models["ae"]}, algorithm="ivf",
                 approximate_params={"metric": "mse"})  # fmt: skip
    with pytest.raises(TypeError, match=r"approximate_params: unknown \['nprobes'\]"):
        index_of("ae", models={"ae": models["ae"]}, algorithm="ivf",
                 approximate_params={"nprobes": 3})  # fmt: skip
    with pytest.raises(ValueError, match="approximate_params: The 'nprobe' parameter"):
        index_of("ae", models={"ae": models["ae"]}, algorithm="ivf",
                 approximate_params={"nprobe": 0})  # fmt: skip
    with pytest.raises(TypeError, match="already opened, so \\['crop'\\] cannot"):
        build_index(open_catalogue(tmp_path / "cat.h5", crop=None), "mse", tmp_path / "i", crop=8)
    with pytest.raises(TypeError, match="catalogue must be the path"):
        build_index(data[0], "mse", tmp_path / "i")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="is not a galaxysim search index .*notes.txt"):
        index_of(out="mine")
    assert not list(tmp_path.glob(".i.*")) and not (tmp_path / "i").exists()


def test_model_file_path_and_wrong_queries(tmp_path, index_of, models, data):
    X, _ = data
    save_model(models["ae"], tmp_path / "ae.safetensors", provenance={"trained on": "a sample"})
    index = SearchIndex.open(index_of("ae,mse", models={"ae": tmp_path / "ae.safetensors"}))
    # the model file is copied whole, with its provenance
    saved = (index.path / "models" / "ae.safetensors").read_bytes()
    assert saved == (tmp_path / "ae.safetensors").read_bytes()
    save_model(models["vae"], tmp_path / "vae.safetensors")
    with pytest.raises(ValueError, match="holds a VAEEncoder, not the AEEncoder wanted"):
        index_of("ae", models={"ae": tmp_path / "vae.safetensors"})
    with pytest.raises(ValueError, match="Name the method to search: one of ae, mse"):
        index.kneighbors(X[:1])
    with pytest.raises(ValueError, match="no method 'cnn'; it holds ae, mse"):
        index.kneighbors(X[:1], method="cnn")
    with pytest.raises(ValueError, match="query images are 8x8x3 but .* the index's catalogue"):
        index.kneighbors(X[:1, :8, :8], method="mse")
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.kneighbors(X[:1], method="ae", k=0)
    assert index.kneighbors(X[:1], method="ae", k=2)[1][0, 0] == 0
