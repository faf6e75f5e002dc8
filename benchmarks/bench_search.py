"""Speed of galaxysim's search, framing and generation against references measured
in the same run (scikit-learn brute force, skimage, this machine's memory bandwidth).

Run:  python benchmarks/bench_search.py            (17,736-image gallery, 100 queries)
      python benchmarks/bench_search.py --n 3000   (quicker)

Prints one table; the ratios are what docs/benchmarks.md reports.
"""

import argparse
import platform
import time

import numba
import numpy as np
from numba import njit, prange
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_info, threadpool_limits

from galaxysim.datasets import make_galaxies
from galaxysim.neighbors import NearestGalaxy
from galaxysim.utils._image import frame_images


@njit(parallel=True)
def _read_all(words):
    total = np.uint64(0)
    for i in prange(len(words)):
        total += words[i]
    return total


def best_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def read_bandwidth(buf):
    """Read bandwidth in bytes/s: the faster of a parallel numba sum and numpy's sum.

    Both stream ``buf`` once from memory; the faster one is the reference, so the
    ratio to it is a conservative figure for galaxysim.
    """
    words = buf.reshape(-1).view(np.uint64)
    _read_all(words[:1024])
    t = min(best_time(lambda: _read_all(words), 7), best_time(words.sum, 7))
    return buf.nbytes / t


def exact_reference(Q, G, metric, k):
    """k smallest distances (float64, [0, 1] scale) by brute force on the integers."""
    q = Q.astype(np.float64)
    best = np.full((len(Q), 0), np.inf)
    for s in range(0, len(G), 1024):
        g = G[s : s + 1024].astype(np.float64)
        if metric == "mse":
            d = ((q**2).sum(1)[:, None] + (g**2).sum(1)[None] - 2 * q @ g.T) / (255**2 * G.shape[1])
        else:
            d = np.stack([np.abs(g - row).max(axis=1) for row in q]) / 255
        best = np.sort(np.concatenate([best, d], axis=1), axis=1)[:, :k]
    return best


def row(table, name, ours, ref, ref_name, target=None):
    ratio = ref / ours
    ok = "" if target is None else ("PASS" if ratio >= target else "FAIL")
    table.append((name, ours, ref_name, ref, ratio, f">= {target}x" if target else "", ok))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=17736, help="gallery size")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--resize-n", type=int, default=17736, help="images resized 256->64")
    args = parser.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"numba threads {numba.get_num_threads()}, "
        f"BLAS {[(i['internal_api'], i['num_threads']) for i in threadpool_info()]}"
    )
    table = []

    # -- generation
    n_gen = 2000
    t = best_time(lambda: make_galaxies(n_gen, random_state=1), 1)
    gen_rate = n_gen / t
    X, _ = make_galaxies(args.n, random_state=0)
    G = X.reshape(len(X), -1)
    Q = make_galaxies(args.queries, random_state=1)[0].reshape(args.queries, -1)
    print(f"gallery {G.shape} uint8 = {G.nbytes / 1e6:.0f} MB; make_galaxies {gen_rate:.0f} img/s")

    # -- memory bandwidth: time to read the uint8 gallery once
    bw = read_bandwidth(G)
    t_read = G.nbytes / bw
    print(f"read bandwidth {bw / 1e9:.1f} GB/s -> {t_read * 1e3:.1f} ms to read the gallery once")

    # -- search
    G32 = G.astype(np.float32)
    with threadpool_limits(limits=numba.get_num_threads()):
        for metric, sk_metric in (("mse", "euclidean"), ("maxabs", "chebyshev")):
            ours = NearestGalaxy(n_neighbors=args.k, metric=metric).fit(G)
            ref = NearestNeighbors(n_neighbors=args.k, algorithm="brute", metric=sk_metric).fit(G32)
            ours.kneighbors(Q[:8])  # compile / load kernels
            ref.kneighbors(Q[:1].astype(np.float32))
            for m in (1, args.queries):
                q = Q[:m]
                t_ours = best_time(lambda q=q, ours=ours: ours.kneighbors(q), 5)
                reps = 1 if (sk_metric == "chebyshev" and m > 1) else 3
                q32 = q.astype(np.float32)
                t_ref = best_time(lambda q32=q32, ref=ref: ref.kneighbors(q32), reps)
                row(
                    table,
                    f"NearestGalaxy {metric}, {m} quer{'y' if m == 1 else 'ies'}",
                    t_ours,
                    t_ref,
                    f"sklearn brute {sk_metric} f32",
                    5,
                )
                if metric == "mse":
                    per_query = t_ours / m
                    table.append(
                        (
                            f"  {metric} {m}q per query vs one gallery read",
                            per_query,
                            "read gallery once",
                            t_read,
                            t_read / per_query,
                            ">= 1/1.5x",
                            "PASS" if per_query <= 1.5 * t_read else "FAIL",
                        )
                    )
            # exactness against the float64 reference on the integers
            dist, ind = ours.kneighbors(Q)
            np.testing.assert_allclose(dist, exact_reference(Q, G, metric, args.k), rtol=1e-12)
            diff = G[ind].astype(np.float64) - Q[:, None, :]  # the returned rows themselves
            own = (diff**2).mean(-1) / 255**2 if metric == "mse" else np.abs(diff).max(-1) / 255
            np.testing.assert_allclose(dist, own, rtol=1e-12)
            print(f"{metric}: {args.queries} x top-{args.k} distances equal the float64 reference")

    # -- framing 256 -> 64
    chunk = 1024
    big = np.repeat(np.repeat(X[:chunk], 4, axis=1), 4, axis=2)  # 256 px images
    n_res = args.resize_n
    t_ours = 0.0
    for s in range(0, n_res, chunk):
        b = big[: min(chunk, n_res - s)]
        t0 = time.perf_counter()
        frame_images(b, crop=None, image_size=64)
        t_ours += time.perf_counter() - t0
    from skimage.transform import resize

    n_sk = 200
    t0 = time.perf_counter()
    for img in big[:n_sk]:
        resize(img, (64, 64), anti_aliasing=True, preserve_range=True).astype(np.uint8)
    t_sk = (time.perf_counter() - t0) / n_sk * n_res
    row(
        table,
        f"resize {n_res} images 256->64",
        t_ours,
        t_sk,
        f"skimage resize per image (x{n_res}/{n_sk})",
        20,
    )
    t_ours2 = 0.0
    for s in range(0, n_res, chunk):
        b = big[: min(chunk, n_res - s)]
        t0 = time.perf_counter()
        frame_images(b, crop=192, image_size=64)
        t_ours2 += time.perf_counter() - t0
    row(
        table,
        f"crop 192 + resize {n_res} images ->64",
        t_ours2,
        t_sk,
        "skimage resize per image",
        20,
    )
    table.append(
        (
            "make_galaxies 64x64, s per image",
            1 / gen_rate,
            "300 images/s",
            1 / 300,
            gen_rate / 300,
            ">= 1x",
            "PASS" if gen_rate >= 300 else "FAIL",
        )
    )

    print()
    print(f"{'measurement':<48} {'ours s':>9}  {'reference':<42} {'ref s':>9} {'ratio':>8}  target")
    for name, ours, ref_name, ref, ratio, target, ok in table:
        print(f"{name:<48} {ours:>9.4f}  {ref_name:<42} {ref:>9.4f} {ratio:>7.1f}x  {target} {ok}")


if __name__ == "__main__":
    main()
