"""``n_jobs`` of the estimators: joblib's meaning for numbers, ``None`` for the pool's own setting.

The image-folder loader, which reads files in a ``joblib.Parallel``, keeps joblib's own
meaning of ``None`` (one job, unless a ``joblib.parallel_config`` says otherwise).
"""

import os
from numbers import Integral

__all__ = ["N_JOBS_DOC", "effective_n_threads"]

N_JOBS_DOC = """n_jobs : int, default=None
        Threads to use, with joblib's meaning for numbers: ``-1`` all cores, ``-2``
        all but one, and so on. ``None`` leaves the thread pools as they are
        configured (torch and numba use every core unless told otherwise)."""
"""numpydoc entry of ``n_jobs`` of the estimators that run thread pools (torch, numba)."""


def _n_cores():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def effective_n_threads(n_jobs, *, limit=None):
    """Threads for ``n_jobs``: ``None`` stays ``None`` (the pool's own setting).

    Parameters
    ----------
    n_jobs : int or None
        ``None``, a positive int, or a negative int counted back from the number
        of cores (``-1``: all of them).
    limit : int, default=None
        Upper bound (a pool's size).

    Returns
    -------
    n_threads : int or None

    Examples
    --------
    >>> effective_n_threads(None) is None
    True
    >>> effective_n_threads(3, limit=2)
    2
    >>> effective_n_threads(0)
    Traceback (most recent call last):
    ...
    ValueError: n_jobs must be None or a non-zero int; got 0.
    """
    if n_jobs is None:
        return None
    if not isinstance(n_jobs, Integral) or isinstance(n_jobs, bool) or n_jobs == 0:
        raise ValueError(f"n_jobs must be None or a non-zero int; got {n_jobs!r}.")
    n = int(n_jobs) if n_jobs > 0 else max(1, _n_cores() + 1 + int(n_jobs))
    return n if limit is None else max(1, min(n, limit))
