"""
=========================================
Searching by CNN class scores
=========================================

A convolutional network trained to classify galaxies learns what matters for
morphology (arms, bars, bulges, disks seen edge-on) and ignores what does not (noise,
exact position, orientation). :class:`~galaxysim.nn.CNNScorer` is both a classifier and
a transformer: its ``transform`` gives each image's class probabilities, and galaxies
with similar scores look alike to the network. We train it, look at its training
curves and at the Milky Way's class scores, and search the catalogue in score space.
"""

# %%
# Train the CNN inside a search pipeline
# --------------------------------------
# ``make_search_pipeline(CNNScorer(), NearestGalaxy())`` trains the CNN on the labels
# and builds the search on its scores (``output="proba"``, the default, makes
# ``transform`` return class probabilities). ``groups="galaxy10-5"`` trains on the five
# coarse Galaxy10 groups (disturbed/merging, smooth, barred spiral, unbarred spiral,
# edge-on), which a small network learns faster than the ten classes.
#
# A small catalogue of 48x48 images and a few epochs keep this example fast;
# ``n_jobs`` sets the CPU threads torch uses. ``history_`` records the loss and
# accuracy of every epoch on the training images and on a held-out validation split;
# the learning rate follows one cycle over the epochs, and the network keeps the
# weights of the epoch that classified the validation images best (``best_epoch_``,
# marked on the curves when it is not the last).
import numpy as np

from galaxysim import GALAXY10_CLASSES
from galaxysim.datasets import load_milky_way, make_galaxies
from galaxysim.neighbors import NearestGalaxy
from galaxysim.nn import CNNScorer
from galaxysim.pipeline import make_search_pipeline
from galaxysim.plotting import plot_neighbors, plot_training_curves

X, y = make_galaxies(1000, image_size=48, random_state=0)
mw = load_milky_way(image_size=48)

search = make_search_pipeline(
    CNNScorer(groups="galaxy10-5", max_epochs=8, n_jobs=2, random_state=0),
    NearestGalaxy(metric="euclidean"),
)
search.fit(X, y)
cnn = search[0]
curves = plot_training_curves(cnn, title="CNNScorer on 1,000 catalogue galaxies")

# %%
# How well does it classify unseen galaxies?
X_test, y_test = make_galaxies(500, image_size=48, random_state=1)
print(f"test accuracy on the five groups: {cnn.score(X_test, y_test):.2f}")

# %%
# The Milky Way's class scores
# ----------------------------
# The Milky Way model is a barred spiral (SBbc): most of the probability should go to
# the spiral groups.
from matplotlib.figure import Figure

proba = cnn.predict_proba(mw)[0]
scores_fig = Figure(figsize=(7, 3.6), layout="constrained")
ax = scores_fig.add_subplot()
colours = ["tab:blue" if "spiral" in name else "tab:gray" for name in cnn.classes_]
ax.barh(cnn.classes_, proba, color=colours)
ax.invert_yaxis()
ax.set_xlabel("probability")
ax.set_xlim(0, 1)
ax.set_title("CNN class scores of the Milky Way model (spirals in blue)")
for name, p in zip(cnn.classes_, proba, strict=True):
    print(f"{name:>18s}  {p:.3f}")

# %%
# Nearest neighbours by score distance
# ------------------------------------
# The pipeline ranks the catalogue by the distance between score vectors; the
# neighbours keep their ten Galaxy10 labels.
dist, ind = search.kneighbors(mw, n_neighbors=8)
neighbors_fig = plot_neighbors(
    mw,
    X[ind[0]],
    labels=[GALAXY10_CLASSES[c] for c in y[ind[0]]],
    distances=dist[0],
    indices=ind[0],
    query_title="Milky Way",
    ncols=8,
    title="Nearest neighbours in CNN score space",
)
n_spirals = int(np.isin(y[ind[0]], [5, 6, 7]).sum())
print(f"{n_spirals} of the 8 nearest neighbours are spirals")

# %%
# ``output="embedding"`` searches the network's 64-d penultimate activations instead of
# its class scores: a finer notion of similarity than five probabilities.
