"""
=========================================
The methods side by side on real galaxies
=========================================

The built-in catalogue is procedural; real survey cutouts are harder: small galaxies,
foreground stars, neighbours, broken frames. Here the methods search a few hundred SDSS
cutouts with Galaxy Zoo 1 classifications (``../shared/data/gz1-dev``, relative to the
repository root) in four classes: elliptical, spiral (both spin directions), edge-on
and merger. Held-out galaxies are the queries; a method is good when a query's nearest
neighbours share its class (precision@10, averaged over classes).

The data are not shipped with galaxysim: when the folder is absent, the example says
so and stops.
"""

# %%
# Find the data
# -------------
# The cutouts live beside the repository, in ``../shared/data``. The docs build names
# that folder in ``GALAXYSIM_EXAMPLE_DATA`` (sphinx-gallery runs an example from its own
# folder); a script finds it from its own location, or from the working directory.
import csv
import os
import tempfile
from pathlib import Path

import numpy as np

try:
    ROOT = Path(__file__).resolve().parents[2]
except NameError:  # run interactively, from the repository root
    ROOT = Path.cwd()
SHARED = Path(os.environ.get("GALAXYSIM_EXAMPLE_DATA", ROOT / ".." / "shared" / "data"))
DATA = (SHARED / "gz1-dev").resolve()
FOUND = (DATA / "labels.csv").is_file()
if not FOUND and "GALAXYSIM_EXAMPLE_DATA" in os.environ:
    raise FileNotFoundError(f"GALAXYSIM_EXAMPLE_DATA is set but {DATA} has no labels.csv.")
if not FOUND:
    print(f"{DATA} not found: this example needs the gz1-dev cutouts, skipping it.")

# %%
# A small, balanced subset
# ------------------------
# 150 galaxies of each class (all 53 mergers), listed in a CSV of our own whose ``file``
# column holds absolute paths. Each 423 px cutout is framed like the Galaxy10
# reference: the central 128 pixels, resized to 64.
from galaxysim.datasets import load_image_folder

NAMES = ["elliptical", "spiral", "edge-on", "merger"]
GZ1_TO_CLASS = {0: 0, 1: 1, 2: 1, 3: 2, 5: 3}  # gz1_class 4 ("don't know") is dropped

if FOUND:
    rng = np.random.default_rng(0)
    with open(DATA / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["gz1_class"]) in GZ1_TO_CLASS]
    chosen = []
    for k in range(len(NAMES)):
        members = [r for r in rows if GZ1_TO_CLASS[int(r["gz1_class"])] == k]
        picks = rng.permutation(len(members))[:150]
        chosen += [members[i] for i in sorted(picks)]
    tmp = tempfile.mkdtemp()
    with open(Path(tmp) / "labels.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["file", "morphology", "morphology_name"])
        for r in chosen:
            k = GZ1_TO_CLASS[int(r["gz1_class"])]
            out.writerow([str(DATA / r["file"]), k, NAMES[k]])
    data = load_image_folder(
        DATA,
        labels_csv=Path(tmp) / "labels.csv",
        label_column="morphology",
        crop=128,
        image_size=64,
        verbose=0,
    )
    X, y = data.images, data.target
    print(X.shape, {str(n): int(c) for n, c in zip(data.target_names, np.bincount(y), strict=True)})

# %%
# Five methods
# ------------
# Pixel distances need no training; the CNN learns from the catalogue's labels and
# is searched in class-score space; the autoencoder learns without labels and is
# searched in latent space. Two thirds of the galaxies form the catalogue, the rest
# are queries.
from sklearn.model_selection import train_test_split

from galaxysim.metrics import precision_at_k_per_class
from galaxysim.neighbors import NearestGalaxy
from galaxysim.nn import AEEncoder, CNNScorer
from galaxysim.pipeline import make_search_pipeline
from galaxysim.preprocessing import PixelFlatten


def methods():
    nn = {"n_jobs": 2, "random_state": 0, "lr": 2e-3}
    return {
        "mse": make_search_pipeline(PixelFlatten(), NearestGalaxy(metric="mse")),
        "maxabs": make_search_pipeline(PixelFlatten(), NearestGalaxy(metric="maxabs")),
        "cosine": make_search_pipeline(PixelFlatten(), NearestGalaxy(metric="cosine")),
        "cnn": make_search_pipeline(CNNScorer(max_epochs=6, **nn), NearestGalaxy()),
        "ae": make_search_pipeline(AEEncoder(max_epochs=5, **nn), NearestGalaxy()),
    }


if FOUND:
    X_cat, X_q, y_cat, y_q = train_test_split(X, y, test_size=1 / 3, stratify=y, random_state=0)
    scores, neighbours = {}, {}
    for name, pipe in methods().items():
        pipe.fit(X_cat, y_cat)
        ind = pipe.kneighbors(X_q, n_neighbors=10, return_distance=False)
        per_class = precision_at_k_per_class(y_q, y_cat[ind])
        scores[name] = np.array([per_class[k] for k in range(len(NAMES))])
        neighbours[name] = ind
        print(f"{name:>7s}  balanced precision@10 {scores[name].mean():.3f}")

# %%
# Precision@10 per class
# ----------------------
# Chance is the share of each class in the catalogue (a quarter, but less for mergers).
#
# With a few epochs on about 300 catalogue images, as here to stay fast, the networks
# are far from trained, and the pixel distances do as well or better. Trained fully
# (all 3,283 images, 5-fold cross-validation, ``galaxysim evaluate``), the CNN's score
# space beats pixels clearly: see the evaluation page of the documentation.
from matplotlib.figure import Figure

if FOUND:
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(scores)
    for j, (name, per_class) in enumerate(scores.items()):
        ax.bar(np.arange(len(NAMES)) + j * width, per_class, width, label=name)
    chance = np.bincount(y_cat) / len(y_cat)
    ax.scatter(np.arange(len(NAMES)) + 0.4 - width / 2, chance, color="k", marker="_", s=400)
    ax.set_xticks(np.arange(len(NAMES)) + 0.4 - width / 2, NAMES)
    ax.set_ylabel("precision@10")
    ax.set_title("Retrieval quality per class on gz1-dev (black: chance)")
    ax.legend(ncols=len(scores))

# %%
# The same spiral query, five ways
# --------------------------------
# Each row: the query, then the five nearest catalogue galaxies of one method.
from galaxysim.plotting import plot_generated

if FOUND:
    q = int(np.flatnonzero(y_q == 1)[0])
    panels, titles = [], []
    for name, ind in neighbours.items():
        panels += [X_q[q], *X_cat[ind[q, :5]]]
        titles += [f"query ({name})"] + [NAMES[c] for c in y_cat[ind[q, :5]]]
    montage = plot_generated(
        np.stack(panels), n_cols=6, titles=titles, title="One query (left), top 5 of each method"
    )
