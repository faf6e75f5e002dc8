"""Images in and out of torch: validation, the channels-first conversion, batched inference.

The only place where galaxysim goes channels-first.
"""

import math

import numpy as np
import torch

from galaxysim.nn._runtime import autocast
from galaxysim.utils.validation import check_image_shape, check_images

SIZE_MULTIPLE = 16
"""Image height and width must be multiples of this (four 2x poolings)."""

INFER_BATCH_SIZE = 48
"""Images per forward pass at inference in float32. At 64x64 the largest activation of
48 images (48 x 32 x 64 x 64 float32, 24 MiB) stays under glibc's 32 MiB ceiling for
reusing freed memory, so inference does not page-fault fresh ``mmap`` pages every batch
whatever the process's allocator settings (see the benchmarks page)."""

BF16_INFER_BATCH_SIZE = 1024
"""Images per forward pass at inference under bfloat16 autocast (larger batches pay off
there: fewer per-call casts and reorders)."""

MEMORY_FORMAT = torch.channels_last
"""Memory format of the networks' weights and inputs (channels-last: oneDNN's preferred
layout for convolutions on the CPU)."""


def check_nn_images(X, *, name="X", image_shape=None):
    """Validate images for a network: ``check_images`` plus sizes that are multiples of 16.

    Parameters
    ----------
    X : array-like
        Images ``(n, H, W, C)`` (or one image), uint8 or float in [0, 1].
    name : str, default="X"
        Name used in error messages.
    image_shape : tuple of int, default=None
        ``(H, W, C)`` seen in ``fit``; other shapes raise (see ``check_image_shape``).

    Returns
    -------
    X : ndarray of shape (n_samples, height, width, n_channels)
        ``uint8`` or ``float32``.

    Examples
    --------
    >>> import numpy as np
    >>> check_nn_images(np.zeros((2, 16, 16, 3), np.uint8)).shape
    (2, 16, 16, 3)
    >>> check_nn_images(np.zeros((2, 30, 30, 3), np.uint8))
    Traceback (most recent call last):
    ...
    ValueError: X images are 30x30 pixels; the networks need ... multiples of 16 ...
    """
    X = check_images(X, name=name)
    if image_shape is not None:
        check_image_shape(X, image_shape, name=name)
        return X
    h, w = X.shape[1:3]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        down = max(SIZE_MULTIPLE, (min(h, w) // SIZE_MULTIPLE) * SIZE_MULTIPLE)
        up = int(math.ceil(max(h, w) / SIZE_MULTIPLE)) * SIZE_MULTIPLE
        raise ValueError(
            f"{name} images are {h}x{w} pixels; the networks need a height and width that "
            f"are multiples of {SIZE_MULTIPLE} (16, 32, 48, 64, ...). Crop or resize them "
            f"first, for example with galaxysim.preprocessing.CenterCrop(size={down}) or "
            f"Resize(output_size={up})."
        )
    return X


def images_to_tensor(X, device="cpu"):
    """Convert channels-last images to a float32 ``(N, C, H, W)`` tensor in [0, 1].

    This is the only conversion to channels-first in galaxysim. The result is a
    permuted view of the channels-last data, i.e. a tensor in ``torch.channels_last``
    memory format, which is what oneDNN convolutions prefer on CPU.

    Parameters
    ----------
    X : ndarray or Tensor of shape (n_samples, height, width, n_channels)
        ``uint8`` (0-255) or float (0-1) images.
    device : str or torch.device, default="cpu"
        Where to put the tensor; the uint8 batch is moved before conversion.

    Returns
    -------
    tensor : Tensor of shape (n_samples, n_channels, height, width)

    Examples
    --------
    >>> import numpy as np
    >>> t = images_to_tensor(np.full((1, 2, 2, 3), 255, np.uint8))
    >>> tuple(t.shape), t.dtype, float(t.max())
    ((1, 3, 2, 2), torch.float32, 1.0)
    """
    t = torch.as_tensor(X)
    t = t.to(device, non_blocking=True)
    t = t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()
    return t.permute(0, 3, 1, 2)


def tensor_to_images(t):
    """Convert ``(N, C, H, W)`` floats in [0, 1] to uint8 channels-last numpy images."""
    t = t.detach().float().clamp(0.0, 1.0).mul(255.0).round_()
    return t.permute(0, 2, 3, 1).to("cpu", torch.uint8).numpy()


def inference(module, X, fn, *, device="cpu", batch_size=INFER_BATCH_SIZE, precision="float32"):
    """Apply ``fn(module, batch_tensor)`` to ``X`` in batches, in eval and inference mode.

    Parameters
    ----------
    module : torch.nn.Module
        The fitted network; it is put in eval mode.
    X : ndarray of shape (n_samples, height, width, n_channels)
        Validated images.
    fn : callable
        ``fn(module, x)`` returning a tensor with one row per image.
    device : str, default="cpu"
        Where ``module`` lives.
    batch_size : int, default=48
        Images per forward pass; results do not depend on it beyond float rounding.
    precision : {"float32", "bfloat16"}, default="float32"
        ``"bfloat16"`` runs ``fn`` under bfloat16 autocast; results come back float32.

    Returns
    -------
    out : ndarray
        The concatenated results, float32 unless ``fn`` returns another dtype.
    """
    module.eval()
    out = []
    with torch.inference_mode(), autocast(device, precision):
        for start in range(0, len(X), batch_size):
            xb = images_to_tensor(np.ascontiguousarray(X[start : start + batch_size]), device)
            res = fn(module, xb)
            if res.is_floating_point():
                res = res.float()
            out.append(res.cpu().numpy())
    return np.concatenate(out, axis=0)
