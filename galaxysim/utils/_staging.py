"""A folder written whole: staged in a locked sibling folder, then swapped into place.

Used for what galaxysim writes as a folder (reports, search indexes): a reader of the
folder sees the previous complete version or the new complete one, never a mix, and
an interrupted write leaves the previous version as it was. The new folder is written
into ``.<name>.tmp-XXXXXXXX`` beside the destination and swapped in at the end:

- into an absent or empty folder, by one ``rename`` (atomic);
- over an earlier version, by one ``renameat2(RENAME_EXCHANGE)`` on Linux (atomic for
  non-empty folders too); where the system or file system lacks it, by two renames
  (old version aside, new one in), between which the folder is briefly absent, never
  mixed. The old version is removed afterwards.

While it writes, a writer holds an ``flock`` on its staging folder, so the next write
to the same destination removes only the staging folders of writers that died (killed
mid-write, or between the two renames). Each kind of folder has a marker file (a
report's ``.galaxysim-report``, an index's ``.galaxysim-index``) naming its files; a
folder without the marker, or holding files its writer did not write (a user's notes),
is never replaced: that is an error, not deleted data.
"""

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path

from galaxysim import __version__
from galaxysim.utils._io import _umask, atomic_write

try:
    import fcntl
except ImportError:  # Windows: no flock; stale staging folders go by age only
    fcntl = None

__all__ = ["StagedFolder", "check_staged_dir"]

_STAGING = ".tmp-"
_STALE_WITHOUT_LOCKS_S = 24 * 3600  # only where flock is missing


def _marker_files(folder, marker):
    """The file names a folder's marker lists, or ``None`` when it has no marker."""
    path = folder / marker
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{folder} has an unreadable {marker} file ({exc}), so galaxysim cannot tell "
            "which files are its own; remove the folder or choose another one."
        ) from None
    return {str(f) for f in files}


def check_staged_dir(out_dir, *, marker, what):
    """Check that a folder of kind ``what`` can be written to ``out_dir``; its absolute path.

    The folder can be new, an empty folder, or an earlier one of the same kind
    (recognised by its ``marker`` file) holding only the files that were written with
    it; it is then replaced whole. Anything else is refused rather than deleted.

    Parameters
    ----------
    out_dir : path-like
        The destination folder.
    marker : str
        Name of the marker file of this kind of folder (``".galaxysim-report"``).
    what : str
        The kind, for messages (``"report"``, ``"search index"``).

    Returns
    -------
    path : pathlib.Path
        ``out_dir`` made absolute, with symbolic links resolved.

    Raises
    ------
    ValueError
        ``out_dir`` names a file, the current folder (or one above it), a folder that
        is not of this kind, or one holding other files.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> check_staged_dir(os.path.join(d, "new"), marker=".galaxysim-x", what="x").name
    'new'
    >>> with open(os.path.join(d, "notes.txt"), "w") as f:
    ...     _ = f.write("mine")
    >>> check_staged_dir(d, marker=".galaxysim-x", what="x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ... is not a galaxysim x (it has no .galaxysim-x file) ...
    """
    path = Path(os.fspath(out_dir)).expanduser().resolve()
    if path.parent == path:
        raise ValueError(f"a {what} needs a folder of its own; got the root folder {path}.")
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the current folder is gone
        cwd = None
    if cwd is not None and (path == cwd or path in cwd.parents):
        raise ValueError(
            f"the {what} folder {path} is the current folder or holds it; replacing it "
            "would pull the folder away from under this process. Name a subfolder."
        )
    if not path.exists():
        return path
    if not path.is_dir():
        raise ValueError(
            f"the {what} folder {path} exists and is not a folder; name a new folder "
            f"(or an earlier {what}) to write the {what} to."
        )
    names = set(os.listdir(path))
    if not names:
        return path
    listed = _marker_files(path, marker)
    if listed is None:
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        raise ValueError(
            f"{path} is not a galaxysim {what} (it has no {marker} file) and is not empty "
            f"({shown}); galaxysim replaces only folders it wrote as a {what}. Choose a "
            "new or empty folder, or move its files away."
        )
    extra = sorted(names - listed - {marker})
    if extra:
        shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise ValueError(
            f"the {what} folder {path} holds files that are not part of its {what} "
            f"({shown}); writing a new {what} would delete them. Move them away or "
            "choose another folder."
        )
    return path


_NO_LOCK = -1  # where flock is missing


def _lock(folder):
    """An fd holding an exclusive flock on ``folder``, or ``None`` when it is taken."""
    if fcntl is None:
        return _NO_LOCK
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _unlock(fd):
    if fd != _NO_LOCK:
        with contextlib.suppress(OSError):
            os.close(fd)


def _remove_stale(dest):
    """Remove the staging folders beside ``dest`` whose writers are gone."""
    prefix = f".{dest.name}{_STAGING}"
    try:
        candidates = [p for p in dest.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for path in candidates:
        with contextlib.suppress(OSError):
            if path.is_symlink() or not path.is_dir():
                continue
            if fcntl is None and time.time() - path.stat().st_mtime < _STALE_WITHOUT_LOCKS_S:
                continue
            fd = _lock(path)
            if fd is None:  # a live writer holds it
                continue
            try:
                shutil.rmtree(path, ignore_errors=True)
            finally:
                _unlock(fd)


def _new_staging(dest):
    """Create and lock a fresh staging folder beside ``dest``: ``(path, fd)``."""
    for _ in range(10):
        path = Path(tempfile.mkdtemp(prefix=f".{dest.name}{_STAGING}", dir=dest.parent))
        fd = _lock(path)
        if fd == _NO_LOCK:
            return path, fd
        # a concurrent cleaner may have locked (and removed) it before this writer did
        if fd is not None:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.stat(path), os.fstat(fd)):
                    return path, fd
            _unlock(fd)
    raise OSError(f"could not create a staging folder beside {dest}.")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a, b):
    """Swap two paths in one atomic step (Linux ``renameat2``); False where unsupported."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not glibc/Linux
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # the kernel or the file system cannot exchange
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(folder):
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _discard(path, fd):
    shutil.rmtree(path, ignore_errors=True)
    _unlock(fd)


class StagedFolder:
    """A folder's staging folder, swapped into place whole by :meth:`commit`.

    Parameters
    ----------
    out_dir : path-like
        Destination (checked by :func:`check_staged_dir`; its parents are created).
    marker : str
        Name of the marker file that :meth:`commit` writes (JSON: the galaxysim
        version and the names of the folder's files).
    what : str
        The kind of folder, for messages (``"report"``, ``"search index"``).

    Attributes
    ----------
    dest : pathlib.Path
        The destination folder, absolute.
    staging : pathlib.Path
        Where the files are written until :meth:`commit`.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> folder = StagedFolder(os.path.join(d, "out"), marker=".galaxysim-x", what="x")
    >>> _ = (folder.staging / "a.txt").write_text("new")
    >>> sorted(os.listdir(folder.commit()))
    ['.galaxysim-x', 'a.txt']
    """

    def __init__(self, out_dir, *, marker, what):
        self.marker, self.what = marker, what
        self.dest = check_staged_dir(out_dir, marker=marker, what=what)
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(self.dest)
        self.staging, fd = _new_staging(self.dest)
        self._fd = fd
        # a staging folder that is never committed goes with this object
        self._finalizer = weakref.finalize(self, _discard, self.staging, fd)

    def commit(self):
        """Mark the staged files with the marker and swap them into place.

        Returns
        -------
        dest : pathlib.Path
        """
        # the user may have added files meanwhile
        check_staged_dir(self.dest, marker=self.marker, what=self.what)
        files = sorted(os.listdir(self.staging))
        with atomic_write(self.staging / self.marker, mode="w") as f:
            json.dump({"galaxysim": __version__, "files": files}, f, indent=1)
        mode = self.dest.stat().st_mode & 0o7777 if self.dest.is_dir() else 0o777 & ~_umask()
        os.chmod(self.staging, mode)  # mkdtemp's is 0700
        _fsync_dir(self.staging)
        try:
            os.rename(self.staging, self.dest)  # absent or empty: one atomic step
            old = None
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if _exchange(self.staging, self.dest):
                old = self.staging  # now holds the previous version
            else:
                # two steps: between them the folder is absent, never mixed; a writer
                # killed here leaves the old version in a stale staging folder
                old = self.staging.with_name(self.staging.name + "-old")
                os.rename(self.dest, old)
                try:
                    os.rename(self.staging, self.dest)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.rename(old, self.dest)
                    raise
        _fsync_dir(self.dest.parent)
        self._finalizer.detach()
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _unlock(self._fd)
        return self.dest

    def discard(self):
        """Remove the staging folder (nothing is written to the destination)."""
        self._finalizer()
