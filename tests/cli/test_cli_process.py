"""The command's process settings: glibc's allocator thresholds, raised once by main()."""

import sys

import pytest

import galaxysim.cli._main as cli_main
import galaxysim.cli._process as process
from galaxysim.cli import main


class FakeLibc:
    def __init__(self, result=1):
        self.calls = []
        self.result = result

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.result


def test_raises_both_thresholds():
    libc = FakeLibc()
    assert process.tune_allocator(environ={}, libc=libc) is True
    assert libc.calls == [(-3, 512 << 20), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


def test_reports_a_refused_setting():
    assert process.tune_allocator(environ={}, libc=FakeLibc(result=0)) is False


@pytest.mark.parametrize(
    "environ",
    [
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
        {"MALLOC_ARENA_MAX_": "2"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
        {"LD_PRELOAD": "libtcmalloc_minimal.so.4"},
    ],
)
def test_leaves_a_configured_allocator_alone(environ):
    libc = FakeLibc()
    assert process.tune_allocator(environ=environ, libc=libc) is False
    assert libc.calls == []


def test_other_tunables_do_not_count_as_allocator_settings():
    libc = FakeLibc()
    assert process.tune_allocator(environ={"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}, libc=libc)
    assert len(libc.calls) == 2


def test_no_glibc_no_change(monkeypatch):
    monkeypatch.setattr(process, "_glibc", lambda: None)
    assert process.tune_allocator(environ={}) is False


def test_tunables_string_matches_the_thresholds():
    assert process.GLIBC_TUNABLES == (
        "glibc.malloc.mmap_threshold=536870912:glibc.malloc.trim_threshold=1073741824"
    )


def test_main_tunes_only_as_the_process_command(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(process, "tune_allocator", lambda: calls.append(1))
    assert main(["train", "--method", "mse", "--model-dir", "unused"]) == 2
    assert calls == []  # called from Python with argv: the caller's process is left alone
    monkeypatch.setattr(sys, "argv", ["galaxysim", "train", "--method", "mse", "--model-dir", "x"])
    assert cli_main.main() == 2
    assert calls == [1]
    assert "train fits deep models only" in capsys.readouterr().err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_real_glibc_accepts_the_thresholds():
    import platform
    import subprocess

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    code = "from galaxysim.cli._process import tune_allocator; print(tune_allocator(environ={}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
