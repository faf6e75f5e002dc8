"""Orientation: dihedral augmentation and averaging; class-balanced sampling."""

import numpy as np
import torch

from galaxysim.nn._tensors import MEMORY_FORMAT


def augment_dihedral(x):
    """Random flips and 90-degree rotations, one of 8 per image, of ``(N, H, W, C)`` images.

    Galaxy morphology does not depend on orientation, so the 8 symmetries of the square
    are label-preserving. Non-square images get flips only.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(8, dtype=torch.uint8).reshape(2, 2, 2, 1)
    >>> augment_dihedral(x).sort(dim=0)[0].shape
    torch.Size([2, 2, 2, 1])
    """
    n, h, w = x.shape[:3]
    n_ops = _n_dihedral(h, w)
    ops = torch.randint(0, n_ops, (n,), device=x.device)
    out = torch.empty_like(x)
    for op in range(n_ops):
        idx = (ops == op).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        out[idx] = _dihedral_view(x[idx], op, dims=(1, 2))
    return out


def _n_dihedral(h, w):
    """Orientations of an ``h`` x ``w`` image: 8 symmetries of a square, 4 flips else."""
    return 8 if h == w else 4


def _dihedral_view(x, op, dims):
    """Orientation ``op`` (``0 .. _n_dihedral - 1``) of ``x`` over its (height, width) ``dims``.

    Square: ops 0-3 rotate by ``op`` quarter turns, 4-7 flip left-right first.
    Otherwise: bit 0 flips left-right, bit 1 upside down.
    """
    h_dim, w_dim = dims
    if x.shape[h_dim] == x.shape[w_dim]:
        if op >= 4:
            x = x.flip(w_dim)
        return torch.rot90(x, op % 4, dims=dims)
    if op & 1:
        x = x.flip(w_dim)
    if op & 2:
        x = x.flip(h_dim)
    return x


def dihedral_mean(fn, x):
    """Mean of ``fn`` over the 8 flips and 90-degree rotations of a ``(N, C, H, W)`` batch.

    The result is the same for every orientation of an image (up to float rounding): the
    8 views of a rotated image are the 8 views of the original. Non-square images get
    their 4 flips.

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(1, 1, 4, 4)
    >>> fn = lambda t: t[:, :, 0, :2].flatten(1)  # a corner: depends on orientation
    >>> a, b = dihedral_mean(fn, x), dihedral_mean(fn, torch.rot90(x, 1, dims=(2, 3)))
    >>> bool(torch.allclose(a, b))
    True
    """
    n_ops = _n_dihedral(*x.shape[2:])
    total = None
    for op in range(n_ops):
        v = _dihedral_view(x, op, dims=(2, 3))
        out = fn(v.contiguous(memory_format=MEMORY_FORMAT))
        total = out.float() if total is None else total + out.float()
    return total / n_ops


def balanced_order(y):
    """One epoch of class-balanced sampling: positions into ``y``, shuffled.

    Each class present gets an equal share of ``len(y)`` draws (the remainder to
    randomly chosen classes). A class with more images than its share contributes a
    random subset without repeats; a rarer one all its images, repeated as evenly as
    the share allows. Unlike independent draws with replacement, a balanced catalogue
    is then seen whole every epoch, and a rare class's images equally often.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([0] * 6 + [1] * 2)
    >>> order = balanced_order(y)
    >>> np.bincount(y[order]).tolist(), np.bincount(order, minlength=8)[6:].tolist()
    ([4, 4], [2, 2])
    """
    classes, inverse = np.unique(y, return_inverse=True)
    n, k = len(y), len(classes)
    share = np.full(k, n // k)
    share[torch.randperm(k)[: n % k].numpy()] += 1
    parts = []
    for c in range(k):
        members = np.flatnonzero(inverse == c)
        repeats, rest = divmod(int(share[c]), len(members))
        parts += [members[torch.randperm(len(members)).numpy()] for _ in range(repeats)]
        parts.append(members[torch.randperm(len(members))[:rest].numpy()])
    order = np.concatenate(parts)
    return order[torch.randperm(len(order)).numpy()]
