"""`galaxysim search` results a user can trace: identifiers in every output, queries by
catalogue member, several queries, and the bad cases of labels and missing files."""

import csv
import json
import re

import h5py
import numpy as np
import pytest
from PIL import Image

from galaxysim.cli import main
from galaxysim.cli._catalogue import separation_arcsec
from galaxysim.datasets import make_galaxies
from galaxysim.neighbors import NearestGalaxy
from galaxysim.report import NEIGHBOUR_COLUMNS
from tests.cli.test_cli_search import assert_one_line_error, table_rows

N, SIZE = 40, 16
RA0, DEC0 = 150.0, 2.0


def run(capsys, *args):
    code = main(["search", "-q", "--method", "mse", *args])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def images():
    return make_galaxies(N, image_size=SIZE, random_state=1)


@pytest.fixture
def folder(tmp_path, images):
    """N PNGs under a/ and b/ (b/g3.png repeats a name of a/), with labels.csv."""
    X, y = images
    root = tmp_path / "cat"
    rows = ["file,morphology"]
    for i, img in enumerate(X):
        name = f"{'ab'[i % 2]}/g{i // 2}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / name)
        rows.append(f"{name},{y[i]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _positions():
    rng = np.random.default_rng(0)
    ra = RA0 + rng.uniform(-0.5, 0.5, N)
    dec = DEC0 + rng.uniform(-0.5, 0.5, N)
    return ra, dec


@pytest.fixture
def decals(tmp_path, images):
    """A Galaxy10 DECaLS-layout file (ra, dec, redshift with a NaN) of the same images."""
    X, y = images
    path = tmp_path / "g10.h5"
    ra, dec = _positions()
    redshift = np.linspace(0.01, 0.2, N)
    redshift[5] = np.nan
    with h5py.File(path, "w") as f:
        f["images"], f["ans"] = X, y
        f["ra"], f["dec"], f["redshift"], f["pxscale"] = ra, dec, redshift, np.full(N, 0.262)
    return path


def by_hand(X, y, query, k, exclude=None):
    search = NearestGalaxy(n_neighbors=min(k + 1, len(X))).fit(X.reshape(len(X), -1), y)
    dist, ind = search.kneighbors(query.reshape(len(query), -1))
    keep = ind[0] != exclude
    return dist[0][keep][:k], ind[0][keep][:k]


# ------------------------------------------------------------------ identifiers
def test_folder_neighbours_carry_their_files(capsys, folder, images, tmp_path):
    X, y = images
    out_dir = tmp_path / "r"
    code, out, err = run(
        capsys, "--catalog", str(folder), "--image-size", str(SIZE), "-k", "4",
        "--query", "file:a/g2.png", "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    ((title, printed),) = table_rows(out).items()
    assert "galaxy 4 itself left out" in title
    rows = read_csv(out_dir / "results.csv")
    assert list(rows[0]) == list(NEIGHBOUR_COLUMNS)
    files = [f"{'ab'[i % 2]}/g{i // 2}.png" for i in range(N)]
    _, ind = by_hand(X, y, X[4:5], 4, exclude=4)
    assert [int(r["index"]) for r in rows] == ind.tolist()
    assert [r["file"] for r in rows] == [files[i] for i in ind]  # relative to the folder
    assert [p["file"] for p in printed] == [files[i] for i in ind]
    assert {r["ra"] + r["dec"] + r["redshift"] for r in rows} == {""}  # a folder has none
    assert [r["label"] for r in rows] == [str(y[i]) for i in ind]
    doc = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    (query,) = doc["queries"]
    assert query["name"] == "file:a/g2.png"
    assert query["description"].startswith("catalogue galaxy 4 (a/g2.png")
    assert [n["file"] for n in query["results"][0]["neighbours"]] == [files[i] for i in ind]
    page = (out_dir / "index.html").read_text(encoding="utf-8")
    assert f"<td>{files[ind[0]]}</td>" in page
    assert "Galaxy 4 is the query itself: it is left out of its neighbours." in page


def test_galaxy10_neighbours_carry_ra_dec_redshift(capsys, decals, images, tmp_path):
    X, y = images
    out_dir = tmp_path / "r"
    args = ["--catalog", str(decals), "--crop", "none", "--image-size", str(SIZE)]
    code, out, err = run(
        capsys, *args, "-k", str(N - 1), "--query", "index:0", "--out", str(out_dir)
    )
    assert code == 0, err
    ra, dec = _positions()
    rows = read_csv(out_dir / "results.csv")
    assert len(rows) == N - 1 and "0" not in [r["index"] for r in rows]
    for r in rows:
        i = int(r["index"])
        assert float(r["ra"]) == ra[i] and float(r["dec"]) == dec[i]  # every digit
        assert r["file"] == ""
        assert (r["redshift"] == "") == (i == 5)  # NaN: an empty cell
    (printed,) = table_rows(out).values()
    assert [p["index"] for p in printed] == [int(r["index"]) for r in rows]
    assert {tuple(p) for p in printed} == {
        ("rank", "index", "ra", "dec", "redshift", "label", "distance")
    }
    assert float(printed[0]["ra"]) == pytest.approx(ra[printed[0]["index"]], abs=1e-6)


def test_sdss_layout_leaves_the_position_columns_empty(capsys, tmp_path, images):
    X, y = images
    path = tmp_path / "sdss.h5"
    with h5py.File(path, "w") as f:
        f["images"], f["ans"] = X, y
    out_dir = tmp_path / "r"
    code, out, err = run(
        capsys, "--catalog", str(path), "--crop", "none", "--image-size", str(SIZE), "-k", "2",
        "--out", str(out_dir),
    )  # fmt: skip
    assert code == 0, err
    rows = read_csv(out_dir / "results.csv")
    assert list(rows[0]) == list(NEIGHBOUR_COLUMNS)
    assert {r["file"] + r["ra"] + r["dec"] + r["redshift"] for r in rows} == {""}
    code, _, err = run(capsys, "--catalog", str(path), "--crop", "none", "--image-size", str(SIZE),
                       "--query", "radec:150,2")  # fmt: skip
    assert_one_line_error(code, err, r"radec:150,2: this catalogue .* has no ra/dec columns")


# ------------------------------------------------------------------ members as queries
def test_index_query_is_its_catalogue_image_left_out(capsys, images):
    X, y = make_galaxies(200, image_size=64, random_state=0)  # the built-in catalogue
    code, out, err = main(["search", "-q", "--n-catalog", "200", "--method", "mse,maxabs",
                           "-k", "5", "--query", "index:17"]), *capsys.readouterr()  # fmt: skip
    assert code == 0, err
    found = table_rows(out)
    assert len(found) == 2
    mse = next(rows for title, rows in found.items() if title.startswith("mse"))
    dist, ind = by_hand(X, y, X[17:18], 5, exclude=17)
    assert [r["index"] for r in mse] == ind.tolist()
    np.testing.assert_allclose([r["distance"] for r in mse], dist, rtol=1e-5)
    for rows in found.values():
        assert 17 not in [r["index"] for r in rows] and len(rows) == 5


@pytest.mark.parametrize(
    "spec, match",
    [
        ("index:40", r"--query index:40: the catalogue has 40 galaxies \(index 0 to 39\)"),
        ("index:x", r"--query 'index:x': expected index:N"),
        ("file:g3.png", r"file:g3\.png is ambiguous: 2 catalogue files .*a/g3\.png, b/g3\.png"),
        ("file:a/g33.png", r"no such file in the catalogue; close matches: a/g3\.png"),
        ("file:zzz", r"file:zzz: no such file in the catalogue; its files are named like a/g0"),
        ("radec:1,2", r"radec:1,2: this catalogue .* has no ra/dec columns .*index:N or file"),
        ("radec:400,2", r"RA must be in 0-360 and DEC in -90-90 degrees; got RA 400"),
    ],
)
def test_member_query_errors(capsys, folder, spec, match):
    code, out, err = run(
        capsys, "--catalog", str(folder), "--image-size", str(SIZE), "--query", spec
    )
    assert_one_line_error(code, err, match)
    assert out == ""


def test_file_query_by_name_when_unique_and_builtin_has_no_files(capsys, folder):
    (folder / "b" / "g19.png").rename(folder / "b" / "solo.png")
    csv_text = (folder / "labels.csv").read_text().replace("b/g19.png", "b/solo.png")
    (folder / "labels.csv").write_text(csv_text)
    code, out, err = run(capsys, "--catalog", str(folder), "--image-size", str(SIZE), "-k", "2",
                         "--query", "file:solo.png")  # fmt: skip
    assert code == 0, err
    assert "galaxy 39 itself left out" in out  # b/solo.png
    code, _, err = run(capsys, "--n-catalog", "20", "--query", "file:g1.png")
    assert_one_line_error(code, err, r"has no file names; file: queries name an image of a fo")


def test_radec_query_finds_the_nearest_within_the_tolerance(capsys, decals):
    ra, dec = _positions()
    args = ["--catalog", str(decals), "--crop", "none", "--image-size", str(SIZE), "-k", "3"]
    target = 11
    near = f"radec:{ra[target] + 1 / 3600:.7f},{dec[target]:.7f}"  # about 1 arcsec away
    code, out, err = run(capsys, *args, "--query", near)
    assert code == 0, err
    assert f"galaxy {target} itself left out" in out
    code, _, err = run(capsys, *args, "--query", near, "--radec-tol", "0.5")
    sep = separation_arcsec(ra[target] + 1 / 3600, dec[target], ra[target], dec[target])
    assert_one_line_error(
        code,
        err,
        rf"no catalogue galaxy within --radec-tol 0\.5 arcsec; the nearest is index {target} "
        rf"\(ra {ra[target]:.6f}, dec {dec[target]:.6f}\) at {sep:.2f} arcsec\. .*--radec-tol",
    )
    code, _, err = run(capsys, *args, "--query", "radec:10,-30")
    assert_one_line_error(code, err, r"the nearest is index \d+ .* at \d+\.\d+ degrees")


def test_member_queries_are_checked_before_the_catalogue_is_read(capsys, monkeypatch):
    import galaxysim.datasets

    monkeypatch.setattr(galaxysim.datasets, "make_galaxies", lambda *a, **k: 1 / 0)
    for spec, match in [("index:-1", "expected index:N"), ("radec:1", "expected radec:RA,DEC"),
                        ("file:", "expected file:NAME")]:  # fmt: skip
        code, _, err = run(capsys, "--query", spec)
        assert_one_line_error(code, err, match)
    code, _, err = run(capsys, "--query", "index:1", "--radec-tol", "0")
    assert_one_line_error(code, err, r"--radec-tol must be a positive number \(arcsec\); got 0")


def test_separation_is_great_circle():
    assert separation_arcsec(0, 90, 180, 90) == pytest.approx(0, abs=1e-6)  # the pole
    assert separation_arcsec(10, 60, 11, 60) == pytest.approx(1800, rel=1e-4)  # cos(dec)
    assert separation_arcsec(0, 0, 180, 0) == pytest.approx(180 * 3600)


# ------------------------------------------------------------------ several queries
def test_several_queries_one_section_each(capsys, tmp_path, images):
    X, _ = make_galaxies(120, image_size=64, random_state=0)
    qdir = tmp_path / "queries"
    qdir.mkdir()
    for i in (7, 8):
        Image.fromarray(X[i]).save(qdir / f"q{i}.png")
    out_dir = tmp_path / "r"
    code = main(["search", "-q", "--n-catalog", "120", "--method", "mse,maxabs", "-k", "3",
                 "--query", "index:5", "--query", str(qdir), "--out", str(out_dir)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    names = ["index:5", str(qdir / "q7.png"), str(qdir / "q8.png")]
    found = table_rows(out)
    assert len(found) == 6 and all(any(n in t for t in found) for n in names)
    rows = read_csv(out_dir / "results.csv")
    assert list(rows[0]) == [*NEIGHBOUR_COLUMNS, "query"]
    assert [r["query"] for r in rows if r["method"] == "mse"] == [n for n in names for _ in "123"]
    firsts = {r["query"]: int(r["index"]) for r in rows if r["rank"] == "1"}
    assert firsts[names[1]] == 7 and firsts[names[2]] == 8  # the files find themselves
    assert firsts["index:5"] != 5  # a member does not
    page = (out_dir / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<h2>Query (\d):", page) == ["1", "2", "3"]
    assert page.count("<h3>") == 6
    assert sorted(p.name for p in out_dir.glob("*.png")) == sorted(
        f"montage_{n}_{m}.png" for n in (1, 2, 3) for m in ("mse", "maxabs")
    )
    doc = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    assert [q["name"] for q in doc["queries"]] == names
    code, _, err = run(capsys, "--n-catalog", "20", "--query", "index:1", "--query", "index:1")
    assert_one_line_error(code, err, r"--query index:1 is given more than once")


# ------------------------------------------------------------------ --per-class, --within
def test_per_class_honours_k_and_within(capsys):
    X, y = make_galaxies(200, image_size=64, random_state=0)
    code, out, err = main(["search", "-q", "--n-catalog", "200", "--method", "mse",
                           "--per-class", "-k", "3"]), *capsys.readouterr()  # fmt: skip
    assert code == 0, err
    ((title, rows),) = table_rows(out).items()
    assert "closest 3 of each class" in title
    assert len(rows) == 30 and [r["rank"] for r in rows] == [1, 2, 3] * 10
    by_class = [rows[j : j + 3] for j in range(0, 30, 3)]
    assert len({b[0]["label"] for b in by_class}) == 10
    assert [b[0]["distance"] for b in by_class] == sorted(b[0]["distance"] for b in by_class)
    for b in by_class:
        assert len({r["label"] for r in b}) == 1
        assert [r["distance"] for r in b] == sorted(r["distance"] for r in b)
    code, out, err = main(["search", "-q", "--n-catalog", "200", "--method", "mse", "--per-class",
                           "-k", "2", "--within", "Barred Spiral"]), *capsys.readouterr()  # fmt: skip
    assert code == 0, err
    ((title, rows),) = table_rows(out).items()
    assert "within Barred Spiral" in title
    assert [(r["rank"], r["label"]) for r in rows] == [(1, "Barred Spiral"), (2, "Barred Spiral")]


# ------------------------------------------------------------------ labels that are not labels
def _objid_folder(tmp_path, n=30, extra=False):
    X, y = make_galaxies(n, image_size=SIZE, random_state=0)
    rows = ["file,sdss_objid" + (",morph" if extra else "")]
    for i, img in enumerate(X):
        Image.fromarray(img).save(tmp_path / f"g{i}.png")
        rows.append(f"g{i}.png,{588848901527896238 + 1000 * i}" + (f",{y[i]}" if extra else ""))
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return ["--catalog", str(tmp_path), "--image-size", str(SIZE)]


def test_identifier_only_csv_searches_unlabelled(capsys, tmp_path):
    # `file,sdss_objid`: it built ~5.9e17 label names and was killed for memory
    args = _objid_folder(tmp_path)
    code, out, err = run(capsys, *args, "-k", "3")
    assert code == 0, err
    assert re.fullmatch(
        r"galaxysim search: warning: Column 'sdss_objid' .* 30 distinct values in 30 rows .*"
        r"an identifier, not labels\. Loading the images without labels; .*--label-column NAME"
        r"[^\n]*\n",
        err,
    ), err
    assert "label_column" not in err
    (rows,) = table_rows(out).values()
    assert {r["label"] for r in rows} == {"-"}
    code, _, err = run(capsys, *args, "--method", "cnn")
    assert code == 2 and "galaxysim search: error: the cnn method needs labels, and " in err
    code, _, err = run(capsys, *args, "--per-class")
    assert code == 2 and "--per-class and --within need labels" in err


def test_label_column_naming_an_identifier_is_a_clear_error(capsys, tmp_path):
    args = _objid_folder(tmp_path, extra=True)
    code, _, err = run(capsys, *args, "--label-column", "sdss_objid")
    assert_one_line_error(
        code,
        err,
        r"galaxysim search: error: Column 'sdss_objid' .* an identifier, not labels\. Pass "
        r"--label-column NAME naming a column of classes \(other columns: \['morph'\]\), or "
        r"--labels-csv none",
    )
    code, _, err = run(capsys, *args, "--label-column", "morph", "-k", "2")
    assert code == 0, err


def test_galaxy10_file_without_ans_searches_unlabelled(capsys, tmp_path, images):
    X, _ = images
    path = tmp_path / "noans.h5"
    with h5py.File(path, "w") as f:
        f["images"] = X
    args = ["--catalog", str(path), "--crop", "none", "--image-size", str(SIZE)]
    code, out, err = run(capsys, *args, "-k", "2")
    assert code == 0, err
    assert {r["label"] for r in next(iter(table_rows(out).values()))} == {"-"}
    code, _, err = run(capsys, *args, "--method", "cnn")
    assert_one_line_error(code, err, r"the cnn method needs labels, and .*noans\.h5 has no 'ans'")
    code = main(["evaluate", "-q", *args, "--method", "mse"])
    assert_one_line_error(code, capsys.readouterr().err, r"evaluate: error: evaluate needs labels")


# ------------------------------------------------------------------ files, errors, advice
def test_file_named_in_the_csv_but_missing_is_skippable(capsys, folder):
    with open(folder / "labels.csv", "a") as f:
        f.write("a/gone.png,0\n")
    args = ["--catalog", str(folder), "--image-size", str(SIZE), "-k", "2"]
    code, _, err = run(capsys, *args)
    assert_one_line_error(
        code, err, r"1 of the 41 files .* do not exist.*gone\.png.*--on-error skip"
    )
    code, out, err = run(capsys, *args, "--on-error", "skip")
    assert code == 0, err
    assert re.fullmatch(
        r"galaxysim search: warning: Skipped 1 of 41 files[^\n]*gone\.png[^\n]*\n", err
    )


def test_library_advice_names_options(capsys, folder, tmp_path):
    # a CSV naming images outside its folder, and one in latin-1
    outside = tmp_path / "other"
    outside.mkdir()
    (outside / "labels.csv").write_text("file,label\n../cat/a/g0.png,0\n../cat/a/g1.png,1\n")
    args = ["--image-size", str(SIZE), "-k", "1"]
    code, _, err = run(capsys, "--catalog", str(outside), *args)
    assert_one_line_error(code, err, r"if you trust these paths, pass --allow-outside\.$")
    code, _, err = run(capsys, "--catalog", str(outside), *args, "--allow-outside")
    assert code == 0, err
    (folder / "labels.csv").write_bytes(
        (folder / "labels.csv").read_bytes().replace(b"morphology", b"morphologie \xe9")
    )
    code, _, err = run(capsys, "--catalog", str(folder), *args)
    assert_one_line_error(code, err, r"for example --encoding latin-1 ")
    code, _, err = run(capsys, "--catalog", str(folder), *args, "--encoding", "latin-1")
    assert code == 0, err


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--n-catalog", "10", "--within", "nope"],
        ["train", "--n-catalog", "10", "--model-dir", "/proc/x/y"],
        ["generate", "--n-catalog", "10", "--out", "x.txt"],
        ["evaluate", "--n-catalog", "10", "--folds", "1"],
    ],
)
def test_every_error_line_has_one_prefix(capsys, argv):
    code = main([*argv, "-q"])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, rf"^galaxysim {argv[0]}: error: ")


def test_evaluate_query_by_member_is_left_out_and_traced(capsys, tmp_path, folder):
    out_dir = tmp_path / "e"
    code = main(["evaluate", "-q", "--catalog", str(folder), "--image-size", str(SIZE),
                 "--method", "mse", "--folds", "2", "-k", "3", "--query", "index:3",
                 "--out", str(out_dir)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = read_csv(out_dir / "neighbours.csv")
    assert list(rows[0]) == list(NEIGHBOUR_COLUMNS)
    assert len(rows) == 3 and "3" not in {r["index"] for r in rows}
    assert all(
        r["file"] == f"{'ab'[int(r['index']) % 2]}/g{int(r['index']) // 2}.png" for r in rows
    )
    assert "itself left out" in (out_dir / "index.html").read_text(encoding="utf-8")
