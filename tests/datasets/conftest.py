"""Fixtures shared by the dataset loaders' tests."""

import contextlib
import subprocess
import sys
import time

import pytest

_UNBLOCK = """
import os, sys, time
time.sleep(float(sys.argv[2]))
for _ in range(3000):
    try:  # fails (ENXIO) while nobody reads
        os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass
    time.sleep(0.01)
"""


@contextlib.contextmanager
def _unblock_fifo_later(fifo, seconds=3.0):
    proc = subprocess.Popen([sys.executable, "-c", _UNBLOCK, str(fifo), str(seconds)])
    start = time.monotonic()
    try:
        yield lambda: time.monotonic() - start > seconds
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def unblock_fifo_later():
    """``unblock_fifo_later(fifo)``: a context in which, after a while, another process
    keeps opening ``fifo`` for writing (HDF5 blocks holding the GIL), so a reader that
    blocked on it (what a loader must not do) wakes up and the test fails instead of
    hanging. It yields a function telling whether that time has come."""
    return _unblock_fifo_later
