"""`galaxysim index` and `galaxysim search --index`: the same results as a search of the
catalogue, on the local scheduler, --workers and --scheduler; no trusted index after
Ctrl-C or a failure; one-line errors."""

import json
import logging
import re

import h5py
import numpy as np
import pytest
from PIL import Image

from galaxysim.cli import main
from galaxysim.datasets import make_galaxies
from galaxysim.index import SearchIndex
from galaxysim.report import SearchResult, write_search_report

N, SIZE = 48, 16
FRAME = ["--crop", "none", "--image-size", str(SIZE)]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(code, err, command, match):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"galaxysim {command}: error: "), lines[0]
    assert re.search(match, lines[0]), lines[0]


@pytest.fixture(scope="module")
def images():
    return make_galaxies(N, image_size=SIZE, random_state=3)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, images):
    """A Galaxy10 DECaLS-layout file: ra, dec, redshift (one NaN), labels."""
    X, y = images
    path = tmp_path_factory.mktemp("cat") / "g10.h5"
    redshift = np.linspace(0.01, 0.2, N)
    redshift[4] = np.nan
    with h5py.File(path, "w") as f:
        f["images"], f["ans"] = X, y
        f["ra"], f["dec"] = np.linspace(150, 151, N), np.linspace(2, 3, N)
        f["redshift"] = redshift
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, catalogue):
    """An ae model trained by `galaxysim train` on the catalogue (one epoch)."""
    path = tmp_path_factory.mktemp("models")
    code = main(["train", "-q", "--catalog", str(catalogue), *FRAME, "--method", "ae",
                 "--epochs", "1", "--model-dir", str(path)])  # fmt: skip
    assert code == 0
    return path


@pytest.fixture(scope="module")
def index(tmp_path_factory, catalogue, model_dir):
    out = tmp_path_factory.mktemp("idx") / "index"
    code = main(["index", "-q", "--catalog", str(catalogue), *FRAME, "--method", "mse,ae",
                 "--model-dir", str(model_dir), "--block-size", "20", "--out", str(out)])  # fmt: skip
    assert code == 0
    return out


def results_of(report):
    doc = json.loads((report / "results.json").read_text())
    neighbours = [(q["name"], r["method"], r["neighbours"]) for q in doc["queries"]
                  for r in q["results"]]  # fmt: skip
    return (report / "results.csv").read_text(), neighbours


@pytest.mark.parametrize(
    "options",
    [
        ["--query", "index:7", "--query", "radec:150.510638,2.510638", "-k", "5"],
        ["--query", "milkyway", "--per-class", "-k", "2"],
        ["--query", "index:3", "--within", "Round Smooth", "-k", "3"],
    ],
)
def test_search_index_equals_search_catalogue(
    capsys, tmp_path, catalogue, model_dir, index, options
):
    methods = ["--method", "mse,ae"]
    code, by_index, err = run(capsys, "search", "-q", "--index", str(index), *options,
                              "--out", str(tmp_path / "i"))  # fmt: skip
    assert code == 0, err
    code, by_catalogue, err = run(capsys, "search", "-q", "--catalog", str(catalogue), *FRAME,
                                  *methods, "--model-dir", str(model_dir), *options,
                                  "--out", str(tmp_path / "c"))  # fmt: skip
    assert code == 0, err
    assert results_of(tmp_path / "i") == results_of(tmp_path / "c")
    timings = re.compile(r" \(\d+\.\d\d s\)")  # each table's title ends with its time
    assert timings.sub("", by_index).replace("i/index", "c/index") == timings.sub(
        "", by_catalogue
    ).replace("i/index", "c/index")
    assert sorted(p.name for p in (tmp_path / "i").glob("montage_*.png")) == sorted(
        p.name for p in (tmp_path / "c").glob("montage_*.png")
    )


def test_search_index_image_query_and_method_choice(capsys, tmp_path, images, index):
    X, _ = images
    Image.fromarray(X[11]).save(tmp_path / "q.png")
    code, out, err = run(capsys, "search", "-q", "--index", str(index), "--query",
                         str(tmp_path / "q.png"), "--method", "mse", "-k", "1")  # fmt: skip
    assert code == 0, err
    assert "mse: top 1" in out and "ae:" not in out
    assert re.search(r"^\s+1\s+11\s", out, re.M)  # the image itself, at distance 0
    code, _, err = run(capsys, "search", "-q", "--index", str(index), "--method", "maxabs,cnn")
    assert_error(code, err, "search", r"has no method maxabs, cnn; it holds mse, ae")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (["--catalog", "x.h5"], r"leave out --catalog"),
        (["--image-size", "32"], r"holds 16x16 images; leave out --image-size 32"),
        (["--crop", "12"], r"was built with --crop none; give that --crop"),
        (["--query", "index:999"], r"index:999: the catalogue has 48 galaxies"),
    ],
)
def test_search_index_errors(capsys, index, options, match):
    code, _, err = run(capsys, "search", "-q", "--index", str(index), *options)
    assert_error(code, err, "search", match)


def test_index_errors(capsys, tmp_path, catalogue):
    code, _, err = run(capsys, "index", "--method", "mse", "--out", str(tmp_path / "i"))
    assert_error(code, err, "index", r"index needs --catalog")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("x")
    code, _, err = run(capsys, "index", "--catalog", str(catalogue), *FRAME,
                       "--out", str(tmp_path / "notes"))  # fmt: skip
    assert_error(code, err, "index", r"--out: .* is not a galaxysim search index")
    code, _, err = run(capsys, "search", "--index", str(tmp_path / "notes"))
    assert_error(
        code, err, "search", r"is not a galaxysim search index \(it has no manifest\.json\)"
    )


def test_workers_build_equals_local_build(capsys, tmp_path, catalogue):
    kw = ["-q", "--catalog", str(catalogue), *FRAME, "--method", "mse", "--block-size", "10"]
    assert main(["index", *kw, "--out", str(tmp_path / "local")]) == 0
    assert main(["index", *kw, "--workers", "2", "--out", str(tmp_path / "w")]) == 0
    local, workers = (SearchIndex.open(tmp_path / p, verify=True) for p in ("local", "w"))
    np.testing.assert_array_equal(local.embeddings("mse"), workers.embeddings("mse"))


def test_scheduler_address(capsys, tmp_path, catalogue):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster:  # fmt: skip
        code, out, err = run(capsys, "index", "-q", "--catalog", str(catalogue), *FRAME,
                             "--method", "maxabs", "--block-size", "16",
                             "--scheduler", cluster.scheduler_address,
                             "--out", str(tmp_path / "i"))  # fmt: skip
    assert code == 0, err
    assert "search index of 48 images (maxabs)" in out
    assert SearchIndex.open(tmp_path / "i").methods == ("maxabs",)


def test_interrupted_build_leaves_earlier_index_and_no_new_one(
    capsys, monkeypatch, tmp_path, catalogue
):
    import galaxysim.index._build as build

    kw = ["index", "-q", "--catalog", str(catalogue), *FRAME, "--block-size", "16"]
    assert main([*kw, "--method", "mse", "--out", str(tmp_path / "old")]) == 0
    capsys.readouterr()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "describe_files", interrupt)  # after every block is written
    code, _, err = run(capsys, *kw, "--method", "maxabs", "--out", str(tmp_path / "new"))
    assert code == 130 and "interrupted" in err
    assert not (tmp_path / "new").exists()
    code, _, err = run(capsys, *kw, "--method", "maxabs", "--out", str(tmp_path / "old"))
    assert code == 130
    monkeypatch.undo()
    assert SearchIndex.open(tmp_path / "old", verify=True).methods == ("mse",)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    code, _, err = run(capsys, "search", "-q", "--index", str(tmp_path / "new"))
    assert_error(code, err, "search", r"--index .*new is not a folder")


def test_corrupt_image_fails_with_its_name_and_leaves_no_index(capsys, tmp_path, images):
    X, y = images
    folder = tmp_path / "cat"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(X[i]).save(folder / f"g{i}.png")
    (folder / "g5.png").write_bytes(b"\x89PNG truncated")
    code, _, err = run(capsys, "index", "-q", "--catalog", str(folder), "--method", "mse",
                       "--image-size", str(SIZE), "--block-size", "4",
                       "--out", str(tmp_path / "i"))  # fmt: skip
    assert_error(code, err, "index", r"g5\.png")
    assert not (tmp_path / "i").exists()


def test_report_takes_only_the_neighbours_images(tmp_path):
    images = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)
    res = SearchResult("mse", [0.0, 1.0], [3, 1], ["a", "b"])
    whole = write_search_report(tmp_path / "w", [res], query_image=images[:1],
                                catalogue_images=images, summary={})  # fmt: skip
    only = write_search_report(tmp_path / "o", [res], query_image=images[:1],
                               catalogue_images={3: images[3], 1: images[1]}, summary={})  # fmt: skip
    for name in ("montage_mse.png", "results.csv"):
        assert (whole.parent / name).read_bytes() == (only.parent / name).read_bytes()
    with pytest.raises(ValueError, match=r"no image of the neighbours \[1\]"):
        write_search_report(tmp_path / "x", [res], query_image=images[:1],
                            catalogue_images={3: images[3]}, summary={})  # fmt: skip
