"""Time and peak extra memory of NearestGalaxy's searches at scale, in one run.

Cases (the issue's figures, measured here beside a reference from the same run):

(a) one query ``within`` a class holding 70% of N 64x64x3 uint8 images, against the same
    query over the whole catalogue;
(b) ``nearest_per_class`` over 10 classes (the same catalogue and query);
(c) 256 queries against 1,000,000 64-d float32 rows (``metric="euclidean"``), against
    scikit-learn's ``NearestNeighbors(algorithm="brute")`` on the same rows;
(d) 256 queries against the uint8 catalogue (the batched pixel path), for its memory.

Peak extra memory is the process's resident high-water mark during the call minus its
resident size just before: the kernel's ``VmHWM`` is reset through
``/proc/self/clear_refs`` before each call, so numba's and BLAS's allocations count
(tracemalloc sees numpy's only). Where that file cannot be written, a thread samples
``/proc/self/statm`` every millisecond instead (it may miss short peaks).

The catalogue of (a), (b), (d) is ``make_galaxies(ceil(N / 8))`` in its 8 flips and
rotations (cheap to make at N = 200,000: 2.5 GB of pixels). Thread pools are set here,
not in the library: numba and BLAS/OpenMP use ``--threads`` each.

Run::

    python benchmarks/bench_memory.py                 # N = 200,000 and 1,000,000 rows
    python benchmarks/bench_memory.py --n 20000 --n-float 100000   # quick

At full size it takes about 3 minutes on 2 cores and 3.5 GB of memory (5.5 GB with the
code before the tiled search, whose peaks it measures too). Prints one table;
docs/benchmarks.md reports it.
"""

import argparse
import contextlib
import ctypes
import gc
import math
import os
import platform
import threading
import time

import numba
import numpy as np
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_info, threadpool_limits

from galaxysim.datasets import make_galaxies
from galaxysim.neighbors import NearestGalaxy

PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _hwm():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _can_reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


RESET_HWM = _can_reset_hwm()


def _trim():
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # baseline = memory in use
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure(fn):
    """(seconds, peak extra bytes, result) of one call of ``fn``."""
    _trim()
    base = _rss()
    if RESET_HWM:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        return seconds, _hwm() - base, out
    peak, stop = [base], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    return seconds, max(peak[0], _rss()) - base, out


def timed(fn, repeat):
    """Best time of ``repeat`` calls, and the peak extra memory of the first."""
    seconds, extra, out = measure(fn)
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        fn()
        seconds = min(seconds, time.perf_counter() - t0)
    return seconds, extra, out


def catalogue(n, seed=0):
    """n 64x64x3 uint8 rows: make_galaxies images in their 8 flips and rotations."""
    base, _ = make_galaxies(math.ceil(n / 8), random_state=seed)
    X = np.empty((n, 64 * 64 * 3), dtype=np.uint8)
    for v in range(8):
        start = v * len(base)
        if start >= n:
            break
        img = np.rot90(base, v % 4, axes=(1, 2))
        img = img[:, :, ::-1] if v >= 4 else img
        stop = min(n, start + len(base))
        X[start:stop] = img[: stop - start].reshape(stop - start, -1)
    return X


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="uint8 catalogue rows")
    parser.add_argument("--n-float", type=int, default=1_000_000, help="float32 rows of (c)")
    parser.add_argument("--queries", type=int, default=256, help="queries of (c) and (d)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip", default="", help="cases to leave out, e.g. 'd' or 'cd'")
    args = parser.parse_args()

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    limits = threadpool_limits(limits=args.threads)  # BLAS and OpenMP (sklearn)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"numba threads {numba.get_num_threads()}, pools "
        f"{[(i['internal_api'], i['num_threads']) for i in threadpool_info()]}; "
        f"peak memory by {'VmHWM reset' if RESET_HWM else 'RSS sampling'}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    table = []

    def row(name, t, extra, ref_name, ref_t, ref_extra, note=""):
        table.append((name, t, extra, ref_name, ref_t, ref_extra, note))

    if set("abd") - set(args.skip):
        t0 = time.perf_counter()
        X = catalogue(args.n)
        rng = np.random.default_rng(0)
        p = np.r_[0.7, np.full(9, 0.3 / 9)]
        y = rng.choice(10, size=len(X), p=p)
        q = make_galaxies(1, random_state=123)[0].reshape(1, -1)
        search = NearestGalaxy(n_neighbors=10).fit(X, y)
        print(
            f"uint8 catalogue {X.shape} = {X.nbytes / 1e9:.2f} GB, class 0 holds "
            f"{np.mean(y == 0):.1%}; made and fitted in {time.perf_counter() - t0:.0f} s"
        )
        search.kneighbors(q, within=[0])  # compile, touch the pages once
        search.nearest_per_class(q)
        t_all, m_all, (_, ind_all) = timed(lambda: search.kneighbors(q), args.repeat)
        if "a" not in args.skip:
            t, m, (_, ind) = timed(lambda: search.kneighbors(q, within=[0]), args.repeat)
            assert (y[ind] == 0).all()
            row("(a) 1 query within a 70% class", t, m, "same query, whole catalogue", t_all, m_all)
        if "b" not in args.skip:
            t, m, (_, ind) = timed(lambda: search.nearest_per_class(q), args.repeat)
            assert (y[ind[0]] == np.arange(10)).all() and ind_all[0, 0] in ind[0]
            row(
                "(b) nearest_per_class, 10 classes",
                t,
                m,
                "same query, whole catalogue",
                t_all,
                m_all,
            )
        if "d" not in args.skip:
            Qd = make_galaxies(args.queries, random_state=7)[0].reshape(args.queries, -1)
            search.kneighbors(Qd[:16])
            t, m, _ = timed(lambda: search.kneighbors(Qd), 1)
            row(
                f"(d) {args.queries} queries, uint8 catalogue",
                t,
                m,
                "",
                math.nan,
                math.nan,
                f"{Qd.nbytes / 1e6:.0f} MB of queries",
            )
        del X, search
    if "c" not in args.skip:
        rng = np.random.default_rng(1)
        G = rng.standard_normal((args.n_float, 64), dtype=np.float32)
        Q = rng.standard_normal((args.queries, 64), dtype=np.float32)
        print(f"float32 rows {G.shape} = {G.nbytes / 1e9:.2f} GB, {len(Q)} queries, k = 10")
        ours = NearestGalaxy(n_neighbors=10, metric="euclidean").fit(G)
        ref = NearestNeighbors(n_neighbors=10, algorithm="brute").fit(G)
        ours.kneighbors(Q[:8])
        ref.kneighbors(Q[:8])
        t, m, (d, ind) = timed(lambda: ours.kneighbors(Q), args.repeat)
        t_ref, m_ref, (d_ref, ind_ref) = timed(lambda: ref.kneighbors(Q), args.repeat)
        agree = np.mean(ind == ind_ref)
        err = np.abs(d - d_ref).max()
        row(
            f"(c) {len(Q)} queries vs {len(G):,} x 64 float32",
            t,
            m,
            "sklearn brute euclidean",
            t_ref,
            m_ref,
            f"same neighbours {agree:.2%}, max |dist diff| {err:.1e}",
        )
    limits.restore_original_limits()
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other jobs slow the timings)")

    print()
    print(
        f"{'case':<42} {'time s':>8} {'+mem MB':>9}  {'reference':<28} {'ref s':>8} "
        f"{'+mem MB':>8} {'time ratio':>10}"
    )
    for name, t, extra, ref_name, ref_t, ref_extra, note in table:
        ratio = f"{t / ref_t:>9.2f}x" if ref_t == ref_t else ""
        ref = f"{ref_name:<28} {ref_t:>8.3f} {ref_extra / 1e6:>8.0f}" if ref_name else " " * 46
        print(f"{name:<42} {t:>8.3f} {extra / 1e6:>9.0f}  {ref} {ratio:>10}  {note}")


if __name__ == "__main__":
    main()
