"""The steps of a method's recipe as an index stores them.

A recipe (:func:`galaxysim.pipeline.make_method_search`) is a few transform steps and a
``NearestGalaxy``. The index rebuilds it from the method's name and the saved model, so
the only state it stores is what the steps learnt from the catalogue: the leading
steps need none (``PixelFlatten`` only learns the image shape, a frozen model is
fitted), and the steps after them (the ``StandardScaler`` of the autoencoder
recipes) are fitted on the stored rows; their fitted attributes are saved as JSON.
"""

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import StandardScaler

from galaxysim.preprocessing import PixelFlatten

ALGORITHMS = ("brute", "ivf", "hnsw")
APPROXIMATE = ("ivf", "hnsw")
MODEL_CLASSES = {"cnn": "CNNScorer", "ae": "AEEncoder", "vae": "VAEEncoder"}
"""The class of the model of each deep method, in :mod:`galaxysim.nn`."""

_BLOCKWISE = (PixelFlatten, FrozenEstimator)  # applied to each block of images
_FITTED_ON_ROWS = (StandardScaler,)  # fitted on all the rows, then applied to them


def split_steps(recipe):
    """``(n_blockwise, fitted)``: the number of leading block-wise steps of ``recipe``
    and the names of the steps after them, fitted on the stored rows."""
    steps = recipe.steps[:-1]
    n = 0
    while n < len(steps) and isinstance(steps[n][1], _BLOCKWISE):
        n += 1
    rest = steps[n:]
    bad = [name for name, step in rest if not isinstance(step, _FITTED_ON_ROWS)]
    if n == 0 or bad:
        raise TypeError(
            f"A search index cannot store the recipe {[name for name, _ in recipe.steps]}: "
            f"its steps {bad or [steps[0][0]]} are neither block-wise nor fitted on rows."
        )
    return n, [name for name, _ in rest]


def prepare_steps(steps, image_shape):
    """Fit the block-wise steps that need it (``PixelFlatten`` learns the image shape)."""
    for _, step in steps.steps:
        if isinstance(step, PixelFlatten):
            step.fit(np.zeros((1, *image_shape), dtype=np.uint8))


def fitted_state(step):
    """JSON of a step's fitted attributes (arrays, numbers)."""
    state = {}
    for name, value in vars(step).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, np.ndarray):
            state[name] = {"array": value.tolist(), "dtype": value.dtype.str}
        elif isinstance(value, np.generic):
            state[name] = {"scalar": value.item(), "dtype": value.dtype.str}
        elif isinstance(value, bool | int | float | str) or value is None:
            state[name] = {"value": value}
        else:
            raise TypeError(f"Cannot store {type(step).__name__}.{name} ({type(value).__name__}).")
    return {"params": step.get_params(), "attributes": state}


def restore_state(step, state):
    """Set the fitted attributes saved by :func:`fitted_state` on a new ``step``."""
    if state["params"] != step.get_params():
        raise ValueError(
            f"its {type(step).__name__} was built with {state['params']}, this galaxysim's "
            f"recipe has {step.get_params()}"
        )
    for name, saved in state["attributes"].items():
        if "array" in saved:
            value = np.asarray(saved["array"], dtype=np.dtype(saved["dtype"]))
        elif "scalar" in saved:
            value = np.dtype(saved["dtype"]).type(saved["scalar"])
        else:
            value = saved["value"]
        setattr(step, name, value)
    return step
