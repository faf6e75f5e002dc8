"""Float32 inference rate of CNNScorer and AEEncoder against the inference batch size.

Results do not depend on the batch size (beyond float rounding); the speed depends on
whether the largest activation stays under glibc's 32 MiB ceiling for reusing freed
memory. Run it with and without the tunables (results in docs/benchmarks.md)::

    python benchmarks/bench_infer_batch.py
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=536870912:glibc.malloc.trim_threshold=1073741824 \\
        python benchmarks/bench_infer_batch.py
"""

import argparse
import time

import numpy as np

from galaxysim.datasets import make_galaxies
from galaxysim.nn import AEEncoder, CNNScorer
from galaxysim.nn._tensors import inference


def best_rate(fn, n, repeats):
    fn()  # warm-up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="images (64x64x3)")
    parser.add_argument("--batch-sizes", default="128,60,48,32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    X, y = make_galaxies(args.n, image_size=64, random_state=0)
    cnn = CNNScorer(max_epochs=1, random_state=0).fit(X[:256], y[:256])
    ae = AEEncoder(max_epochs=1, random_state=0).fit(X[:256])
    models = {"cnn predict": (cnn, lambda m, x: m(x)), "ae encode": (ae, lambda m, x: m.encode(x))}
    print(f"{'batch':>5}  {'model':<12} images/s")
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        for name, (est, fn) in models.items():
            module = est.net_.module_

            def run(module=module, fn=fn, bs=bs):
                return inference(module, X, fn, batch_size=bs)

            print(f"{bs:>5}  {name:<12} {best_rate(run, len(X), args.repeats):8.0f}", flush=True)


if __name__ == "__main__":
    main()
