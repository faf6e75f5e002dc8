"""Training and inference throughput of the galaxysim.nn estimators at 64x64x3.

Measures, in one run on this machine:

- the float32 matmul rate of torch (the reference "peak"),
- CNNScorer and AEEncoder training throughput (images/s, from the duration of the last
  epoch, so start-up is excluded) and the time an epoch of the full catalogue would take,
- prediction / encoding throughput (images/s),

each in float32 and in bfloat16 (``precision="bfloat16"``: torch.autocast), and prints
each rate with its fraction of the float32 matmul peak measured in the same run (and, for
bfloat16, also of the bfloat16 matmul peak), using model FLOPs per image (CNN about 86
MFLOP per training image and 29 per prediction; AE about 185 per training image and 32
per encoding), then the verdict against the targets of the speed issue: training at
least 900 images/s (CNN) and 500 (AE), prediction and encoding at least 4,000.

Per-image rates are measured on ``--n-train`` images (default 2048) and extrapolated to
the 17,736 images of Galaxy10 DECaLS; the rate does not depend on the catalogue size.

``--layers`` also times the two CPU-specific layers of the networks against the torch
layers they replace (forward and backward, batch 64). ``--compare-layout`` times one
training step and one inference batch of the bare modules in channels-last (what the
estimators use) and in contiguous NCHW memory format. ``--compare-tunables`` runs the
whole benchmark twice, each time in a fresh process: once with glibc's allocator as the
environment leaves it, once with ``GLIBC_TUNABLES`` raising its mmap and trim
thresholds (512 MiB and 1 GiB), which keeps glibc from mapping and zero-filling fresh
pages for every activation above its 32 MiB ceiling; the ``galaxysim`` command raises
the same thresholds at start.

Run::

    python benchmarks/bench_nn.py                    # 2 threads, channels-last
    python benchmarks/bench_nn.py --threads 1 --n-train 1024
    python benchmarks/bench_nn.py --compare-layout   # channels-last vs contiguous NCHW
    python benchmarks/bench_nn.py --precision float32 --layers --compare-tunables
"""

import argparse
import os
import subprocess
import sys
import time
from functools import partial

import numpy as np
import torch

from galaxysim.nn import AEEncoder, CNNClassifierModule, CNNScorer, ConvAutoencoderModule
from galaxysim.nn._modules import Dropout, FewOutputsConv2d

CATALOGUE = 17_736
# forward FLOPs per 64x64 image (multiply-adds x 2); training is about 3x forward
FWD_MFLOP = {"cnn": 28.7, "ae": 61.7, "ae-encode": 31.9}
TRAIN_MFLOP = {"cnn": 86.0, "ae": 185.0}
TUNABLES = "glibc.malloc.mmap_threshold=536870912:glibc.malloc.trim_threshold=1073741824"
"""glibc's allocator thresholds raised to 512 MiB (mmap) and 1 GiB (trim)."""
TARGET = {
    ("cnn", "train"): 900,
    ("ae", "train"): 500,
    ("cnn", "predict"): 4000,
    ("ae", "encode"): 4000,
}


def matmul_peak(n=2048, seconds=2.0, dtype=torch.float32):
    """Best GFLOP/s of an n x n matmul in ``dtype`` over repeated runs."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
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


def bench_layers(repeats=20, batch=64):
    """Forward + backward ms of the fast layers and the torch layers they replace."""
    cl = torch.channels_last

    def fwd_bwd(layer, x):
        def run():
            y = layer(x)
            y.backward(torch.ones_like(y))

        run()
        t = time.perf_counter()
        for _ in range(repeats):
            run()
        return (time.perf_counter() - t) / repeats * 1e3

    x_drop = torch.rand(batch, 32, 32, 32).to(memory_format=cl).requires_grad_()
    conv = torch.nn.Conv2d(32, 3, 3, padding=1).to(memory_format=cl)
    fast = FewOutputsConv2d(32, 3, 3, padding=1).to(memory_format=cl)
    x_conv = torch.rand(batch, 32, 64, 64).to(memory_format=cl).requires_grad_()
    rows = [
        ("dropout p=0.25, 64x32x32x32", fwd_bwd(torch.nn.Dropout(0.25), x_drop),
         fwd_bwd(Dropout(0.25), x_drop)),
        ("conv 32->3 ch, 64x32x64x64", fwd_bwd(conv, x_conv), fwd_bwd(fast, x_conv)),
    ]  # fmt: skip
    print(
        f"{'layer (batch 64, forward+backward)':36} {'torch ms':>9} {'galaxysim ms':>12} {'speed-up':>8}"
    )
    for name, ref, ours in rows:
        print(f"{name:36} {ref:9.2f} {ours:12.2f} {ref / ours:7.1f}x")
    print()


def bench_layout(repeats=10, batch=64, infer_batch=128, size=64):
    """Images/s of the bare modules' training step and inference in both memory formats.

    The estimators always run channels-last; this times the alternative on the modules
    themselves (Adam step on a batch of ``batch``; inference on ``infer_batch``).
    """
    nets = {
        "cnn": (
            lambda: CNNClassifierModule(n_classes=5, in_channels=3, image_size=(size, size)),
            lambda m, x: torch.nn.functional.cross_entropy(m(x), torch.zeros(len(x), dtype=int)),
        ),
        "ae": (
            lambda: ConvAutoencoderModule(latent_dim=64, in_channels=3, image_size=(size, size)),
            lambda m, x: torch.nn.functional.mse_loss(m(x), x),
        ),
    }
    print(f"{'module':6} {'layout':13} {'train img/s':>11} {'infer img/s':>11}")
    for name, (make, loss_fn) in nets.items():
        for layout in (torch.channels_last, torch.contiguous_format):
            torch.manual_seed(0)
            module = make().to(memory_format=layout)
            opt = torch.optim.Adam(module.parameters(), lr=1e-3)
            x = torch.rand(batch, 3, size, size).contiguous(memory_format=layout)
            xi = torch.rand(infer_batch, 3, size, size).contiguous(memory_format=layout)

            def step(module=module, opt=opt, x=x, loss_fn=loss_fn):
                opt.zero_grad()
                loss_fn(module, x).backward()
                opt.step()

            def infer(module=module, xi=xi):
                with torch.inference_mode():
                    module(xi)

            module.train()
            step()
            train = batch * repeats / time_call(lambda: [step() for _ in range(repeats)], 2)
            module.eval()
            infer()
            rate = infer_batch * repeats / time_call(lambda: [infer() for _ in range(repeats)], 2)
            label = "channels_last" if layout is torch.channels_last else "NCHW"
            print(f"{name:6} {label:13} {train:11.0f} {rate:11.0f}")
    print()


def bench(n_train, n_infer, threads, batch_size, epochs, precision="float32", repeats=3):
    X, y = synthetic_images(max(n_train, n_infer))
    rows = []
    common = dict(
        max_epochs=epochs,
        batch_size=batch_size,
        validation_fraction=None,
        n_jobs=threads,
        precision=precision,
        random_state=0,
    )
    time_ = partial(time_call, repeats=repeats)
    cnn = CNNScorer(**common).fit(X[:n_train], y[:n_train])
    # the fastest epoch after the first (noise on a shared machine only slows things down)
    rows.append(("cnn", "train", n_train / min(h["dur"] for h in cnn.history_[1:])))
    rows.append(("cnn", "predict", n_infer / time_(lambda: cnn.predict_proba(X[:n_infer]))))
    ae = AEEncoder(**common).fit(X[:n_train])
    rows.append(("ae", "train", n_train / min(h["dur"] for h in ae.history_[1:])))
    rows.append(("ae", "encode", n_infer / time_(lambda: ae.transform(X[:n_infer]))))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=2048)
    p.add_argument("--n-infer", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="the fastest epoch after the first")
    p.add_argument("--repeats", type=int, default=3, help="inference: best of this many")
    p.add_argument(
        "--precision",
        choices=["float32", "bfloat16", "both"],
        default="both",
        help="arithmetic of the forward passes (default: both)",
    )
    p.add_argument("--layers", action="store_true", help="also time the fast layers")
    p.add_argument(
        "--compare-tunables",
        action="store_true",
        help="run twice in fresh processes: glibc's allocator as the environment leaves "
        "it, then with GLIBC_TUNABLES raising its mmap and trim thresholds",
    )
    p.add_argument(
        "--compare-layout",
        action="store_true",
        help="also time the bare modules in contiguous NCHW against channels-last",
    )
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is not timed)")
    if args.compare_tunables:
        return compare_tunables([a for a in (argv or sys.argv[1:]) if a != "--compare-tunables"])

    torch.set_num_threads(args.threads)
    precisions = ["float32", "bfloat16"] if args.precision == "both" else [args.precision]
    peak = matmul_peak()
    # a CPU without native bfloat16 takes minutes per matmul: only measure when needed
    peak16 = matmul_peak(dtype=torch.bfloat16) if "bfloat16" in precisions else None
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}")
    print(f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")
    print(f"float32 matmul peak:  {peak:.1f} GFLOP/s (2048x2048, best of repeats)")
    if peak16 is not None:
        print(f"bfloat16 matmul peak: {peak16:.1f} GFLOP/s (same; bf16 in, fp32 accumulation)")
    print()
    if args.layers:
        bench_layers()
    if args.compare_layout:
        bench_layout()
    header = (
        f"{'model':5} {'phase':8} {'precision':9} {'images/s':>9} "
        f"{'GFLOP/s':>8} {'% fp32 pk':>9} {'% bf16 pk':>9} {'s/17,736':>8} {'target':>6}  verdict"
    )
    print(header)
    print("-" * len(header))
    results = []
    for precision in precisions:
        rows = bench(
            args.n_train,
            args.n_infer,
            args.threads,
            args.batch_size,
            args.epochs,
            precision=precision,
            repeats=args.repeats,
        )
        for model, phase, rate in rows:
            key = "ae-encode" if phase == "encode" else model
            mflop = TRAIN_MFLOP[model] if phase == "train" else FWD_MFLOP[key]
            gflops = rate * mflop / 1e3
            target = TARGET[(model, phase)]
            pk16 = f"{100 * gflops / peak16:8.1f}%" if precision == "bfloat16" else f"{'-':>9}"
            verdict = "meets" if rate >= target else f"misses ({rate / target:.0%})"
            results.append((model, phase, precision, rate))
            print(
                f"{model:5} {phase:8} {precision:9} {rate:9.0f} {gflops:8.1f} "
                f"{100 * gflops / peak:8.1f}% {pk16} {CATALOGUE / rate:8.1f} "
                f"{target:6d}  {verdict}"
            )
    print(
        "\nrates measured on",
        args.n_train,
        "training and",
        args.n_infer,
        "inference images and extrapolated to 17,736 (per-image cost does not depend on n)",
    )
    print("\nverdict (best precision per row):")
    for (model, phase), target in TARGET.items():
        best = max((r for r in results if r[:2] == (model, phase)), key=lambda r: r[3])
        status = "MEETS" if best[3] >= target else "MISSES"
        print(
            f"  {model:4} {phase:8} target {target:5d} images/s: {status} "
            f"({best[3]:.0f} images/s with {best[2]})"
        )
    return 0


def compare_tunables(argv):
    """Run this benchmark in two fresh processes, without and with :data:`TUNABLES`.

    glibc reads its tunables once at start, so each setting needs its own process.
    """
    untuned = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    runs = [
        ("glibc's allocator defaults (GLIBC_TUNABLES unset)", untuned),
        (f"GLIBC_TUNABLES={TUNABLES}", {**untuned, "GLIBC_TUNABLES": TUNABLES}),
    ]
    status = 0
    for title, env in runs:
        print(f"=== {title}", flush=True)
        done = subprocess.run([sys.executable, __file__, *argv], env=env, check=False)
        status = status or done.returncode
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
