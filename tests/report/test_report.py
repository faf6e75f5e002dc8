"""galaxysim.report: escaping by the template engine, package data, atomic writes with
index.html last, UTF-8, and the columns of the data files."""

import configparser
import csv
import importlib.resources
import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.frozen import FrozenEstimator

import galaxysim.report._page as page_module
from galaxysim.datasets import make_galaxies
from galaxysim.model_selection import cross_validate_search
from galaxysim.neighbors import NearestGalaxy
from galaxysim.pipeline import make_search_pipeline
from galaxysim.preprocessing import PixelFlatten
from galaxysim.report import (
    NEIGHBOUR_COLUMNS,
    Report,
    SearchQuery,
    SearchResult,
    format_scores,
    format_table,
    table,
    write_evaluation_report,
    write_search_report,
)
from galaxysim.report._folder import MARKER

REPO = Path(__file__).resolve().parents[2]
NASTY = ["<script>alert(1)</script>", "a & b", 'Édge-on ✓ "quoted"', "d"]
RESULTS_COLUMNS = [
    "method",
    "k",
    "precision_at_k_balanced",
    "precision_at_k_balanced_fold_sd",
    "precision_at_k_mean",
    "map_at_k_balanced",
    "map_at_k_mean",
    "fit_seconds_per_fold",
    "query_seconds_per_fold",
    *(f"precision_at_k[{n}]" for n in NASTY),
    "cnn_accuracy",
    "cnn_balanced_accuracy",
]


@pytest.fixture(scope="module")
def data():
    X, y = make_galaxies(40, image_size=16, classes=[2, 4, 5, 8], random_state=0)
    return X, np.searchsorted([2, 4, 5, 8], y)  # labels 0-3, named by NASTY


def search_results(X, y, methods=("mse",), k=3):
    out = []
    for m in methods:
        pipe = make_search_pipeline(PixelFlatten(), NearestGalaxy(metric=m)).fit(X, y)
        dist, ind = pipe.kneighbors(X[:1], k)
        out.append(SearchResult(m, dist[0], ind[0], [NASTY[v] for v in y[ind[0]]], title=m))
    return out


class CentroidModel(ClassifierMixin, TransformerMixin, BaseEstimator):
    """A stand-in 'CNN' (nearest class centroid) so the report has a classifier, no torch."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        flat = X.reshape(len(X), -1).astype(float)
        self.centroids_ = np.array([flat[y == c].mean(0) for c in self.classes_])
        return self

    def transform(self, X):
        flat = X.reshape(len(X), -1).astype(float)
        return -((flat[:, None, :] - self.centroids_[None]) ** 2).mean(-1)

    def predict(self, X):
        return self.classes_[self.transform(X).argmax(1)]


def cv_results(X, y, k=3):
    def build(X_train, y_train):
        model = CentroidModel().fit(X_train, y_train)
        return make_search_pipeline(FrozenEstimator(model), NearestGalaxy(metric="euclidean"))

    searches = {"mse": make_search_pipeline(PixelFlatten(), NearestGalaxy()), "cnn": build}
    return cross_validate_search(searches, X, y, cv=2, k=k, random_state=0)


def assert_escaped(page):
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &amp; b" in page and "a & b" not in page
    assert "Édge-on ✓ &#34;quoted&#34;" in page  # UTF-8 text, quotes escaped


# ------------------------------------------------------------------ escaping, UTF-8
def test_search_report_escapes_labels_and_facts(tmp_path, data):
    X, _ = data
    res = SearchResult("mse", [0.1, 0.2, 0.3, 0.4], [0, 1, 2, 3], NASTY, title="<em>mse</em>")
    index = write_search_report(
        tmp_path, [res], query_image=X[:1], catalogue_images=X, summary={"query": "<b>q</b>"}
    )
    page = index.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert_escaped(page)
    assert "<th>query</th><td>&lt;b&gt;q&lt;/b&gt;</td>" in page
    assert "<h3>&lt;em&gt;mse&lt;/em&gt;</h3>" in page
    assert 'alt="&lt;em&gt;mse&lt;/em&gt;"' in page
    with open(tmp_path / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(NEIGHBOUR_COLUMNS)
    assert [r["label"] for r in rows] == NASTY  # UTF-8, unescaped in the data file


def test_evaluation_report_escapes_class_names(tmp_path, data):
    X, y = data
    cv = cv_results(X, y)
    index = write_evaluation_report(
        tmp_path,
        cv,
        y=y,
        label_names=NASTY,
        facts={"catalogue": "<i>toy</i>"},
        search_results=search_results(X, y),
        query_image=X[:1],
        catalogue_images=X,
    )
    page = index.read_text(encoding="utf-8")
    assert_escaped(page)
    assert "&lt;i&gt;toy&lt;/i&gt;" in page
    # the per-class table heads each class with its count; the CNN's recall table too
    assert "<th>&lt;script&gt;alert(1)&lt;/script&gt; (10)</th>" in page
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in page
    # the page's own markup is not escaped
    assert "<b>Balanced</b>" in page and "&middot;" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        MARKER,
        "confusion_cnn.png",
        "index.html",
        "montage_mse.png",
        "neighbours.csv",
        "precision_curves.png",
        "precision_per_class.png",
        "results.csv",
        "results.json",
    ]
    with open(tmp_path / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == RESULTS_COLUMNS
    assert [r["method"] for r in rows] == ["mse", "cnn"]
    assert rows[0]["cnn_accuracy"] == "" and 0 <= float(rows[1]["cnn_accuracy"]) <= 1
    res = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert res["classes"] == NASTY and res["catalogue"] == "<i>toy</i>"
    assert res["class_counts"] == dict.fromkeys(NASTY, 10)
    cnn = res["methods"]["cnn"]
    assert cnn["precision_at_k_balanced"] == pytest.approx(cv["cnn"].score)
    assert cnn["precision_at_k_balanced_per_fold"] == pytest.approx(
        cv["cnn"].fold_scores["precision_balanced"].tolist()
    )
    assert cnn["classifier"]["confusion_labels"] == NASTY
    assert np.sum(cnn["classifier"]["confusion_matrix"]) == 40
    assert "classifier" not in res["methods"]["mse"]


FORMULAS = [
    '=HYPERLINK("http://evil.invalid", "click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1",
    "\r=1",
    "\n=1",
    "-",
]


def test_csv_cells_cannot_run_as_formulas(tmp_path, data):
    # OWASP's CSV injection: text cells starting =, +, -, @, tab or a line break get a
    # leading quote; numbers (negative distances, "-1" labels) stay numbers
    X, y = data
    labels = [*FORMULAS, "-1", "Round Smooth"]
    n = len(labels)
    res = SearchResult("=cmd()", -np.arange(n) / 2, np.arange(n) % len(X), labels)
    write_search_report(tmp_path / "s", [res], query_image=X[:1], catalogue_images=X, summary={})
    with open(tmp_path / "s" / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["'" + t for t in FORMULAS] + ["-1", "Round Smooth"]
    assert {r["method"] for r in rows} == {"'=cmd()"}
    assert [float(r["distance"]) for r in rows] == (-np.arange(n) / 2).tolist()

    # the evaluation's results.csv and neighbours.csv: method names and labels
    cv = cv_results(X, y)
    cv["mse"].method = "@mse"
    evil = [FORMULAS[0], "a", "b", "c"]
    write_evaluation_report(
        tmp_path / "e",
        cv,
        y=y,
        label_names=evil,
        search_results=[SearchResult("-mse", [0.5], [3], [FORMULAS[0]])],
        query_image=X[:1],
        catalogue_images=X,
    )
    with open(tmp_path / "e" / "results.csv", newline="", encoding="utf-8") as f:
        results = list(csv.DictReader(f))
    assert results[0]["method"] == "'@mse"
    assert f"precision_at_k[{FORMULAS[0]}]" in results[0]  # not at the start of a cell
    with open(tmp_path / "e" / "neighbours.csv", newline="", encoding="utf-8") as f:
        (row,) = csv.DictReader(f)
    assert (row["method"], row["label"]) == ("'-mse", "'" + FORMULAS[0])


def test_mathtext_like_labels_do_not_break_the_figures(tmp_path, data):
    # a '$...$' label made matplotlib's mathtext parser raise in savefig
    X, y = data
    names = ["$\\frac{1", "a_b^c$", "$x$", "d"]
    res = SearchResult("m$", [0.1, 0.2], [0, 1], names[:2], title="$\\frac{$")
    write_search_report(tmp_path / "s", [res], query_image=X[:1], catalogue_images=X, summary={})
    index = write_evaluation_report(
        tmp_path / "e",
        cv_results(X, y),
        y=y,
        label_names=names,
        search_results=[res],
        query_image=X[:1],
        query_desc="$q",
        catalogue_images=X,
    )
    assert "confusion_cnn.png" in index.read_text(encoding="utf-8")


def test_html_table_cells():
    t = table(["a", "b", "c"], [["<x>", 0.25, float("nan")], ["y", 3, np.float32(1)]])
    assert [c["num"] for c in t["header"]] == [False, False, False]
    assert t["rows"][0] == [
        {"text": "<x>", "num": False},  # escaped when rendered, not here
        {"text": "0.250", "num": True},
        {"text": "\N{EN DASH}", "num": True},
    ]
    assert t["rows"][1][1] == {"text": "3", "num": True}


def test_sections_get_unique_anchors_and_a_nav(tmp_path):
    report = Report(tmp_path, "t")
    for _ in range(3):
        report.add_section("Same & same", "figure.html", caption="", filename="x.png", alt="x")
    page = report.finish({}).read_text(encoding="utf-8")
    ids = re.findall(r'<section id="([^"]+)"', page)
    assert ids == ["same-same", "same-same-2", "same-same-3"]
    assert re.findall(r'<a href="#([^"]+)"', page) == ids
    assert "<h2>Same &amp; same</h2>" in page


def test_method_names_are_safe_file_names(tmp_path, data):
    X, y = data
    (res,) = search_results(X, y)
    res.method = "../evil name"
    write_search_report(tmp_path / "r", [res], query_image=X[:1], catalogue_images=X, summary={})
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        MARKER,
        "index.html",
        "montage_evil_name.png",
        "results.csv",
        "results.json",
    ]
    assert not (tmp_path / "evil name.png").exists()


# ------------------------------------------------------------------ package data
def test_templates_are_package_data():
    templates = importlib.resources.files("galaxysim.report") / "templates"
    names = sorted(p.name for p in templates.iterdir() if p.name.endswith(".html"))
    assert names == [
        *("_macros.html", "figure.html", "neighbours.html", "page.html", "query.html"),
        "scores.html",
    ]
    # every template a module names exists, and setup.cfg ships them
    source = "".join(
        (REPO / "galaxysim" / "report" / f).read_text() for f in ("_page.py", "_sections.py")
    )
    for name in set(re.findall(r'"(\w+\.html)"', source)) - {"index.html"}:
        assert name in names, name
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert "templates/*.html" in cfg["options.package_data"]["galaxysim.report"].split()
    assert "jinja2>=3.1" in cfg["options"]["install_requires"].split()


# ------------------------------------------------------------------ atomic, index last
def record_writes(monkeypatch):
    written = []
    real = page_module.atomic_write

    def recording(path, mode="wb"):
        written.append(Path(path).name)
        return real(path, mode)

    monkeypatch.setattr(page_module, "atomic_write", recording)
    return written


def test_every_file_written_atomically_and_index_last(tmp_path, data, monkeypatch):
    X, y = data
    cv = cv_results(X, y)
    written = record_writes(monkeypatch)
    write_evaluation_report(
        tmp_path,
        cv,
        y=y,
        label_names=NASTY,
        search_results=search_results(X, y),
        query_image=X[:1],
        catalogue_images=X,
    )
    assert written[-1] == "index.html" and written.count("index.html") == 1
    # the marker naming them is written when the report is swapped into place
    assert sorted([*written, MARKER]) == sorted(p.name for p in tmp_path.iterdir())
    marker = json.loads((tmp_path / MARKER).read_text(encoding="utf-8"))
    assert sorted(marker["files"]) == sorted(written)


def test_a_failing_section_leaves_no_index(tmp_path, data, monkeypatch):
    X, y = data
    cv = cv_results(X, y)

    class Broken:
        def reconstruct(self, X):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_evaluation_report(
            tmp_path / "r",
            cv,
            y=y,
            models={"ae": Broken()},
            query_image=X[:1],
            catalogue_images=X,
        )
    # no report folder, and no staging folder left beside it
    assert list(tmp_path.iterdir()) == []


def test_evaluation_report_needs_images_for_pictures(tmp_path, data):
    X, y = data
    with pytest.raises(ValueError, match="need query_image and catalogue_images"):
        write_evaluation_report(tmp_path, cv_results(X, y), y=y, search_results=[object()])
    with pytest.raises(ValueError, match="cv_results is empty"):
        write_evaluation_report(tmp_path, {}, y=y)


# ------------------------------------------------------------------ text tables
def test_format_scores_and_table(data):
    X, y = data
    cv = cv_results(X, y, k=4)
    lines = format_scores(cv, NASTY).splitlines()
    assert lines[0].split() == [
        *("method", "bal", "p@4", "sd", "mean", "p@4", "bal", "mAP@4", "CNN", "bal", "acc"),
        *("fit", "s", "query", "s"),
    ]
    mse, cnn = (line.split() for line in lines[1:])
    assert mse[0] == "mse" and float(mse[1]) == pytest.approx(cv["mse"].score, abs=6e-4)
    assert float(mse[2]) == pytest.approx(cv["mse"].score_sd, abs=6e-4)
    assert mse[5] == "-" and cnn[5] != "-"
    assert float(cnn[5]) == pytest.approx(cv["cnn"].mean("balanced_accuracy"), abs=6e-4)
    (res,) = search_results(X, y)
    text = format_table(res).splitlines()
    assert text[0] == "mse" and text[1].split() == ["rank", "index", "label", "distance"]
    assert len(text) == 2 + 3


# ------------------------------------------------------------------ identifiers, queries
def _traced(query, files=("=evil.png", "b.png", "c.png"), k=3):
    return SearchResult(
        "mse",
        np.arange(k) / 4,
        np.arange(k),
        ["a", "b", "c"][:k],
        title=f"mse for {query}",
        identifiers={"file": list(files)[:k], "ra": [10.123456789, np.nan, 12.0][:k]},
        query=query,
    )


def test_neighbours_carry_identifiers_in_every_output(tmp_path, data):
    X, _ = data
    res = _traced("q")
    index = write_search_report(
        tmp_path, [res], queries=[SearchQuery("q", X[:1], "a query")], catalogue_images=X,
        summary={},
    )  # fmt: skip
    with open(tmp_path / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(NEIGHBOUR_COLUMNS)  # one query: no query column
    assert [r["file"] for r in rows] == ["'=evil.png", "b.png", "c.png"]  # neutralised
    assert [r["ra"] for r in rows] == ["10.123456789", "", "12.0"]  # every digit; NaN empty
    assert {r["dec"] for r in rows} == {r["redshift"] for r in rows} == {""}  # lacked
    doc = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    (q,) = doc["queries"]
    assert q["name"] == "q" and q["description"] == "a query"
    first = q["results"][0]["neighbours"][0]
    assert first == {
        "rank": 1, "index": 0, "file": "=evil.png", "ra": 10.123456789, "dec": None,
        "redshift": None, "label": "a", "distance": 0.0,
    }  # fmt: skip
    assert q["results"][0]["neighbours"][1]["ra"] is None  # NaN
    page = index.read_text(encoding="utf-8")
    assert "<th>file</th><th>ra</th><th>label</th>" in page
    assert "<td>=evil.png</td>" in page and "10.123457" in page
    text = format_table(res).splitlines()
    assert text[1].split() == ["rank", "index", "file", "ra", "label", "distance"]
    assert text[3].split()[2:4] == ["b.png", "-"]


def test_several_queries_get_a_section_each_and_a_query_column(tmp_path, data):
    X, _ = data
    queries = [
        SearchQuery("index:3", X[3:4], "catalogue galaxy 3", note="galaxy 3 is left out"),
        SearchQuery("g.png", X[5:6], "g.png"),
    ]
    results = [_traced("index:3"), _traced("g.png", k=2)]
    index = write_search_report(
        tmp_path, results, queries=queries, catalogue_images=X, summary={"n": 2}
    )
    page = index.read_text(encoding="utf-8")
    assert re.findall(r"<h2>([^<]+)</h2>", page) == [
        "Query 1: catalogue galaxy 3",
        "Query 2: g.png",
    ]
    assert "galaxy 3 is left out" in page
    assert 'src="montage_1_mse.png"' in page and 'src="montage_2_mse.png"' in page
    with open(tmp_path / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [*NEIGHBOUR_COLUMNS, "query"]  # the nine first, in place
    assert [r["query"] for r in rows] == ["index:3"] * 3 + ["g.png"] * 2
    doc = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert [len(q["results"][0]["neighbours"]) for q in doc["queries"]] == [3, 2]
    assert doc["queries"][0]["note"] == "galaxy 3 is left out"


def test_matched_query_shows_before_after_and_what_was_estimated(tmp_path, data):
    from PIL import Image

    X, _ = data
    dark, bright = np.zeros_like(X[:1]), np.full_like(X[:1], 255)
    queries = [
        SearchQuery("index:3", X[3:4], "catalogue galaxy 3"),
        SearchQuery(
            "milkyway",
            bright,
            "Milky Way model, matched to the catalogue",
            unmatched=dark,
            matching="sky 0.035, noise 0.02 & more",
        ),
    ]
    results = [_traced("index:3"), _traced("milkyway")]
    index = write_search_report(
        tmp_path, results, queries=queries, catalogue_images=X, summary={"n": 2}
    )
    page = index.read_text(encoding="utf-8")
    first, second = page.split("<h2>Query 2")
    assert "Matched to the catalogue" not in first and "_matched.png" not in first
    assert "Matched to the catalogue: sky 0.035, noise 0.02 &amp; more." in second
    assert "before and after matching" in second
    assert 'src="query_2_matched.png"' in second
    assert not (tmp_path / "query_1_matched.png").exists()
    # the figure shows the unmatched query on the left, the matched one on the right
    fig = np.asarray(Image.open(tmp_path / "query_2_matched.png").convert("L"), float)
    h, w = fig.shape
    band = fig[h // 3 : 2 * h // 3]
    assert band[:, : w // 2].mean() < 100 < 200 < band[:, w // 2 :].mean()
    doc = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert [q["matching"] for q in doc["queries"]] == ["", "sky 0.035, noise 0.02 & more"]


def test_search_report_checks_its_queries(tmp_path, data):
    X, _ = data
    q = SearchQuery("a", X[:1])
    with pytest.raises(ValueError, match="either query_image"):
        write_search_report(tmp_path, [], catalogue_images=X, summary={})
    with pytest.raises(ValueError, match=r"unknown queries \['b'\]"):
        write_search_report(tmp_path, [_traced("b")], queries=[q], catalogue_images=X, summary={})
    with pytest.raises(ValueError, match="must differ"):
        write_search_report(tmp_path, [], queries=[q, q], catalogue_images=X, summary={})
    with pytest.raises(ValueError, match=r"Unknown identifiers \['objid'\]"):
        SearchResult("m", [0.0], [1], ["a"], identifiers={"objid": [5]})
    with pytest.raises(ValueError, match="file has 2 values for 1 neighbours"):
        SearchResult("m", [0.0], [1], ["a"], identifiers={"file": ["a", "b"]})
