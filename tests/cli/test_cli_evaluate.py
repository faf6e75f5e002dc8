"""`galaxysim evaluate`: cross-validated table, report files, fold hygiene, user errors."""

import csv
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from sklearn.model_selection import StratifiedKFold

import galaxysim.cli._main as cli_main
from galaxysim import GALAXY10_CLASSES
from galaxysim.cli import main
from galaxysim.datasets import make_galaxies
from galaxysim.metrics import mean_average_precision, precision_at_k
from galaxysim.neighbors import NearestGalaxy

N = 120
PIXEL_ARGS = ["--n-catalog", str(N), "--folds", "2", "--method", "mse,maxabs", "-q"]
DEEP_ARGS = [
    "--n-catalog",
    "80",
    "--folds",
    "2",
    "--k",
    "5",
    "--image-size",
    "32",
    "--epochs",
    "1",
    "--method",
    "cnn,ae,vae",
    "-q",
]
HEADER = ["method", "bal", "p@10", "sd", "mean", "p@10", "bal", "mAP@10", "CNN", "bal", "acc"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("src", "href"):
            if attrs.get(key):
                self.refs.append(attrs[key])


def table_rows(out):
    """{method: [bal p@k, sd, mean p@k, bal mAP, cnn acc or None, fit s, query s]}."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["method"])
    rows = {}
    for line in lines[start + 1 :]:
        parts = line.split()
        if len(parts) != 8:
            break
        rows[parts[0]] = [None if p == "-" else float(p) for p in parts[1:]]
    return rows


def check_report(out_dir, methods, k):
    """The report folder: valid PNGs, consistent CSV/JSON, no dangling references."""
    names = {p.name for p in out_dir.iterdir()} - {".galaxysim-report"}  # the report's marker
    assert not [n for n in names if n.startswith(".") or n.endswith(".part")], names
    pngs = sorted(n for n in names if n.endswith(".png"))
    for name in pngs:
        data = (out_dir / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        with Image.open(out_dir / name) as img:
            img.verify()
        with Image.open(out_dir / name) as img:
            assert min(img.size) > 100, (name, img.size)
    page = (out_dir / "index.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    parser = _Refs()
    parser.feed(page)
    for ref in parser.refs:
        if ref.startswith("#"):
            assert ref[1:] in parser.ids, ref
        elif not ref.startswith("data:"):
            assert ref in names, f"index.html references missing {ref}"
    assert {r for r in parser.refs if r.endswith(".png")} == set(pngs)
    for f in ("results.csv", "results.json", "neighbours.csv"):
        assert f'href="{f}"' in page

    with open(out_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == methods
    metric_cols = [c for c in rows[0] if c.startswith(("precision_at_k", "map_at_k", "cnn_"))]
    assert len(metric_cols) >= 5 + 10  # headline figures + one per class
    for r in rows:
        assert int(r["k"]) == k
        for c in metric_cols:
            if r[c] != "":
                assert 0.0 <= float(r[c]) <= 1.0, (r["method"], c, r[c])
        for c in ("fit_seconds_per_fold", "query_seconds_per_fold"):
            assert float(r[c]) >= 0.0

    res = json.loads((out_dir / "results.json").read_text())
    assert list(res["methods"]) == methods
    assert res["classes"] == list(GALAXY10_CLASSES)
    for m in methods:
        entry = res["methods"][m]
        curve = entry["precision_at_k_curve_balanced"]
        assert len(curve) == k
        assert all(0.0 <= v <= 1.0 for v in curve)
        assert curve[-1] == pytest.approx(entry["precision_at_k_balanced"])
        assert len(entry["fit_seconds"]) == len(entry["query_seconds"]) == 2
    with open(out_dir / "neighbours.csv", newline="") as f:
        ranked = list(csv.DictReader(f))
    assert [r["method"] for r in ranked] == [m for m in methods for _ in range(k)]
    return res, pngs


# ------------------------------------------------------------------ pixel methods
def test_pixel_methods_table_and_report(capsys, tmp_path):
    out_dir = tmp_path / "ev"
    assert main(["evaluate", *PIXEL_ARGS, "--out", str(out_dir)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "2-fold cross-validation" in out
    assert f"report written to {out_dir / 'index.html'}" in out
    header = next(line for line in out.splitlines() if line.startswith("method"))
    assert header.split() == [*HEADER, "fit", "s", "query", "s"]
    rows = table_rows(out)
    assert list(rows) == ["mse", "maxabs"]
    for bal, sd, mean, bal_map, acc, fit_s, query_s in rows.values():
        assert all(0.0 <= v <= 1.0 for v in (bal, sd, mean, bal_map))
        assert acc is None
        assert fit_s >= 0 and query_s >= 0
        assert bal > 0.1  # better than chance (10 balanced classes) on the built-in catalogue

    res, pngs = check_report(out_dir, ["mse", "maxabs"], 10)
    assert pngs == [
        "montage_maxabs.png",
        "montage_mse.png",
        "precision_curves.png",
        "precision_per_class.png",
    ]
    # the printed table holds what results.json holds
    for m, printed in rows.items():
        assert printed[0] == pytest.approx(res["methods"][m]["precision_at_k_balanced"], abs=6e-4)
        assert printed[3] == pytest.approx(res["methods"][m]["map_at_k_balanced"], abs=6e-4)


def test_mse_scores_equal_per_fold_cross_validation_by_hand(tmp_path, capsys):
    # 130 images: 13 per class, folds of 7 and 6, so pooling the folds before averaging
    # (0.189) and averaging each fold's score (0.190, the definition) differ
    n = 130
    out_dir = tmp_path / "ev"
    args = ["--n-catalog", str(n), "--folds", "2", "--method", "mse", "-q", "--out", str(out_dir)]
    assert main(["evaluate", *args]) == 0
    capsys.readouterr()
    got = json.loads((out_dir / "results.json").read_text())["methods"]["mse"]

    X, y = make_galaxies(n, image_size=64, random_state=0)
    flat = X.reshape(len(X), -1)
    labels = np.empty((n, 10), dtype=y.dtype)
    folds = []
    for train, test in StratifiedKFold(2, shuffle=True, random_state=0).split(flat, y):
        nn = NearestGalaxy(metric="mse").fit(flat[train], y[train])
        labels[test] = y[train][nn.kneighbors(flat[test], 10, return_distance=False)]
        n_rel = [np.sum(y[train] == v) for v in y[test]]
        folds.append(
            {
                "balanced": precision_at_k(y[test], labels[test], average="balanced"),
                "mean": precision_at_k(y[test], labels[test]),
                "map": mean_average_precision(
                    y[test], labels[test], n_relevant=n_rel, average="balanced"
                ),
                "per_class": [
                    precision_at_k(y[test][y[test] == c], labels[test][y[test] == c])
                    for c in range(10)
                ],
            }
        )
    per_fold = [f["balanced"] for f in folds]
    assert got["precision_at_k_balanced_per_fold"] == pytest.approx(per_fold)
    assert got["precision_at_k_balanced"] == pytest.approx(np.mean(per_fold))
    assert got["precision_at_k_balanced_fold_sd"] == pytest.approx(np.std(per_fold, ddof=1))
    pooled = precision_at_k(y, labels, average="balanced")
    assert abs(got["precision_at_k_balanced"] - pooled) > 1e-4  # not the pooled figure
    assert got["precision_at_k_mean"] == pytest.approx(np.mean([f["mean"] for f in folds]))
    assert got["map_at_k_balanced"] == pytest.approx(np.mean([f["map"] for f in folds]))
    per_class = np.mean([f["per_class"] for f in folds], axis=0)
    for c, name in enumerate(GALAXY10_CLASSES):
        assert got[f"precision_at_k[{name}]"] == pytest.approx(per_class[c])


# ------------------------------------------------------------------ deep methods
def test_deep_methods_train_per_fold_and_report(capsys, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    trained = []
    original = cli_main.deep_model

    def recording(method, args, X, y):
        assert args.model_dir is None  # never cached across folds
        trained.append((method, len(X)))
        return original(method, args, X, y)

    monkeypatch.setattr(cli_main, "deep_model", recording)
    out_dir = tmp_path / "ev"
    assert main(["evaluate", *DEEP_ARGS, "--out", str(out_dir)]) == 0
    out, _ = capsys.readouterr()
    # two folds of 40 training images each, then the whole catalogue for the pictures
    assert trained == [(m, n) for m in ("cnn", "ae", "vae") for n in (40, 40, 80)]

    rows = table_rows(out)
    assert list(rows) == ["cnn", "ae", "vae"]
    assert 0.0 <= rows["cnn"][4] <= 1.0
    assert rows["ae"][4] is None and rows["vae"][4] is None

    res, pngs = check_report(out_dir, ["cnn", "ae", "vae"], 5)
    assert pngs == sorted(
        [
            "confusion_cnn.png",
            "generated_vae.png",
            "latent_ae.png",
            "latent_vae.png",
            "montage_ae.png",
            "montage_cnn.png",
            "montage_vae.png",
            "precision_curves.png",
            "precision_per_class.png",
            "reconstructions_ae.png",
            "reconstructions_vae.png",
            "training_ae.png",
            "training_cnn.png",
            "training_vae.png",
        ]
    )
    cls = res["methods"]["cnn"]["classifier"]
    cm = np.array(cls["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 80  # every image predicted once, out of fold
    assert cls["accuracy"] == pytest.approx(np.trace(cm) / 80)
    assert set(cls["recall_per_class"]) == set(GALAXY10_CLASSES)
    assert "classifier" not in res["methods"]["ae"]


# ------------------------------------------------------------------ user errors
def assert_one_line_error(code, err, match):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("galaxysim")
    assert re.search(match, lines[0]), lines[0]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--folds", "1"], "--folds must be at least 2"),
        (["--k", "0"], "-k must be at least 1"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--method", "mse,nope"], "unknown method"),
        (["--n-catalog", "20", "--folds", "5"], "fewer than --folds 5"),
        (["--n-catalog", "40", "--k", "30"], "exceeds the 20 training images"),
        (["--catalog", "/nonexistent/catalogue"], "does not exist"),
        (["--query", "/nonexistent.png"], "neither `milkyway`"),
    ],
)
def test_user_errors_exit_2_with_one_line(capsys, tmp_path, args, match):
    code = main(
        [
            "evaluate",
            "--n-catalog",
            "40",
            "--folds",
            "2",
            "-q",
            "--method",
            "mse",
            *args,
            "--out",
            str(tmp_path / "r"),
        ]
    )
    out, err = capsys.readouterr()
    assert_one_line_error(code, err, match)
    assert not (tmp_path / "r" / "index.html").exists()


def test_folder_without_labels_is_a_user_error(capsys, tmp_path):
    X, _ = make_galaxies(4, image_size=32, random_state=0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(X):
        Image.fromarray(img).save(folder / f"g{i}.png")
    code = main(["evaluate", "--catalog", str(folder), "-q", "--out", str(tmp_path / "r")])
    _, err = capsys.readouterr()
    assert_one_line_error(code, err, "needs labels")
