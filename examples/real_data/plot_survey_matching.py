"""
======================================================
The Milky Way imaged as a real survey would image it
======================================================

A query must look as the catalogue's survey would have imaged it, or a search matches
sky, noise, resolution and size instead of morphology. The Milky Way comes as a
procedural model on the built-in catalogue's grey, noisy sky, or as an artist's
illustration whose disk fills the frame; the catalogue here is 3,283 SDSS cutouts with
Galaxy Zoo 1 classes (``../shared/data/gz1-dev``, relative to the repository root).

:class:`~galaxysim.preprocessing.SurveyImager` learns from the catalogue's own images
its sky and noise, its PSF, the colour and surface brightness of its galaxies and their
size, and re-images any query that way. This example needs the real cutouts: without
them it stops with an error (it is not skipped).
"""

# %%
# Find the data
# -------------
# sphinx-gallery runs an example from its own folder and defines no ``__file__``; a
# script may run from anywhere. The repository root is the first folder, from here
# upwards, that holds ``setup.cfg`` and the ``galaxysim`` package; the data sit beside it.
from pathlib import Path

import numpy as np

try:
    START = Path(__file__).resolve().parent
except NameError:  # sphinx-gallery, or an interactive session
    START = Path.cwd().resolve()
ROOT = next(
    (
        p
        for p in (START, *START.parents)
        if (p / "setup.cfg").is_file() and (p / "galaxysim").is_dir()
    ),
    START,
)
DATA = (ROOT / ".." / "shared" / "data").resolve()
if not (DATA / "gz1-dev" / "labels.csv").is_file():
    raise FileNotFoundError(
        f"{DATA / 'gz1-dev'} not found: this example needs the gz1-dev cutouts in "
        "../shared/data beside the repository."
    )

# %%
# What the catalogue's survey looks like
# --------------------------------------
# Each 423 px cutout is framed as the search sees it: the central 128 pixels, resized to
# 64. Fitting measures everything on these framed images, with robust statistics (the
# border ring's median and clipped spread for sky and noise, the sharpest compact sources
# for the PSF, a curve of growth for the central galaxy's half-light radius).
from galaxysim.datasets import load_image_folder
from galaxysim.preprocessing import SurveyImager

data = load_image_folder(
    DATA / "gz1-dev", label_column="gz1_class", crop=128, image_size=64, verbose=0
)
X, y = data.images, data.target
SPIRALS = [1, 2]  # gz1_class 1 and 2: face-on spirals, clockwise and anticlockwise

imager = SurveyImager(max_samples=None, random_state=0).fit(X)  # all 3,283
disk_imager = SurveyImager(reference_classes=SPIRALS, random_state=0).fit(X, y)
print("all galaxies:   ", imager.describe())
print("spirals as ref.:", disk_imager.describe())

# %%
# The size distribution of the catalogue's galaxies
# -------------------------------------------------
# Galaxy Zoo 1 cutouts are scaled to each galaxy's Petrosian radius, so galaxies of
# every class have about the same size in the frame; a survey with a fixed pixel scale
# (Galaxy10 DECaLS) would show disks larger than ellipticals, and ``reference_classes``
# picks whose size a query takes.
from matplotlib.figure import Figure

fig = Figure(figsize=(6, 3), layout="constrained")
ax = fig.add_subplot()
r = imager.half_light_radii_
bins = np.linspace(np.nanpercentile(r, 1), np.nanpercentile(r, 99), 30)
ax.hist(r[np.isfinite(r)], bins=bins, color="0.7", label="all measured galaxies")
ax.axvline(imager.half_light_radius_, color="k", label="median (target of a query)")
ax.axvline(disk_imager.half_light_radius_, color="tab:blue", ls="--", label="median of spirals")
ax.set_xlabel("half-light radius of the central galaxy (pixels)")
ax.set_ylabel("images")
ax.legend(fontsize=8)

# %%
# Queries before and after matching
# ---------------------------------
# Top row, as galaxysim frames the Milky Way without a catalogue: the model (built-in
# catalogue's sky, noise and framing), the illustration cut to the model's field, and
# the 424 px illustration file resized to 64 px. Second row: the same re-imaged like
# gz1-dev, with the colour and surface brightness of its face-on spirals. Below:
# catalogue galaxies of typical size, face-on spirals and ellipticals.
from PIL import Image

from galaxysim.datasets import load_milky_way
from galaxysim.plotting import plot_generated
from galaxysim.preprocessing import Resize

ill = DATA / "milky-way" / "milky_way_faceon_nasa_jpl_rhurt_256.png"
png = np.asarray(Image.open(DATA / "milky-way" / "milky_way_faceon_nasa_jpl_rhurt_424.png"))
raw = np.concatenate(
    [
        load_milky_way(kind="model"),
        load_milky_way(kind="illustration", path=ill),
        Resize(64).fit_transform(png[..., :3]),
    ]
)
matched = np.concatenate(
    [
        load_milky_way(kind="model", like=disk_imager),
        load_milky_way(kind="illustration", path=ill, like=disk_imager),
        disk_imager.transform(png[..., :3]),
    ]
)


def typical(classes, k=3):
    """Catalogue galaxies of these classes whose half-light radius is nearest the median,
    and their radii as titles."""
    rows = np.flatnonzero(np.isin(y, classes))
    radius = imager.half_light_radii_  # one per catalogue image (max_samples=None)
    rows = rows[np.argsort(np.abs(radius[rows] - np.nanmedian(radius[rows])))[:k]]
    return {"images": X[rows], "titles": [f"r_e {radius[i]:.1f} px" for i in rows]}


fig_queries = Figure(figsize=(6, 8.5), layout="constrained")
top, middle, spirals, ellipticals = fig_queries.subfigures(4, 1)
forms = ["model", "illustration", "PNG file"]
plot_generated(raw, n_cols=3, titles=forms, title="raw", fig=top)
plot_generated(matched, n_cols=3, titles=forms, title="matched to gz1-dev", fig=middle)
plot_generated(**typical(SPIRALS), n_cols=3, title="gz1-dev face-on spirals", fig=spirals)
plot_generated(**typical([0]), n_cols=3, title="gz1-dev ellipticals", fig=ellipticals)

# %%
# What a pixel search finds
# -------------------------
# The ten nearest catalogue galaxies of the matched model by mean squared pixel
# difference, with their Galaxy Zoo class. Pixel distance is a weak judge of morphology
# on this catalogue: the folder's own face-on spirals, used as queries, find about two
# spirals among their ten nearest (see the evaluation page of the documentation, which
# also gives the trained methods' counts for every query form).
from galaxysim.pipeline import make_pixel_search
from galaxysim.plotting import plot_neighbors

search = make_pixel_search("mse").fit(X, y)
dist, ind = search.kneighbors(matched[:1], n_neighbors=10)
names = [str(data.target_names[c]) for c in y[ind[0]]]
print("10 nearest:", names)
print("face-on spirals among them:", int(np.isin(y[ind[0]], SPIRALS).sum()))
fig_neighbours = plot_neighbors(
    matched[0],
    X[ind[0]],
    labels=names,
    distances=dist[0],
    ncols=6,
    query_title="matched model",
    title="Pixel MSE: the matched Milky Way model's 10 nearest in gz1-dev",
)
