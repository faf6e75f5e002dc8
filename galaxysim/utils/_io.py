"""Atomic file writes: a reader never sees a half-written file."""

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path

try:  # POSIX: temporary files are locked by their writer, so stale ones can be told apart
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path`` and move it into place on success.

    If the block raises (or the process is killed), ``path`` keeps its previous
    content or stays absent; the temporary file is removed, or, when the process was
    killed, by the next ``atomic_write`` to the same ``path``.

    The temporary file ``.{name}.XXXXXXXX.part`` is locked (``flock``) by its writer
    until it is renamed; temporary files of ``path`` whose lock can be taken belong to
    a writer that died and are deleted. A live writer's file, in this process or
    another, is never touched. Where ``fcntl`` is missing (Windows) or the file system
    has no locks, nothing is cleaned up.

    Parameters
    ----------
    path : str or path-like
        Destination file. Its directory is created if needed.
    mode : {"wb", "w"}, default="wb"
        Binary or text mode (text is written as UTF-8).

    Yields
    ------
    file : file object
        Write to this; it is flushed, fsynced and renamed onto ``path`` on exit.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_write(os.path.join(d, "a.txt"), mode="w") as f:
    ...     _ = f.write("hello")
    >>> open(os.path.join(d, "a.txt")).read()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _locked_temp(path)
    remove_stale_parts(path)
    # text is always UTF-8 (index.html declares it), whatever the locale
    encoding = None if "b" in mode else "utf-8"
    try:
        f = os.fdopen(fd, mode, encoding=encoding)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would
        os.chmod(tmp, 0o666 & ~_umask())
        if fcntl is None:
            f.close()  # Windows cannot rename an open file
        # renamed while still open, so the lock is held until the name is gone
        os.replace(tmp, path)
    except BaseException:
        if fcntl is None:
            with contextlib.suppress(OSError):
                f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        with contextlib.suppress(OSError):
            f.close()


def _part_pattern(path):
    # exactly what mkstemp makes below: .{name}.{random letters, digits, _}.part
    return re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]+\.part")


def _locked_temp(path):
    """Create the temporary file of ``path`` and hold an exclusive lock on it."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        if fcntl is None:
            return fd, tmp
        try:
            # blocks only while a cleanup holds it: between its creation and this line
            # another process may have taken the new file for a dead writer's
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # no locks on this file system: no cleanup either
            return fd, tmp
        try:
            if os.path.samestat(os.stat(tmp), os.fstat(fd)):
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)  # deleted by a cleanup before we locked it: make another


def remove_stale_parts(path):
    """Delete the temporary files of ``path`` left by ``atomic_write`` calls that died.

    A temporary file is stale when its writer's lock can be taken; files locked by a
    live writer, symlinks and anything that is not a regular file are left alone.

    Parameters
    ----------
    path : str or path-like
        The destination file whose ``.{name}.*.part`` siblings are examined.

    Returns
    -------
    removed : list of str
        The names removed.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> open(os.path.join(d, ".model.bin.abc123xy.part"), "wb").close()  # a dead writer's
    >>> remove_stale_parts(os.path.join(d, "model.bin")) == ([] if fcntl is None
    ...                                                    else [".model.bin.abc123xy.part"])
    True
    """
    if fcntl is None:
        return []
    path = Path(path)
    pattern = _part_pattern(path)
    removed = []
    try:
        prefix = f".{path.name}."
        entries = [
            e.name
            for e in os.scandir(path.parent)
            if e.name.startswith(prefix) and pattern.fullmatch(e.name)
        ]
    except OSError:
        return removed
    for name in entries:
        if _remove_if_unlocked(os.path.join(path.parent, name)):
            removed.append(name)
    return removed


def _remove_if_unlocked(part):
    try:
        if not stat.S_ISREG(os.lstat(part).st_mode):
            return False
        # O_NONBLOCK: never wait on a fifo swapped in under that name
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(part, flags)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer lives
        # still the file we locked, not a new one under a recycled name
        if not os.path.samestat(os.lstat(part), os.fstat(fd)):
            return False
        os.unlink(part)
        return True
    except OSError:  # locked (BlockingIOError), no lock support, gone, not ours to delete
        return False
    finally:
        os.close(fd)


def _umask():
    """The process's umask, read without changing it where the OS tells (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    # elsewhere the only way to read it is to set it; other threads may see 0o022
    # for that instant
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_regular_file(path, what="File"):
    """Return ``path`` as a ``Path`` if it names a regular file (symlinks followed), else raise.

    Checked with :func:`os.stat` before anything opens the path: opening a named pipe
    (FIFO) for reading blocks until some other process writes to it, and a device or
    socket is not a data file.

    Parameters
    ----------
    path : str or path-like
        The path to check.
    what : str, default="File"
        What the file is, starting the error messages ("Labels CSV", "Query image").

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    FileNotFoundError
        Nothing is there (or a symlink points nowhere).
    IsADirectoryError
        ``path`` is a folder.
    ValueError
        ``path`` is a named pipe, socket or device.
    OSError
        ``path`` cannot be examined (no permission, a symlink loop).

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> os.mkfifo(os.path.join(d, "pipe.png"))
    >>> check_regular_file(os.path.join(d, "pipe.png"), "Query image")
    Traceback (most recent call last):
    ...
    ValueError: Query image .../pipe.png is a named pipe (FIFO), not a regular file; reading it could block forever. Pass the path of a file on disk.
    """
    import stat

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist.") from None
    if stat.S_ISREG(mode):
        return path
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{what} {path} is a folder, not a file.")
    kind = (
        "named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "socket"
        if stat.S_ISSOCK(mode)
        else "device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "special file"
    )
    raise ValueError(
        f"{what} {path} is a {kind}, not a regular file; reading it could block forever. "
        "Pass the path of a file on disk."
    )
