"""Training and inference throughput of the galaxysim.nn estimators at 64x64x3.

Measures, in one run on this machine:

- the float32 matmul rate of torch (the reference "peak"),
- CNNScorer and AEEncoder training throughput (images/s, from the duration of the last
  epoch, so start-up is excluded) and the time an epoch of the full catalogue would take,
- prediction / encoding throughput (images/s),

and prints each rate with its fraction of the matmul peak, using model FLOPs per image
(CNN about 86 MFLOP per training image and 29 per prediction; AE about 185 per
training image and 32 per encoding).

Per-image rates are measured on ``--n-train`` images (default 2048) and extrapolated to
the 17,736 images of Galaxy10 DECaLS; the rate does not depend on the catalogue size.

Run::

    python benchmarks/bench_nn.py                    # 2 threads, channels-last
    python benchmarks/bench_nn.py --threads 1 --n-train 1024
    python benchmarks/bench_nn.py --compare-layout   # channels-last vs contiguous NCHW
"""

import argparse
import time

import numpy as np
import torch

import galaxysim.nn._base as nn_base
from galaxysim.nn import AEEncoder, CNNScorer

CATALOGUE = 17_736
# forward FLOPs per 64x64 image (multiply-adds x 2); training is about 3x forward
FWD_MFLOP = {"cnn": 28.7, "ae": 61.7, "ae-encode": 31.9}
TRAIN_MFLOP = {"cnn": 86.0, "ae": 185.0}


def matmul_peak(n=2048, seconds=2.0):
    """Best float32 GFLOP/s of an n x n matmul over repeated runs."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def synthetic_images(n, size=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 40, size=(n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % 5
    return X, y


def time_call(fn, repeats=3):
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench(n_train, n_infer, threads, batch_size, epochs):
    X, y = synthetic_images(max(n_train, n_infer))
    rows = []
    common = dict(
        max_epochs=epochs,
        batch_size=batch_size,
        validation_fraction=None,
        n_threads=threads,
        random_state=0,
    )
    cnn = CNNScorer(**common).fit(X[:n_train], y[:n_train])
    rows.append(("cnn", "train", n_train / cnn.history_[-1]["dur"]))
    rows.append(("cnn", "predict", n_infer / time_call(lambda: cnn.predict_proba(X[:n_infer]))))
    ae = AEEncoder(**common).fit(X[:n_train])
    rows.append(("ae", "train", n_train / ae.history_[-1]["dur"]))
    rows.append(("ae", "encode", n_infer / time_call(lambda: ae.transform(X[:n_infer]))))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=2048)
    p.add_argument("--n-infer", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2, help="the last epoch is timed")
    p.add_argument(
        "--compare-layout",
        action="store_true",
        help="also run with contiguous NCHW instead of channels-last",
    )
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    peak = matmul_peak()
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}")
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s (2048x2048, best of repeats)\n")
    layouts = [True, False] if args.compare_layout else [nn_base.CHANNELS_LAST]
    print(
        f"{'model':5} {'phase':8} {'layout':13} {'images/s':>9} {'GFLOP/s':>8} "
        f"{'% peak':>7} {'s / 17,736':>10}"
    )
    for cl in layouts:
        nn_base.CHANNELS_LAST = cl
        for model, phase, rate in bench(
            args.n_train, args.n_infer, args.threads, args.batch_size, args.epochs
        ):
            key = "ae-encode" if phase == "encode" else model
            mflop = TRAIN_MFLOP[model] if phase == "train" else FWD_MFLOP[key]
            gflops = rate * mflop / 1e3
            print(
                f"{model:5} {phase:8} {'channels_last' if cl else 'NCHW':13} {rate:9.0f} "
                f"{gflops:8.1f} {100 * gflops / peak:6.1f}% {CATALOGUE / rate:10.1f}"
            )
    print(
        "\nrates measured on",
        args.n_train,
        "training and",
        args.n_infer,
        "inference images and extrapolated to 17,736 (per-image cost does not depend on n)",
    )


if __name__ == "__main__":
    main()
