"""malloc_tuned: glibc's thresholds are raised inside the block and set back after it."""

import sys

import numpy as np
import pytest

import galaxysim.nn._runtime as base


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_thresholds_raised_inside_and_restored_after_the_outermost_block(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(base, "_glibc_for_tuning", lambda: libc)
    with base.malloc_tuned():
        assert libc.calls == [
            ("mallopt", base._M_MMAP_THRESHOLD, base._TUNED_MMAP_THRESHOLD),
            ("mallopt", base._M_TRIM_THRESHOLD, base._TUNED_TRIM_THRESHOLD),
        ]
        with base.malloc_tuned():
            pass
        assert len(libc.calls) == 2  # the nested block changes nothing
    assert libc.calls[2:] == [
        ("mallopt", base._M_MMAP_THRESHOLD, base._RESTORED_MMAP_THRESHOLD),
        ("mallopt", base._M_TRIM_THRESHOLD, base._RESTORED_TRIM_THRESHOLD),
        ("malloc_trim", 0),
    ]
    assert base._malloc_depth == 0


def test_restored_when_the_block_raises(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(base, "_glibc_for_tuning", lambda: libc)
    with pytest.raises(RuntimeError), base.malloc_tuned():
        raise RuntimeError("boom")
    assert libc.calls[-1] == ("malloc_trim", 0)
    assert base._malloc_depth == 0


@pytest.mark.parametrize(
    "env",
    [
        {base.MALLOC_ENV: "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
        {"MALLOC_ARENA_MAX_": "2"},
        {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"},
    ],
)
def test_user_allocator_settings_are_respected(monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert base._glibc_for_tuning() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_real_allocator_block_runs(monkeypatch):
    for key in (base.MALLOC_ENV, "GLIBC_TUNABLES", "LD_PRELOAD"):
        monkeypatch.delenv(key, raising=False)
    with base.malloc_tuned():
        a = np.ones((64, 64, 64, 32), np.float32)  # above glibc's default mmap threshold
        del a
    assert base._malloc_depth == 0
