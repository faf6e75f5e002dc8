"""atomic_write: a reader never sees a half-written file."""

import pytest

from galaxysim.utils._io import atomic_write


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
