"""How the estimators run torch: device, seeding, threads, allocator, precision."""

import contextlib
import ctypes
import numbers
import os
import sys
import threading

import numpy as np
import torch
from sklearn.utils import check_random_state

PRECISIONS = ("float32", "bfloat16")
"""Values of the estimators' ``precision`` parameter."""


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
