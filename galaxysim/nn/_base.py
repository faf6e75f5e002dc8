"""Shared machinery of the torch estimators.

Image conversion (the only place where galaxysim goes channels-first), device
resolution, seeding through :func:`torch.random.fork_rng`, thread and allocator control,
batched inference, dihedral augmentation, class-balanced sampling, and the private skorch
subclass every estimator builds in ``fit``.
"""

import contextlib
import ctypes
import math
import numbers
import os
import sys
import threading

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from skorch.utils import to_tensor

from galaxysim.utils._progress import progress
from galaxysim.utils.validation import check_image_shape, check_images

__all__ = [
    "augment_dihedral",
    "autocast",
    "dihedral_mean",
    "check_nn_images",
    "check_precision",
    "images_to_tensor",
    "inference",
    "malloc_tuned",
    "resolve_device",
    "seeded",
    "torch_threads",
]

SIZE_MULTIPLE = 16
"""Image height and width must be multiples of this (four 2x poolings)."""

INFER_BATCH_SIZE = 128
"""Images per forward pass at inference (measured in ``benchmarks/bench_nn.py``)."""

CHANNELS_LAST = True
"""Run convolutions in channels-last memory format (faster on CPU with oneDNN)."""

PRECISIONS = ("float32", "bfloat16")
"""Values of the estimators' ``precision`` parameter."""

BF16_INFER_BATCH_SIZE = 1024
"""Images per forward pass at inference under bfloat16 autocast (larger batches pay off
there: fewer per-call casts and reorders; measured in ``benchmarks/bench_nn.py``)."""


RUNTIME_PARAMS_DOC = """
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to train; ``"auto"`` uses a GPU when one is available.
    n_threads : int, default=None
        Torch threads during fit and inference; ``None`` keeps torch's setting.
    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the forward passes in training and inference. ``"bfloat16"`` runs
        them under ``torch.autocast`` (weights, gradients and the Adam state stay
        float32; outputs are returned as float32): 1.2-1.5x faster on CPUs with
        AVX512-BF16 or AMX and on recent GPUs. The CNN's accuracy on ``make_galaxies``
        stayed within a point of float32's over three seeds (see the benchmarks page).
        On a CPU without native bfloat16 it still runs, only slower than float32.
        Results are deterministic for a given ``random_state`` in both precisions but
        differ between them."""
"""numpydoc entries of ``device``, ``n_threads`` and ``precision``, shared by the estimators."""


# ---------------------------------------------------------------------------------------
# images, devices, seeds, threads


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
    t = t.permute(0, 3, 1, 2)
    if not CHANNELS_LAST:
        t = t.contiguous()
    return t


def tensor_to_images(t):
    """Convert ``(N, C, H, W)`` floats in [0, 1] to uint8 channels-last numpy images."""
    t = t.detach().float().clamp(0.0, 1.0).mul(255.0).round_()
    return t.permute(0, 2, 3, 1).to("cpu", torch.uint8).numpy()


def resolve_device(device):
    """Resolve ``"cpu"``, ``"cuda"`` (``"cuda:N"``) or ``"auto"`` to a device string.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` picks CUDA when available, else the CPU.

    Returns
    -------
    device : str

    Raises
    ------
    RuntimeError
        ``"cuda"`` was asked for and no CUDA GPU is usable.

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto'; got {device!r}.")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={device!r} was requested but no CUDA GPU is available to torch "
                f"{torch.__version__} (torch.cuda.is_available() is False). Use device='cpu' "
                "or device='auto', or install a CUDA build of torch on a machine with a GPU."
            )
        return device
    if device == "cpu":
        return device
    raise ValueError(f"device must be 'cpu', 'cuda' or 'auto'; got {device!r}.")


def seed_from(random_state):
    """An int seed for torch from a sklearn-style ``random_state``."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state) % (2**63)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


@contextlib.contextmanager
def seeded(seed, device="cpu"):
    """Seed torch inside :func:`torch.random.fork_rng`: the caller's RNG state is untouched.

    Examples
    --------
    >>> import torch
    >>> with seeded(0):
    ...     a = torch.rand(1)
    >>> with seeded(0):
    ...     b = torch.rand(1)
    >>> bool(a == b)
    True
    """
    devices = []
    if str(device).startswith("cuda"):
        dev = torch.device(device)
        devices = [dev.index if dev.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def torch_threads(n_threads):
    """Set torch's intra-op threads for a block and restore them afterwards.

    ``None`` leaves torch's setting alone; ``-1`` uses every core.
    """
    if n_threads is None:
        yield
        return
    if n_threads == -1:
        import os

        n_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if not isinstance(n_threads, numbers.Integral) or n_threads < 1:
        raise ValueError(f"n_threads must be None, -1 or a positive int; got {n_threads!r}.")
    old = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


MALLOC_ENV = "GALAXYSIM_TUNE_MALLOC"
"""Set this environment variable to ``0`` to leave glibc's allocator settings alone."""

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_TUNED_MMAP_THRESHOLD = 512 << 20
_TUNED_TRIM_THRESHOLD = 1 << 30
# where glibc's dynamic thresholds end up after large frees (DEFAULT_MMAP_THRESHOLD_MAX
# on 64-bit, and twice that): what is set back when the outermost block ends
_RESTORED_MMAP_THRESHOLD = 32 << 20
_RESTORED_TRIM_THRESHOLD = 64 << 20
_malloc_lock = threading.Lock()
_malloc_depth = 0


def _glibc_for_tuning():
    """glibc's handle when galaxysim may tune it, else None."""
    if not sys.platform.startswith("linux") or os.environ.get(MALLOC_ENV, "1") == "0":
        return None
    if "malloc" in os.environ.get("GLIBC_TUNABLES", "") or any(
        k.startswith("MALLOC_") and k.endswith("_") for k in os.environ
    ):
        return None  # the user configured glibc's allocator
    if any(a in os.environ.get("LD_PRELOAD", "") for a in ("jemalloc", "tcmalloc", "mimalloc")):
        return None  # another allocator replaces malloc
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only, not musl)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def malloc_tuned():
    """Let glibc reuse freed activation buffers instead of mapping fresh pages each batch.

    glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh
    ``mmap`` pages, which the kernel zero-fills on first touch, and gives them back on
    ``free``. A 64x64x32 float32 activation of a 64-image batch is 33.5 MB, so every
    batch page-faults its largest tensors in again: on a 2-core CPU that made the first
    convolution 4x slower and training 1.4x slower (``benchmarks/bench_nn.py``). Inside
    this block the mmap and trim thresholds are raised (512 MiB and 1 GiB) so those
    buffers are reused; when the outermost block ends they are set to where glibc's own
    dynamic thresholds end up after large frees (32 and 64 MiB) and ``malloc_trim(0)``
    returns the freed memory to the system. Measured on 2,048 images (CNN then AE, one
    epoch each): peak memory 852 MB instead of 754, memory held afterwards 483 MB
    instead of 655.

    Nothing is changed off Linux/glibc, when ``GALAXYSIM_TUNE_MALLOC=0``, when the user
    set glibc's ``MALLOC_*_`` variables or malloc tunables, or when jemalloc, tcmalloc
    or mimalloc is preloaded. Nested and concurrent blocks are counted.

    Examples
    --------
    >>> import numpy as np
    >>> with malloc_tuned():
    ...     a = np.ones((64, 64, 64, 32), np.float32)
    >>> a.nbytes
    33554432
    """
    global _malloc_depth
    libc = _glibc_for_tuning()
    if libc is None:
        yield
        return
    with _malloc_lock:
        if _malloc_depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, _TUNED_MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _TUNED_TRIM_THRESHOLD)
        _malloc_depth += 1
    try:
        yield
    finally:
        with _malloc_lock:
            _malloc_depth -= 1
            if _malloc_depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _RESTORED_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, _RESTORED_TRIM_THRESHOLD)
                libc.malloc_trim(0)


@contextlib.contextmanager
def compute_settings(n_threads):
    """``torch_threads(n_threads)`` and ``malloc_tuned()``: how the estimators run torch."""
    with torch_threads(n_threads), malloc_tuned():
        yield


def check_flag(value, name):
    """Raise a ValueError naming ``name`` unless ``value`` is a bool (numpy's too).

    Examples
    --------
    >>> check_flag(True, "augment")
    >>> check_flag("yes", "augment")
    Traceback (most recent call last):
    ...
    ValueError: augment must be True or False; got 'yes'.
    """
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False; got {value!r}.")


def check_precision(precision):
    """Validate the ``precision`` parameter of the torch estimators.

    Examples
    --------
    >>> check_precision("bfloat16")
    'bfloat16'
    >>> check_precision("float16")
    Traceback (most recent call last):
    ...
    ValueError: precision must be 'float32' or 'bfloat16'; got 'float16'...
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(
            f"precision must be 'float32' or 'bfloat16'; got {precision!r}. 'bfloat16' runs "
            "the forward passes under torch.autocast (about 1.5x faster on CPUs with "
            "AVX512-BF16 or AMX); 'float32' is the exact default."
        )
    return precision


def autocast(device, precision):
    """Context manager: ``torch.autocast`` to bfloat16 on ``device``, or nothing for float32.

    On a CPU without native bfloat16 instructions autocast still works, only slower.

    Examples
    --------
    >>> import torch
    >>> with autocast("cpu", "bfloat16"):
    ...     y = torch.nn.Linear(2, 2)(torch.ones(1, 2))
    >>> y.dtype
    torch.bfloat16
    >>> with autocast("cpu", "float32"):
    ...     y = torch.nn.Linear(2, 2)(torch.ones(1, 2))
    >>> y.dtype
    torch.float32
    """
    if precision == "bfloat16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_float32(out):
    """Cast the floating tensors of a (nested tuple of) tensor(s) to float32."""
    if isinstance(out, (tuple, list)):
        return type(out)(to_float32(o) for o in out)
    if isinstance(out, torch.Tensor) and out.is_floating_point():
        return out.float()
    return out


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
    batch_size : int, default=256
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
        out = fn(v.contiguous(memory_format=torch.channels_last) if CHANNELS_LAST else v)
        total = out.float() if total is None else total + out.float()
    return total / n_ops


# ---------------------------------------------------------------------------------------
# skorch plumbing (private)


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


class _ArrayIterator:
    """Batches by fancy indexing of the in-memory arrays (no per-image ``__getitem__``).

    Handles a skorch ``Dataset`` or a ``torch.utils.data.Subset`` of one. With
    ``balanced=True`` each epoch draws ``len(dataset)`` indices with
    :func:`balanced_order`, an equal share per class (a class-balanced sampler).
    Batches are raw (uint8 or float32, channels-last) tensors; the net converts them.
    """

    def __init__(self, dataset, batch_size=64, shuffle=False, balanced=False):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.balanced = balanced

    def _arrays(self):
        ds = self.dataset
        if isinstance(ds, torch.utils.data.Subset):
            idx = np.asarray(ds.indices)
            ds = ds.dataset
        else:
            idx = np.arange(len(ds))
        return ds.X, ds.y, idx

    def __len__(self):
        return max(1, math.ceil(len(self.dataset) / self.batch_size))

    def __iter__(self):
        X, y, idx = self._arrays()
        n = len(idx)
        if self.balanced and y is not None:
            order = balanced_order(np.asarray(y)[idx])
        elif self.shuffle:
            order = torch.randperm(n).numpy()
        else:
            order = np.arange(n)
        for start in range(0, n, self.batch_size):
            b = idx[order[start : start + self.batch_size]]
            if self.shuffle or self.balanced:
                b = np.sort(b)  # memory locality; the batch is a set
            Xb = torch.from_numpy(np.ascontiguousarray(X[b]))
            yb = None if y is None else torch.from_numpy(np.asarray(y)[b])
            yield Xb, yb


class _IndexSplit:
    """skorch ``train_split`` with precomputed train/validation indices."""

    def __init__(self, train_idx, valid_idx):
        self.train_idx = train_idx
        self.valid_idx = valid_idx

    def __call__(self, dataset, y=None, **kwargs):
        Subset = torch.utils.data.Subset
        return Subset(dataset, self.train_idx), Subset(dataset, self.valid_idx)


class _EpochProgress(Callback):
    """One progress bar over epochs (galaxysim's progress helper) showing the losses."""

    def __init__(self, desc="training", verbose=1):
        self.desc = desc
        self.verbose = verbose

    def initialize(self):
        self.bar_ = None
        return self

    def on_train_begin(self, net, **kwargs):
        self.bar_ = progress(
            total=net.max_epochs, desc=self.desc, verbose=self.verbose, unit="epoch"
        )

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        keys = ("train_loss", "valid_loss", "train_acc", "valid_acc")
        self.bar_.set_postfix({k: f"{row[k]:.4g}" for k in keys if k in row}, refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        if self.bar_ is not None:
            self.bar_.close()
        self.bar_ = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["bar_"] = None
        return state


class _GalaxyNet(NeuralNet):
    """NeuralNet that converts raw image batches, augments them in training, runs the
    forward pass in ``precision`` (bfloat16 autocast; weights, gradients, optimizer and
    the returned outputs stay float32), and records accuracy when ``record_accuracy``
    is set."""

    def __init__(self, *args, augment=False, record_accuracy=False, precision="float32", **kwargs):
        super().__init__(*args, **kwargs)
        self.augment = augment
        self.record_accuracy = record_accuracy
        self.precision = precision

    def forward_module(self, x, **fit_params):
        """The module's forward pass, under autocast for bfloat16, with float32 outputs."""
        precision = getattr(self, "precision", "float32")  # nets pickled before it existed
        if precision == "float32":
            return self.module_(x, **fit_params)
        with autocast(self.device, precision):
            out = self.module_(x, **fit_params)
        return to_float32(out)

    def prepare_batch(self, x):
        x = to_tensor(x, device=self.device)
        if self.augment and self.module_.training:
            x = augment_dihedral(x)
        return images_to_tensor(x, self.device)

    def infer(self, x, **fit_params):
        return self.forward_module(self.prepare_batch(x), **fit_params)

    def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
        if self.record_accuracy and y_pred is not None:
            y_true = batch[1].cpu()
            hit = y_pred.detach().argmax(1).cpu() == y_true
            n_classes = y_pred.shape[1]
            prefix = "train" if training else "valid"
            # per-class hits and counts, for the epoch's accuracy and balanced accuracy
            self.history.record_batch(
                prefix + "_class_correct",
                torch.bincount(y_true[hit], minlength=n_classes).tolist(),
            )
            self.history.record_batch(
                prefix + "_class_count", torch.bincount(y_true, minlength=n_classes).tolist()
            )

    def on_epoch_end(self, net, **kwargs):
        if not self.record_accuracy:
            return
        batches = self.history[-1, "batches"]
        for prefix in ("train", "valid"):
            rows = [b for b in batches if prefix + "_class_count" in b]
            if rows:
                correct = np.sum([b[prefix + "_class_correct"] for b in rows], axis=0)
                count = np.sum([b[prefix + "_class_count"] for b in rows], axis=0)
                present = count > 0
                self.history.record(prefix + "_acc", float(correct.sum() / count.sum()))
                self.history.record(
                    prefix + "_bacc", float(np.mean(correct[present] / count[present]))
                )


class _AENet(_GalaxyNet):
    """Autoencoder net: the target is the (augmented) input itself."""

    def infer(self, x, **fit_params):
        x = self.prepare_batch(x)
        return self.forward_module(x, **fit_params), x

    def get_loss(self, y_pred, y_true, X=None, training=False):
        recon, target = y_pred
        return torch.nn.functional.mse_loss(recon, target)


class _VAENet(_AENet):
    """VAE net: per-image summed squared error plus ``beta`` times the KL divergence."""

    def __init__(self, *args, beta=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.beta = beta

    def get_loss(self, y_pred, y_true, X=None, training=False):
        (recon, mean, logvar), target = y_pred
        n = target.shape[0]
        sse = (recon - target).pow(2).sum() / n
        kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum() / n
        return sse + self.beta * kl


# ---------------------------------------------------------------------------------------
# estimator base


class _TorchImageEstimator(BaseEstimator):
    """Fit scaffolding shared by the galaxysim torch estimators (private)."""

    _progress_desc = "training"

    _PARAMS_ADDED_LATER = {"precision": "float32"}
    """Parameters added after models were first saved, each with the value that an
    estimator pickled before it behaves as (filled in on unpickling)."""

    def __setstate__(self, state):
        for name, value in self._PARAMS_ADDED_LATER.items():
            state.setdefault(name, value)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.non_deterministic = False
        return tags

    def _check_common_params(self):
        for name in ("max_epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}.")
        if not (isinstance(self.lr, numbers.Real) and self.lr > 0):
            raise ValueError(f"lr must be a positive number; got {self.lr!r}.")
        vf = self.validation_fraction
        if vf is not None and not (0 <= vf < 1):
            raise ValueError(f"validation_fraction must be None or in [0, 1); got {vf!r}.")
        check_precision(self.precision)

    def _precision(self):
        return check_precision(self.precision)

    def _split(self, n, stratify, seed):
        vf = self.validation_fraction
        n_valid = int(math.ceil(n * vf)) if vf else 0
        if n_valid == 0 or n - n_valid < 1:
            return None
        idx = np.arange(n)
        try:
            tr, va = train_test_split(
                idx, test_size=n_valid, random_state=seed % 2**32, stratify=stratify
            )
        except ValueError:  # a class too small to stratify: plain random split
            tr, va = train_test_split(idx, test_size=n_valid, random_state=seed % 2**32)
        return _IndexSplit(np.sort(tr), np.sort(va))

    def _fit_net(
        self,
        X,
        y,
        *,
        net_cls,
        module,
        module_params,
        criterion=None,
        stratify=None,
        balanced=False,
        net_params=None,
        module_init=None,
        restore_best=None,
        one_cycle=False,
    ):
        """Build and train the skorch net; ``restore_best`` names a validation score
        (higher is better) whose best epoch's weights are kept instead of the last's
        (``False``: the last epoch's, still recording ``best_epoch_``); ``one_cycle``
        schedules the learning rate per batch with torch's ``OneCycleLR`` peaking at
        ``lr``."""
        self._check_common_params()
        device = resolve_device(self.device)
        seed = seed_from(self.random_state)
        split = self._split(len(X), stratify, seed)
        callbacks = []
        if self.verbose:
            callbacks.append(("progress", _EpochProgress(self._progress_desc, self.verbose)))
        if restore_best and split is not None:
            # skorch's early stopping with a patience it never reaches: it only keeps a
            # copy of the best epoch's weights and loads them when training ends
            keep_best = EarlyStopping(
                monitor=restore_best,
                lower_is_better=False,
                patience=self.max_epochs + 1,
                threshold=0,
                load_best=True,  # says so with skorch's epoch table (verbose >= 2)
            )
            callbacks.append(("restore_best", keep_best))
        if one_cycle:
            n_train = len(X) if split is None else len(split.train_idx)
            schedule = LRScheduler(
                policy=torch.optim.lr_scheduler.OneCycleLR,
                max_lr=self.lr,
                total_steps=self.max_epochs * math.ceil(n_train / self.batch_size),
                step_every="batch",
            )
            callbacks.append(("lr_schedule", schedule))
        params = {f"module__{k}": v for k, v in module_params.items()}
        params.update(net_params or {})
        params["precision"] = self.precision
        net = net_cls(
            module,
            criterion=criterion or torch.nn.MSELoss,  # the AE nets compute their own loss
            optimizer=torch.optim.Adam,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train=_ArrayIterator,
            iterator_train__shuffle=True,
            iterator_train__balanced=balanced,
            iterator_valid=_ArrayIterator,
            train_split=split,
            device=device,
            verbose=max(0, int(self.verbose) - 1),  # skorch's epoch table at verbose >= 2
            callbacks=callbacks,
            **params,
        )
        with seeded(seed, device), compute_settings(self.n_threads):
            net.initialize()
            if module_init is not None:
                module_init(net.module_)
            if CHANNELS_LAST:
                net.module_.to(memory_format=torch.channels_last)
            net.partial_fit(X, y)  # fit() would re-initialize the module
        net.train_split = None  # holds only indices, but they mean nothing after fit
        net.module_.eval()
        self.net_ = net
        if restore_best is not None:
            self.best_epoch_ = len(net.history)
            if restore_best and split is not None:
                keep_best = dict(net.callbacks_)["restore_best"]
                if keep_best.best_epoch_:  # 0: no finite score, the last epoch was kept
                    self.best_epoch_ = int(keep_best.best_epoch_)
                keep_best.best_model_weights_ = None  # the module holds them; don't pickle twice
        keep = (
            "epoch",
            "train_loss",
            "train_acc",
            "train_bacc",
            "valid_loss",
            "valid_acc",
            "valid_bacc",
            "dur",
        )
        self.history_ = [
            {k: (int(row[k]) if k == "epoch" else float(row[k])) for k in keep if k in row}
            for row in net.history
        ]
        return self

    def _infer(self, X, fn, batch_size=None):
        check_is_fitted(self, "net_")
        precision = self._precision()
        if batch_size is None:
            batch_size = INFER_BATCH_SIZE if precision == "float32" else BF16_INFER_BATCH_SIZE
        with compute_settings(self.n_threads):
            return inference(
                self.net_.module_,
                X,
                fn,
                device=self.net_.device,
                batch_size=batch_size,
                precision=precision,
            )

    def _validate_fitted(self, X, name="X"):
        check_is_fitted(self, "net_")
        return check_nn_images(X, name=name, image_shape=self.image_shape_)
