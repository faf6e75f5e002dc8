"""
===========================================
VAE: generating galaxies like the Milky Way
===========================================

A variational autoencoder (:class:`~galaxysim.nn.VAEEncoder`) is an autoencoder whose
latent codes are pushed towards a standard normal distribution. That makes its latent
space smooth enough to sample from: decoding random normal vectors gives new galaxies,
decoding points near the Milky Way's code gives galaxies like ours, and decoding the
points on a line between two codes morphs one galaxy into another.
"""

# %%
# Train the VAE
# -------------
# Small 32x32 images and a few epochs keep this example fast; the generated galaxies
# get sharper with longer training on more images. ``beta`` weights the pull towards
# the normal prior against reconstruction: below 1 the images are sharper and the
# latent space a little less regular. Augmentation (random flips and rotations) is
# switched off because it slows down learning in such a short training.
from galaxysim.datasets import load_milky_way, make_galaxies
from galaxysim.nn import VAEEncoder
from galaxysim.plotting import plot_generated, plot_training_curves

X, y = make_galaxies(1000, image_size=32, random_state=0)
mw = load_milky_way(image_size=32)

vae = VAEEncoder(
    latent_dim=16,
    beta=0.05,
    augment=False,
    max_epochs=8,
    lr=3e-3,
    n_jobs=2,
    random_state=0,
)
vae.fit(X)
curves = plot_training_curves(vae, title="VAEEncoder: reconstruction + KL loss")

# %%
# New galaxies from noise
# -----------------------
# ``sample`` decodes draws from the standard normal prior.
samples = plot_generated(
    vae.sample(16, random_state=0), n_cols=8, title="Decoded from random noise"
)

# %%
# More galaxies like the Milky Way
# --------------------------------
# ``generate_like`` draws codes around the Milky Way's: ``scale`` is the spread in units
# of the prior's standard deviation, so ``scale=0`` gives the Milky Way's reconstruction
# and ``scale=1`` about a random galaxy.
like_mw = plot_generated(
    [*mw, *vae.generate_like(mw, 15, scale=0.4, random_state=0)],
    n_cols=8,
    titles=["Milky Way"],
    title="The Milky Way (first) and 15 galaxies like it",
)

# %%
# From one galaxy to another
# --------------------------
# ``interpolate`` decodes evenly spaced points on the latent line between two images:
# here from the Milky Way to an edge-on disk of the catalogue.
import numpy as np

edge_on = X[np.flatnonzero(y == 9)[0]]
steps = vae.interpolate(mw[0], edge_on, n_steps=8)
morph = plot_generated(
    steps,
    n_cols=8,
    titles=["Milky Way"] + [""] * 6 + ["edge-on"],
    title="Interpolation in latent space",
)
