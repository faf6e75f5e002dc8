"""The Milky Way on a real catalogue: how many face-on spirals are among its 10 nearest?

The headline job of galaxysim, measured on real SDSS cutouts (issue 11). Every query
form of the Milky Way is searched raw (framed as galaxysim frames it without a
catalogue) and matched to the catalogue by :class:`galaxysim.preprocessing.SurveyImager`
(sky, noise, PSF, colour, galaxy size learned from the catalogue's own images):

- ``model``: ``load_milky_way(kind="model")`` / ``load_milky_way(like=imager)``;
- ``illustration``: ``load_milky_way(kind="illustration", path=<256 px PNG>)`` /
  the same with ``like=imager``;
- ``PNG file``: ``milky_way_faceon_nasa_jpl_rhurt_424.png`` read as any query file:
  the whole frame resized to the catalogue's side / ``imager.transform``.

Two matchings: ``matched`` uses all the catalogue's galaxies (no labels: what a search
of an unlabelled catalogue gets), ``matched, disk ref.`` takes size, colour and surface
brightness from the catalogue's face-on spirals (``reference_classes=[1, 2]``).

Parts (``--parts``):

``gz1``      ``../shared/data/gz1-dev`` (3,283 SDSS cutouts, ``crop=128``, 64 px), label
             ``gz1_class``: count of classes 1 and 2 (face-on spirals, both spin
             directions; 12.8% of the folder, so chance is 1.3 of 10) among the 10
             nearest, per method and query. Reference row: the mean count for the
             folder's own face-on spirals used as queries (leave-one-out; for the deep
             methods they are training images, so that row flatters them).
``rings``    ``../shared/data/rings-dev`` (243 DECaLS cutouts, all face-on featured
             disks): the Galaxy Zoo vote fractions (featured or disk, not edge-on) of the
             matched model's 10 nearest against the folder's mean.
``builtin``  ``make_galaxies(2000)``: count of spirals (classes 5, 6, 7; 30% of it) among
             the 10 nearest of the model, raw (rendered in this catalogue's own framing)
             and matched (all galaxies, or the spirals, as reference).

Methods (``--methods``, comma list): ``mse``, ``maxabs`` (pixels, no training) and
``cnn``, ``ae``, ``vae`` (trained on the catalogue with ``--epochs``; minutes each on a
shared 2-core CPU). Nothing here is tuned on these folders.

    python benchmarks/milky_way_real.py                       # pixel methods, all parts
    python benchmarks/milky_way_real.py --parts gz1 --methods mse,maxabs,cnn,ae,vae --epochs 8
    python benchmarks/milky_way_real.py --parts gz1 --methods cnn --epochs 8 --merge-spins
"""

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image

from galaxysim.datasets import load_image_folder, load_milky_way, make_galaxies
from galaxysim.pipeline import METHODS, PIXEL_METHODS, make_method_search
from galaxysim.preprocessing import Resize, SurveyImager

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
SPIRALS = [1, 2]  # gz1_class: spiral clockwise, spiral anticlockwise (face-on)
# --merge-spins: the CNN learns the two spin directions (mirror images) as one class
GZ1_GROUPS = {
    "elliptical": (0,),
    "spiral": (1, 2),
    "edge-on": (3,),
    "don't know": (4,),
    "merger": (5,),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="folder holding gz1-dev, ...")
    p.add_argument("--parts", default="gz1,rings,builtin")
    p.add_argument("--methods", default="mse,maxabs", help=f"comma list of {','.join(METHODS)}")
    p.add_argument("--epochs", type=int, default=8, help="epochs of the deep models")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=2, help="torch threads of the deep models")
    p.add_argument(
        "--merge-spins",
        action="store_true",
        help="train the CNN on gz1 with the two spin directions as one class",
    )
    args = p.parse_args(argv)
    args.parts = [s for s in args.parts.split(",") if s]
    args.methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        p.error(f"unknown methods {bad}; choose from {', '.join(METHODS)}")
    return args


def fit_method(method, X, y, args):
    params = {}
    if method not in PIXEL_METHODS:
        params = {"max_epochs": args.epochs, "random_state": args.seed, "n_jobs": args.n_jobs}
        if method == "cnn" and getattr(args, "merge_spins", False):
            params["groups"] = GZ1_GROUPS
    t = time.perf_counter()
    pipe = make_method_search(method, **params).fit(X, y)
    return pipe, time.perf_counter() - t


def nearest(pipe, q, k=10):
    return pipe.kneighbors(q, n_neighbors=k, return_distance=False)[0]


def milky_way_queries(mw_dir, side, imagers, seed):
    """{(form, framing): image (1, side, side, 3)}."""
    ill, png = (
        mw_dir / "milky_way_faceon_nasa_jpl_rhurt_256.png",
        mw_dir / ("milky_way_faceon_nasa_jpl_rhurt_424.png"),
    )
    pixels = np.asarray(Image.open(png).convert("RGB"))
    out = {
        ("model", "raw"): load_milky_way(kind="model", image_size=side, random_state=seed),
        ("illustration", "raw"): load_milky_way(
            kind="illustration", path=ill, image_size=side, random_state=seed
        ),
        ("PNG file", "raw"): Resize(side).fit_transform(pixels),
    }
    for name, im in imagers.items():
        out["model", name] = load_milky_way(kind="model", like=im, random_state=seed)
        out["illustration", name] = load_milky_way(
            kind="illustration", path=ill, like=im, random_state=seed
        )
        out["PNG file", name] = im.transform(pixels)
    order = ["raw", *imagers]
    return {
        key: out[key]
        for form in ("model", "illustration", "PNG file")
        for key in [(form, f) for f in order]
    }


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def part_gz1(args):
    t = time.perf_counter()
    data = load_image_folder(
        args.data / "gz1-dev",
        label_column="gz1_class",
        crop=128,
        image_size=args.image_size,
        verbose=0,
    )
    X, y = data.images, data.target
    print(f"gz1-dev: {X.shape} loaded in {time.perf_counter() - t:.1f} s")
    chance = 10 * np.isin(y, SPIRALS).mean()
    imagers = {}
    for name, kw in (("matched", {}), ("matched, disk ref.", {"reference_classes": SPIRALS})):
        t = time.perf_counter()
        imagers[name] = SurveyImager(random_state=args.seed, **kw).fit(X, y)
        print(f"SurveyImager ({name}) fitted in {time.perf_counter() - t:.1f} s:")
        print("   ", imagers[name].describe())
    t = time.perf_counter()
    queries = milky_way_queries(args.data / "milky-way", X.shape[1], imagers, args.seed)
    print(f"{len(queries)} queries made in {time.perf_counter() - t:.1f} s")

    counts = {key: {} for key in queries}
    loo, proba, fit_s = {}, {}, {}
    sp = np.flatnonzero(np.isin(y, SPIRALS))
    for method in args.methods:
        pipe, fit_s[method] = fit_method(method, X, y, args)
        for key, q in queries.items():
            counts[key][method] = int(np.isin(y[nearest(pipe, q)], SPIRALS).sum())
        ind = pipe.kneighbors(X[sp], n_neighbors=11, return_distance=False)
        kept = np.array([[j for j in row if j != i][:10] for i, row in zip(sp, ind, strict=True)])
        loo[method] = float(np.isin(y[kept], SPIRALS).sum(axis=1).mean())
        if method == "cnn":
            cnn = pipe[0]
            cols = np.isin(cnn.classes_, ["spiral"] if args.merge_spins else SPIRALS)
            for key, q in queries.items():
                proba[key] = float(cnn.predict_proba(q)[0, cols].sum())
        got = ", ".join(f"{f}/{fr} {counts[f, fr][method]}" for f, fr in queries)
        print(f"{method}: fitted in {fit_s[method]:.1f} s; spirals in 10 nearest: {got}")

    header = ["query", "framing", *args.methods] + (["cnn P(spiral)"] if proba else [])
    rows = [
        [form, framing, *[counts[form, framing][m] for m in args.methods]]
        + ([f"{proba[form, framing]:.2f}"] if proba else [])
        for form, framing in queries
    ]
    rows.append(
        ["gz1 spirals as queries (mean)", "-", *[f"{loo[m]:.1f}" for m in args.methods]]
        + (["-"] if proba else [])
    )
    rows.append(
        ["chance", "-", *[f"{chance:.1f}" for _ in args.methods]] + (["-"] if proba else [])
    )
    print("\nFace-on spirals (gz1 classes 1, 2) among the Milky Way's 10 nearest in gz1-dev")
    print(table(header, rows))
    print("fit seconds: " + ", ".join(f"{m} {s:.0f}" for m, s in fit_s.items()))


def part_rings(args):
    folder = args.data / "rings-dev"
    data = load_image_folder(folder, label_column="ring", image_size=args.image_size, verbose=0)
    X = data.images
    with open(folder / "labels.csv", newline="") as f:
        rows = {str((folder / r["file"]).resolve()): r for r in csv.DictReader(f)}
    cols = ["smooth-or-featured_featured-or-disk_fraction", "disk-edge-on_no_fraction"]
    votes = np.array(
        [[float(rows[str(Path(p).resolve())][c]) for c in cols] for p in data.filenames]
    )
    im = SurveyImager(random_state=args.seed).fit(X)
    print(f"\nrings-dev {X.shape}; SurveyImager: {im.describe()}")
    q = load_milky_way(kind="model", like=im, random_state=args.seed)
    out = [["folder mean (all 243)", *[f"{v:.2f}" for v in votes.mean(axis=0)]]]
    for method in [m for m in args.methods if m in PIXEL_METHODS]:
        pipe, _ = fit_method(method, X, None, args)
        v = votes[nearest(pipe, q)].mean(axis=0)
        out.append([f"matched model, {method}: 10 nearest", *[f"{x:.2f}" for x in v]])
    print(table(["", "featured or disk", "not edge-on"], out))


def part_builtin(args):
    X, y = make_galaxies(2000, image_size=args.image_size, random_state=args.seed)
    spirals = [5, 6, 7]
    imagers = {
        "matched": SurveyImager(random_state=args.seed).fit(X),
        "matched, disk ref.": SurveyImager(random_state=args.seed, reference_classes=spirals).fit(
            X, y
        ),
    }
    print(f"\nmake_galaxies {X.shape}; SurveyImager: {imagers['matched'].describe()}")
    queries = {"raw": load_milky_way(kind="model", image_size=args.image_size)}
    for name, im in imagers.items():
        queries[name] = load_milky_way(kind="model", like=im, random_state=args.seed)
    rows = []
    for method in [m for m in args.methods if m in PIXEL_METHODS]:
        pipe, _ = fit_method(method, X, y, args)
        rows.append(
            [method] + [int(np.isin(y[nearest(pipe, q)], spirals).sum()) for q in queries.values()]
        )
    print("Spirals (classes 5-7, chance 3.0) among the model's 10 nearest")
    print(table(["method", *(f"model {k}" for k in queries)], rows))


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    for part in args.parts:
        {"gz1": part_gz1, "rings": part_rings, "builtin": part_builtin}[part](args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
