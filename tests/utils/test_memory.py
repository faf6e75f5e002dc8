"""check_memory: a clear message before an allocation that cannot fit."""

import pytest

from galaxysim.utils import _memory
from galaxysim.utils._memory import available_memory, check_memory


def test_available_memory_is_plausible():
    with open("/proc/meminfo") as f:
        info = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f)}
    avail = available_memory()
    assert 0 < avail <= info["MemTotal"] + info.get("SwapTotal", 0)


def test_cgroup_limit_caps_available(monkeypatch):
    monkeypatch.setattr(_memory, "_meminfo", lambda: 64 * 10**9)
    monkeypatch.setattr(_memory, "_cgroup_headroom", lambda: 2 * 10**9)
    assert available_memory() == 2 * 10**9


def test_without_meminfo_falls_back_to_physical_size(monkeypatch):
    monkeypatch.setattr(_memory, "_meminfo", lambda: None)
    monkeypatch.setattr(_memory, "_cgroup_headroom", lambda: None)
    assert available_memory() > 0


def test_check_memory_message(monkeypatch):
    monkeypatch.setattr(_memory, "available_memory", lambda: 5 * 10**9)
    check_memory(5 * 10**9, "exactly what is available")
    with pytest.raises(
        MemoryError,
        match=r"^x would take 8\.0 GB of memory, but only 5\.0 GB "
        r"is available \(room for about 2,500 rows\)\. Use fewer\.$",
    ):
        check_memory(8 * 10**9, "x", per_item=(2 * 10**6, "rows"), hint="Use fewer.")


def test_unknown_memory_refuses_nothing(monkeypatch):
    monkeypatch.setattr(_memory, "available_memory", lambda: None)
    check_memory(10**20, "anything")
