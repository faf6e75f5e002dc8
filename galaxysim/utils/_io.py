"""Atomic file writes: a reader never sees a half-written file."""

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path`` and move it into place on success.

    If the block raises (or the process is killed), ``path`` keeps its previous
    content or stays absent; the temporary file is removed.

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        # text is always UTF-8 (index.html declares it), whatever the locale
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
