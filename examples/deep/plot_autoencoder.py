"""
=============================================
Autoencoder: reconstructions and latent space
=============================================

An autoencoder learns, without labels, to squeeze every image into a short latent code
and to rebuild the image from it. If the rebuilt images look like the originals, the
code keeps what the galaxy looks like, and galaxies with close codes look alike.
:class:`~galaxysim.nn.AEEncoder` is a scikit-learn transformer: ``transform`` gives the
latent codes, ``inverse_transform`` decodes them, ``reconstruct`` does both.
"""

# %%
# Train the autoencoder inside a search pipeline
# ----------------------------------------------
# The autoencoder ignores the labels; the search step keeps them to label the
# neighbours. Small 32x32 images and a few epochs keep this example fast; augmentation
# (random flips and rotations, on by default) is switched off because it slows down
# learning in such a short training.
import numpy as np

from galaxysim import GALAXY10_CLASSES
from galaxysim.datasets import load_milky_way, make_galaxies
from galaxysim.neighbors import NearestGalaxy
from galaxysim.nn import AEEncoder
from galaxysim.pipeline import make_search_pipeline
from galaxysim.plotting import (
    plot_latent_map,
    plot_neighbors,
    plot_reconstructions,
    plot_training_curves,
)

X, y = make_galaxies(1000, image_size=32, random_state=0)
mw = load_milky_way(image_size=32)

search = make_search_pipeline(
    AEEncoder(latent_dim=32, augment=False, max_epochs=8, lr=3e-3, n_jobs=2, random_state=0),
    NearestGalaxy(metric="euclidean"),
)
search.fit(X, y)
ae = search[0]
curves = plot_training_curves(ae, title="AEEncoder: reconstruction loss")

# %%
# Originals above reconstructions
# -------------------------------
# The Milky Way (never seen in training) first, then unseen galaxies of several classes.
# After a few epochs on a thousand small images the reconstructions are blurred, but
# keep the brightness, size, colour, elongation and orientation of the galaxy; arms and
# bars come with longer training on more images (``galaxysim train --method ae``
# trains the full-size model). Fine detail such as thin spiral arms is always the
# first thing a small code gives up.
X_new, y_new = make_galaxies(200, image_size=32, random_state=1)
picks = [int(np.flatnonzero(y_new == c)[0]) for c in (2, 4, 5, 6, 7, 8, 9)]
originals = np.concatenate([mw, X_new[picks]])
titles = ["Milky Way"] + [GALAXY10_CLASSES[c] for c in y_new[picks]]
recon = plot_reconstructions(
    originals, ae.reconstruct(originals), n_images=len(originals), titles=titles
)

# %%
# The reconstruction error should be well below that of the "mean image" baseline
# (predicting the average catalogue image for every galaxy): otherwise the network
# would have learnt nothing.
err = ae.reconstruction_error(X_new).mean()
baseline = ((X_new / 255.0 - X.mean(axis=0) / 255.0) ** 2).mean()
print(f"reconstruction MSE {err:.5f}, mean-image baseline {baseline:.5f}")

# %%
# The latent space
# ----------------
# A 2-D projection (PCA) of the codes of the catalogue, coloured by class, with the
# Milky Way as a star. The autoencoder never saw a label: its main axis follows what
# it learnt first, the brightness and extent of the galaxy, along which smooth
# galaxies, spirals and edge-on disks only partly separate. The better the
# reconstructions, the more the classes form regions of their own.
latent_map = plot_latent_map(
    ae.transform(X),
    y,
    label_names=GALAXY10_CLASSES,
    highlight=ae.transform(mw),
    highlight_label="Milky Way",
    title="Autoencoder latent space (PCA)",
)

# %%
# Latent-space neighbours of the Milky Way
# ----------------------------------------
# Galaxies with a core of the Milky Way's size and brightness, whatever their class:
# plain codes compared by Euclidean distance measure overall appearance, not
# morphology. Averaging the codes over orientations (``orientation_invariant=True``),
# standardising them and comparing by cosine ranks more by morphology (the user guide's
# pipeline, and what ``galaxysim search --method ae`` does); for "the same kind of
# galaxy" with labels at hand, search by CNN scores.
dist, ind = search.kneighbors(mw, n_neighbors=8)
neighbors_fig = plot_neighbors(
    mw,
    X[ind[0]],
    labels=[GALAXY10_CLASSES[c] for c in y[ind[0]]],
    distances=dist[0],
    indices=ind[0],
    query_title="Milky Way",
    ncols=8,
    title="Nearest neighbours in autoencoder latent space",
)
