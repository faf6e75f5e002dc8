"""atomic_write: a reader never sees a half-written file."""

import os
from pathlib import Path

import pytest

from galaxysim.utils import _io
from galaxysim.utils._io import atomic_write, remove_stale_parts


def _leftovers(folder, name):
    return [p.name for p in folder.iterdir() if p.name != name]


def test_atomic_write_binary_success(tmp_path):
    path = tmp_path / "cache.bin"
    with atomic_write(path) as f:
        f.write(b"\x00\x01payload")
        assert not path.exists()  # nothing in place until the block ends
    assert path.read_bytes() == b"\x00\x01payload"
    assert _leftovers(tmp_path, "cache.bin") == []


def test_atomic_write_replaces_existing_file(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("old\n")
    with atomic_write(path, mode="w") as f:
        f.write("new\n")
    assert path.read_text() == "new\n"
    assert _leftovers(tmp_path, "results.csv") == []


def test_atomic_write_text_mode_is_utf8(tmp_path):
    # index.html declares charset utf-8: the bytes must be UTF-8 whatever the locale
    path = tmp_path / "index.html"
    text = "<p>Galaxy \u2014 M31 \u00e9</p>"
    with atomic_write(path, mode="w") as f:
        f.write(text)
    assert path.read_bytes() == text.encode("utf-8")


def test_atomic_write_creates_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "x.txt"
    with atomic_write(path, mode="w") as f:
        f.write("ok")
    assert path.read_text() == "ok"


def test_exception_keeps_old_file_and_removes_temp(tmp_path):
    path = tmp_path / "cache.bin"
    path.write_bytes(b"complete old content")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_write(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"complete old content"
    assert _leftovers(tmp_path, "cache.bin") == []


def test_exception_leaves_no_file_when_there_was_none(tmp_path):
    path = tmp_path / "new.csv"
    with pytest.raises(KeyboardInterrupt), atomic_write(path, mode="w") as f:
        f.write("partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_temp_file_lives_beside_target(tmp_path):
    # same folder, so os.replace is an atomic rename on one file system
    path = tmp_path / "x.bin"
    with atomic_write(path) as f:
        seen = [p.name for p in tmp_path.iterdir()]
        f.write(b"1")
    assert len(seen) == 1
    assert seen[0].startswith(".x.bin.") and seen[0].endswith(".part")


# ------------------------------------------------- temporary files of killed writers
WRITER = """
import sys
from galaxysim.utils._io import atomic_write

with atomic_write(sys.argv[1]) as f:
    f.write(b"partial " * 1000)
    f.flush()
    print("writing", flush=True)
    sys.stdin.readline()  # wait until told to finish (or killed)
    f.write(b"done")
print("finished", flush=True)
"""


def _start_writer(target):
    import subprocess
    import sys

    import galaxysim

    env = {**os.environ, "PYTHONPATH": str(Path(galaxysim.__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdout.readline() == "writing\n"
    return proc


def _parts(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_part_of_killed_writer_removed_by_next_write(tmp_path):
    path = tmp_path / "model.bin"
    proc = _start_writer(path)
    proc.kill()  # SIGKILL: no cleanup code runs
    proc.wait()
    (stale,) = _parts(tmp_path)
    assert stale.startswith(".model.bin.")
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert _parts(tmp_path) == []


def test_live_writer_part_survives_concurrent_write(tmp_path):
    path = tmp_path / "model.bin"
    proc = _start_writer(path)
    try:
        (live,) = _parts(tmp_path)
        with atomic_write(path) as f:  # cleans up around a writer that is still alive
            f.write(b"other")
        assert path.read_bytes() == b"other"
        assert remove_stale_parts(path) == []
        assert _parts(tmp_path) == [live]
        out, _ = proc.communicate("go\n", timeout=30)
    finally:
        proc.kill()
    assert out == "finished\n" and proc.returncode == 0
    assert path.read_bytes().endswith(b"done")  # the live writer completed its write
    assert _parts(tmp_path) == []


def test_open_writer_in_same_process_is_not_cleaned(tmp_path):
    path = tmp_path / "x.bin"
    with atomic_write(path) as f:
        f.write(b"1")
        assert remove_stale_parts(path) == []  # flock: our own open writer is live too
        with atomic_write(path) as g:  # a nested writer to the same file
            g.write(b"2")
        assert len(_parts(tmp_path)) == 1
    assert path.read_bytes() == b"1"
    assert _parts(tmp_path) == []


def test_cleanup_is_confined_to_the_target(tmp_path):
    keep = [
        ".x.bin.abc123.partial",  # not a part file
        ".x.bin.extra.abc123.part",  # the part file of x.bin.extra
        ".y.bin.abc123.part",  # another target
        "x.bin.abc123.part",  # not hidden: not ours
    ]
    for name in keep:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "elsewhere").write_bytes(b"precious")
    (tmp_path / ".x.bin.link0001.part").symlink_to(tmp_path / "elsewhere")
    os.mkfifo(tmp_path / ".x.bin.fifo0001.part")
    (tmp_path / ".x.bin.dead0001.part").write_bytes(b"stale")
    assert remove_stale_parts(tmp_path / "x.bin") == [".x.bin.dead0001.part"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*keep, "elsewhere", ".x.bin.link0001.part", ".x.bin.fifo0001.part"]
    )
    assert (tmp_path / "elsewhere").read_bytes() == b"precious"


def test_without_fcntl_writes_and_cleans_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(_io, "fcntl", None)
    stale = tmp_path / ".x.bin.dead0001.part"
    stale.write_bytes(b"?")
    with atomic_write(tmp_path / "x.bin") as f:
        f.write(b"ok")
    assert (tmp_path / "x.bin").read_bytes() == b"ok"
    assert stale.exists()  # without locks a live writer cannot be told from a dead one
    assert remove_stale_parts(tmp_path / "x.bin") == []


def test_check_regular_file(tmp_path):
    import os
    import socket

    from galaxysim.utils._io import check_regular_file

    (tmp_path / "a.csv").write_text("file\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "a.csv")
    assert check_regular_file(str(tmp_path / "a.csv")) == tmp_path / "a.csv"
    assert check_regular_file(tmp_path / "link.csv") == tmp_path / "link.csv"
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(ValueError, match=r"Labels CSV .*pipe\.csv is a named pipe \(FIFO\), not"):
        check_regular_file(tmp_path / "pipe.csv", "Labels CSV")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        with pytest.raises(ValueError, match="is a socket, not a regular file"):
            check_regular_file(tmp_path / "sock")
    with pytest.raises(ValueError, match="is a device, not a regular file"):
        check_regular_file("/dev/null")
    with pytest.raises(IsADirectoryError, match="is a folder, not a file"):
        check_regular_file(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for missing in ("missing.csv", "dangling"):
        with pytest.raises(FileNotFoundError, match=f"File .*{missing} does not exist"):
            check_regular_file(tmp_path / missing)
