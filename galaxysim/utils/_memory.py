"""Memory checks before large allocations: a clear message instead of a bare MemoryError."""

import os

__all__ = ["InsufficientMemoryError", "available_memory", "check_memory", "format_bytes"]


class InsufficientMemoryError(MemoryError, ValueError):
    """An array would not fit in memory: catchable as MemoryError or ValueError."""


def format_bytes(n):
    """``n`` bytes in a human unit (decimal prefixes).

    Examples
    --------
    >>> format_bytes(12_288), format_bytes(3.5e9), format_bytes(1.2e16)
    ('12.3 kB', '3.5 GB', '12000.0 TB')
    """
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _meminfo():
    """``MemAvailable + SwapFree`` from ``/proc/meminfo`` (Linux), or None."""
    try:
        with open("/proc/meminfo") as f:
            info = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f)}
    except (OSError, ValueError, IndexError):
        return None
    if "MemAvailable" not in info:
        return None
    return info["MemAvailable"] + info.get("SwapFree", 0)


def _cgroup_headroom():
    """What the cgroup v2 memory limit still allows, page cache counted as free, or None."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            current = int(f.read())
        with open("/sys/fs/cgroup/memory.stat") as f:
            stat = dict(line.split() for line in f)
        # page cache is reclaimed under the limit, except shared memory (tmpfs)
        reclaimable = int(stat.get("file", 0)) - int(stat.get("shmem", 0))
        return max(0, int(limit) - current + reclaimable)
    except (OSError, ValueError):
        return None


def available_memory():
    """Bytes a new allocation can take now, or None when the OS does not tell.

    On Linux, the kernel's estimate ``MemAvailable`` (free memory plus reclaimable
    page cache) plus free swap, capped by the cgroup (container) limit; elsewhere
    ``psutil`` when installed, else the physical memory size (so that no size that
    could fit is refused).

    Returns
    -------
    nbytes : int or None

    Examples
    --------
    >>> n = available_memory()
    >>> n is None or n > 0
    True
    """
    avail = _meminfo()
    if avail is None:
        try:
            import psutil

            avail = psutil.virtual_memory().available + psutil.swap_memory().free
        except (ImportError, OSError, RuntimeError):
            try:
                avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError, AttributeError):
                return None
    cgroup = _cgroup_headroom()
    return avail if cgroup is None else min(avail, cgroup)


def check_memory(nbytes, what, *, per_item=None, hint=""):
    """Raise a clear error when ``nbytes`` more bytes do not fit in memory.

    Parameters
    ----------
    nbytes : int
        Bytes about to be allocated.
    what : str
        What needs them, as the start of the message (``"make_galaxies(n_samples=...)"``).
    per_item : (int, str) or None, default=None
        Bytes per item and the items' name (``(12288, "images")``): the message then
        says how many items would fit.
    hint : str, default=""
        How to fix it, appended to the message.

    Raises
    ------
    InsufficientMemoryError
        Also a ``MemoryError`` and a ``ValueError``.

    Examples
    --------
    >>> check_memory(1000, "a small array")
    >>> try:
    ...     check_memory(10**20, "a huge array")
    ... except MemoryError as exc:
    ...     print(str(exc).split(", but")[0])
    a huge array would take 100000000.0 TB of memory
    """
    avail = available_memory()
    if avail is not None and nbytes > avail:
        fit = ""
        if per_item is not None:
            fit = f" (room for about {avail // per_item[0]:,} {per_item[1]})"
        raise InsufficientMemoryError(
            f"{what} would take {format_bytes(nbytes)} of memory, but only "
            f"{format_bytes(avail)} is available{fit}.{' ' + hint if hint else ''}"
        )
