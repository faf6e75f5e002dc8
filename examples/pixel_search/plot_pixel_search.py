"""
=================================================
Which galaxies look like the Milky Way? By pixels
=================================================

The simplest similarity search compares pixels. We search the built-in procedural
catalogue for the galaxies closest to the Milky Way model by two distances:

* **mean squared error** (``metric="mse"``): the average squared pixel difference, which
  rewards images that match everywhere on average;
* **minimal maximum difference** (``metric="maxabs"``): the largest single pixel
  difference, which the search minimises, so that no pixel may be far off.

and then ask for the closest galaxy of every class and within a single class.
"""

# %%
# The catalogue and the query
# ---------------------------
# :func:`~galaxysim.datasets.make_galaxies` renders survey-like galaxies of the ten
# Galaxy10 classes; :func:`~galaxysim.datasets.load_milky_way` renders the Milky Way
# (a barred spiral, SBbc) through the same renderer, noise and framing.
import numpy as np
from matplotlib.figure import Figure

from galaxysim import GALAXY10_CLASSES
from galaxysim.datasets import load_milky_way, make_galaxies
from galaxysim.neighbors import NearestGalaxy
from galaxysim.pipeline import make_search_pipeline
from galaxysim.plotting import plot_generated, plot_neighbors
from galaxysim.preprocessing import Crop64, PixelFlatten

X, y = make_galaxies(1500, random_state=0)
mw = load_milky_way()
print(X.shape, X.dtype, "query:", mw.shape)

first_of_class = [int(np.flatnonzero(y == c)[0]) for c in range(10)]
catalogue = plot_generated(
    X[first_of_class],
    n_cols=5,
    titles=[f"{c} {GALAXY10_CLASSES[c]}" for c in range(10)],
    title="One catalogue galaxy of each Galaxy10 class",
)

# %%
# Mean squared error
# ------------------
# :func:`~galaxysim.pipeline.make_search_pipeline` builds a scikit-learn ``Pipeline``
# whose ``kneighbors`` sends the query through every step but the last.
mse = make_search_pipeline(Crop64(), PixelFlatten(), NearestGalaxy(metric="mse"))
mse.fit(X, y)


def show_neighbours(dist, ind, title, **kwargs):
    """The Milky Way beside its neighbours, labelled with class, index and distance."""
    return plot_neighbors(
        mw,
        X[ind[0]],
        labels=[GALAXY10_CLASSES[c] for c in y[ind[0]]],
        distances=dist[0],
        indices=ind[0],
        query_title="Milky Way",
        title=title,
        **kwargs,
    )


mse_ranking = mse.kneighbors(mw, n_neighbors=8)
mse_fig = show_neighbours(*mse_ranking, "Mean squared error", ncols=8)

# %%
# Minimal maximum difference
# --------------------------
# The same pipeline with another metric. ``set_params`` reaches the last step by name.
# To compare the two rankings at a glance, both montages go into one figure: every
# plotting function draws where it is told, a montage into a ``fig=`` (here one of the
# figure's two subfigures), a single-panel plot into an ``ax=``.
maxabs = mse.set_params(nearestgalaxy__metric="maxabs").fit(X, y)
both_fig = Figure(figsize=(14.7, 4.8))
upper, lower = both_fig.subfigures(2, 1)
show_neighbours(*mse_ranking, "Mean squared error", ncols=8, fig=upper)
show_neighbours(
    *maxabs.kneighbors(mw, n_neighbors=8), "Minimal maximum difference", ncols=8, fig=lower
)

# %%
# The mean squared error finds barred and unbarred spirals of about the Milky Way's
# size and orientation. The maximum difference is decided by the single worst pixel,
# usually in the bright centre, a noise spike or a foreground star: it ranks galaxies by
# how well their core matches, so smooth galaxies with a bulge like the Milky Way's
# climb up the list and faint spiral arms hardly count.
#
# The closest galaxy of every class
# ---------------------------------
# ``nearest_per_class`` returns one neighbour per label, in label order.
mse.set_params(nearestgalaxy__metric="mse").fit(X, y)
dist, ind = mse.nearest_per_class(mw)
per_class = plot_neighbors(
    mw,
    X[ind[0]],
    labels=[GALAXY10_CLASSES[c] for c in mse.classes_],
    distances=dist[0],
    query_title="Milky Way",
    ncols=5,
    title="The closest galaxy of every class (mean squared error)",
)
for c, d in zip(mse.classes_, dist[0], strict=True):
    print(f"{GALAXY10_CLASSES[c]:>26s}  {d:.5f}")

# %%
# The closest galaxies within one class
# -------------------------------------
# ``within=`` restricts the search to chosen labels: here the closest "Unbarred Loose
# Spiral" galaxies (label 7).
within_fig = show_neighbours(
    *mse.kneighbors(mw, n_neighbors=6, within=[7]), "Closest within 'Unbarred Loose Spiral'"
)
