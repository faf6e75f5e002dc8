"""A report is swapped into its folder whole: a reader (or a killed writer) never leaves
a mix of two runs, stale staging folders of dead writers are removed, and a folder that
is not a galaxysim report is refused rather than deleted."""

import inspect
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import galaxysim.utils._staging as folder_module
from galaxysim.report import Report, SearchResult, check_report_dir, write_search_report
from galaxysim.report._folder import MARKER

REPO = Path(__file__).resolve().parents[2]


def write_run(out, run):
    """A search report of run ``run`` (its images, labels and facts all say which run)."""
    value = {"old": 40, "new": 200}.get(run, 120)
    images = np.full((3, 8, 8, 3), value, np.uint8)
    res = SearchResult("mse", [0.0, 1.0], [2, 0], [f"{run} a", f"{run} b"])
    return write_search_report(
        out, [res], query_image=images[:1], catalogue_images=images, summary={"run": run}
    )


# writes run argv[2] to argv[1] as write_run does; with argv[3] "montages" it stalls
# after the montages (before results.csv and index.html), with "swap" between the two
# renames of a swap without renameat2; it touches argv[4] when it stalls
CHILD = (
    textwrap.dedent(
        """
        import os, sys, time
        from pathlib import Path
        import numpy as np
        import galaxysim.utils._staging as folder
        from galaxysim.report import Report, SearchResult, write_search_report

        out, run, stall, ready = sys.argv[1:5]

        def wait():
            Path(ready).touch()
            time.sleep(120)

        if stall == "montages":
            Report.write_text = lambda self, *a, **k: wait()
        if stall == "swap":
            folder._exchange = lambda a, b: False
            rename = os.rename

            def stalling_rename(src, dst):
                rename(src, dst)
                if str(dst).endswith("-old"):
                    wait()

            folder.os.rename = stalling_rename
        """
    )
    + inspect.getsource(write_run)
    + "write_run(out, run)\n"
)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def staging_folders(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def kill_mid_write(out, run, stall, tmp_path):
    ready = tmp_path / f"ready-{stall}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), run, stall, str(ready)],
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None, "the writer ended before it stalled"
            assert time.monotonic() < deadline, "the writer never stalled"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL


# ------------------------------------------------------------------ killed writers
def test_killed_write_leaves_the_old_report_whole(tmp_path):
    out = tmp_path / "r"
    write_run(out, "old")
    before = snapshot(out)
    kill_mid_write(out, "new", "montages", tmp_path)
    assert snapshot(out) == before  # not the new montage beside the old page
    assert len(staging_folders(out)) == 1  # the dead writer's
    # the next write removes it and replaces the report whole
    index = write_run(out, "new")
    assert index == out / "index.html"
    assert "new a" in index.read_text(encoding="utf-8")
    assert snapshot(out)["montage_mse.png"] != before["montage_mse.png"]
    assert staging_folders(out) == []


def test_killed_between_the_two_renames_leaves_no_mix(tmp_path):
    # without renameat2 the swap takes two renames: the folder is absent between them
    out = tmp_path / "r"
    write_run(out, "old")
    before = snapshot(out)
    kill_mid_write(out, "new", "swap", tmp_path)
    assert not out.exists()
    (aside,) = (p for p in staging_folders(out) if p.endswith("-old"))
    assert snapshot(out.parent / aside) == before  # the old report, whole
    write_run(out, "new")
    assert "new a" in (out / "index.html").read_text(encoding="utf-8")
    assert staging_folders(out) == []


# ------------------------------------------------------------------ the swap
@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_report_replaced_whole(tmp_path, monkeypatch, exchange):
    calls = []
    real = folder_module._exchange

    def recording(a, b):
        calls.append((a, b))
        return real(a, b) if exchange else False

    monkeypatch.setattr(folder_module, "_exchange", recording)
    out = tmp_path / "r"
    write_run(out, "old")
    (out / "montage_extra.png").write_bytes(b"x")  # a file the old report did not list
    with pytest.raises(ValueError, match=r"not part of its report \(montage_extra.png\)"):
        write_run(out, "new")
    (out / "montage_extra.png").unlink()
    assert calls == []  # an absent folder takes the report in one rename
    write_run(out, "new")
    assert len(calls) == 1  # a non-empty one by the exchange (or the fallback)
    assert "new a" in (out / "index.html").read_text(encoding="utf-8")
    assert sorted(os.listdir(out)) == [
        *(MARKER, "index.html", "montage_mse.png", "results.csv", "results.json")
    ]
    assert staging_folders(out) == []


def test_report_folder_gets_the_mode_of_a_new_folder(tmp_path):
    write_run(tmp_path / "r", "new")
    (tmp_path / "plain").mkdir()
    assert (tmp_path / "r").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_empty_folder_takes_a_report(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    write_run(out, "new")
    assert "new a" in (out / "index.html").read_text(encoding="utf-8")


def test_live_writers_staging_folder_is_kept(tmp_path):
    out = tmp_path / "r"
    with Report(out, "first") as first:
        write_run(out, "new")  # cleans stale staging folders, but not a live writer's
        assert first.out.is_dir()
        first.finish({})  # replaces the other report
    assert "<h1>first</h1>" in (out / "index.html").read_text(encoding="utf-8")
    assert staging_folders(out) == []


def test_an_unfinished_report_leaves_the_folder_alone(tmp_path):
    out = tmp_path / "r"
    write_run(out, "old")
    before = snapshot(out)
    with Report(out, "dropped") as report:
        report.write_text("results.csv", "a\n")
    assert snapshot(out) == before and staging_folders(out) == []


# ------------------------------------------------------------------ what is refused
def test_folder_that_is_not_a_report_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"is not a galaxysim report .*\(notes.txt\)"):
        write_run(tmp_path, "new")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_files_added_during_the_run_are_not_deleted(tmp_path):
    out = tmp_path / "r"
    write_run(out, "old")
    before = snapshot(out)
    with Report(out, "new") as report:
        (out / "notes.txt").write_text("mine")
        with pytest.raises(ValueError, match=r"not part of its report \(notes.txt\)"):
            report.finish({})
    assert snapshot(out) == {**before, "notes.txt": b"mine"}
    assert staging_folders(out) == []


def test_bad_report_folders_refused(tmp_path, monkeypatch):
    (tmp_path / "file.html").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        check_report_dir(tmp_path / "file.html")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="is the current folder or holds it"):
        check_report_dir(".")
    with pytest.raises(ValueError, match="is the current folder or holds it"):
        check_report_dir(tmp_path.parent)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / MARKER).write_text("{not json")
    with pytest.raises(ValueError, match="unreadable .galaxysim-report"):
        check_report_dir("r")
    assert check_report_dir("new") == tmp_path.resolve() / "new"
