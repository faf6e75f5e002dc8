"""Settings of the ``galaxysim`` process itself, made once at start by ``main()``, and
its standard output.

The library never changes process-wide state; the command owns its process and may.
"""

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 512 << 20
TRIM_THRESHOLD = 1 << 30
GLIBC_TUNABLES = (
    f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
)
"""The same thresholds as glibc tunables, for library users (set before Python starts)."""

_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def _user_configured_allocator(environ):
    """Whether the environment already configures malloc (or replaces it)."""
    if "malloc" in environ.get("GLIBC_TUNABLES", ""):
        return True
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in environ):
        return True  # glibc's MALLOC_*_ variables (MALLOC_ARENA_MAX_, MALLOC_TOP_PAD_, ...)
    return any(name in environ.get("LD_PRELOAD", "") for name in _OTHER_ALLOCATORS)


def _glibc():
    """glibc's handle, or None off Linux or with another C library (musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (defined by glibc only)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator(*, environ=None, libc=None):
    """Raise glibc's mmap and trim thresholds for the rest of the process.

    glibc serves allocations above its mmap threshold (which adapts up to 32 MiB) with
    fresh pages that the kernel zero-fills on first touch, and unmaps them on ``free``;
    the networks' largest activations exceed that ceiling, so without this every batch
    faults them in again. At 512 MiB (mmap) and 1 GiB (trim) freed activation buffers
    are reused instead. Any ``mallopt`` call also turns off glibc's dynamic threshold
    for the process, which is why only the command, never the library, makes it.

    Nothing is changed off Linux/glibc, when ``GLIBC_TUNABLES`` names a malloc
    tunable, when a ``MALLOC_*_`` variable is set, or when jemalloc, tcmalloc or
    mimalloc is preloaded.

    Parameters
    ----------
    environ : mapping, default=None
        The environment to consult; ``None`` means ``os.environ``.
    libc : object, default=None
        An object with glibc's ``mallopt``; ``None`` loads glibc (for tests).

    Returns
    -------
    tuned : bool
        Whether both thresholds were set.
    """
    environ = os.environ if environ is None else environ
    if _user_configured_allocator(environ):
        return False
    libc = _glibc() if libc is None else libc
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok)


SIGPIPE_EXIT = 128 + 13
"""The exit status of a command whose reader closed the pipe (what a shell shows for a
process killed by SIGPIPE)."""


class Stdout:
    """The command's standard output, which its reader may close (``galaxysim search |
    head -1``).

    The first write that finds the pipe closed (``BrokenPipeError``) marks the output
    ``closed``; later output is dropped, and, when the command owns the process
    (``own_process``), the process's stdout is pointed at ``os.devnull`` so that
    neither later writes nor the interpreter's last flush fail (as the Python
    documentation recommends, in its note on SIGPIPE in the ``signal`` module).

    Parameters
    ----------
    own_process : bool, default=False
        Whether the command runs as its own process (``main()`` without ``argv``).
    """

    def __init__(self, *, own_process=False):
        self.own_process = own_process
        self.closed = False

    def print(self, *values):
        """``print(*values)`` to ``sys.stdout``, unless its reader has gone."""
        if self.closed:
            return
        try:
            print(*values)
        except BrokenPipeError:
            self._close()

    def flush(self):
        """Flush ``sys.stdout`` (a closed pipe shows here when the output was buffered)."""
        if self.closed:
            return
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            self._close()

    def _close(self):
        self.closed = True
        if not self.own_process:
            return
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
