"""How the estimators run torch: device, seeding, threads, precision."""

import contextlib
import numbers

import torch
from sklearn.utils import check_random_state

from galaxysim.utils._threads import N_JOBS_DOC, effective_n_threads

PRECISIONS = ("float32", "bfloat16")
"""Values of the estimators' ``precision`` parameter."""


RUNTIME_PARAMS_DOC = (
    """
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to train; ``"auto"`` uses a GPU when one is available (``"cuda:N"``
        names one GPU).
    """
    + N_JOBS_DOC
    + """
        Here: torch's intra-op threads, set for the duration of each call (``fit``,
        ``transform``, ``predict``, ...) and restored afterwards. The thread count
        changes how torch splits its sums, so the same ``random_state`` gives a
        bitwise identical model only with the same number of threads (``n_jobs=1``
        and ``n_jobs=2`` give weights that differ in their last bits, about 1e-7
        after one epoch), on the same kind of CPU, with the same torch version.
        ``None`` follows torch's setting, by default every core of the machine:
        give an int for training runs that repeat on other machines.
    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the forward passes in training and inference. ``"bfloat16"`` runs
        them under ``torch.autocast`` (weights, gradients and the Adam state stay
        float32; outputs are returned as float32): faster on CPUs with AVX512-BF16 or
        AMX and on recent GPUs, slower than float32 on a CPU without native bfloat16
        (see the benchmarks page for speed and accuracy). Results repeat for a given
        ``random_state`` (and thread count, see ``n_jobs``) in both precisions but
        differ between them."""
)
"""numpydoc entries of ``device``, ``n_jobs`` and ``precision``, shared by the estimators."""


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
        # seed only the generators that fork_rng restores (torch.manual_seed would
        # also reseed every other CUDA device's, for good)
        torch.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(devices[0]):
                torch.cuda.manual_seed(seed)
        yield


@contextlib.contextmanager
def torch_threads(n_jobs):
    """Set torch's intra-op threads for a block from ``n_jobs`` and restore them afterwards.

    ``None`` leaves torch's setting alone; numbers have joblib's meaning (``-1``: every
    core).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    n_threads = effective_n_threads(n_jobs)
    if n_threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


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
