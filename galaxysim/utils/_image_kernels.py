"""Compiled image kernels, imported lazily so that importing galaxysim stays quick."""

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def block_mean(X, fh, fw, out, is_int):  # pragma: no cover - compiled
    """Area average over ``fh`` x ``fw`` blocks; integer output (``is_int``) rounds half up."""
    n, oh, ow, c = out.shape
    area = fh * fw
    for i in prange(n):
        for y in range(oh):
            for x in range(ow):
                for ch in range(c):
                    acc = 0.0
                    for dy in range(fh):
                        for dx in range(fw):
                            acc += X[i, y * fh + dy, x * fw + dx, ch]
                    if is_int:
                        out[i, y, x, ch] = (np.int64(acc) * 2 + area) // (2 * area)
                    else:
                        out[i, y, x, ch] = acc / area
