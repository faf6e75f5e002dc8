"""Peak memory and time of ``load_galaxy10`` on a full-size Galaxy10 DECaLS-format file.

Writes a file in the exact Galaxy10 DECaLS layout (``images`` 17,736 x 256 x 256 x 3
uint8, 3.5 GB of pixels, plus ``ans``, ``ra``, ``dec``, ``redshift``, ``pxscale``),
written chunk by chunk, then runs ``load_galaxy10`` in a fresh Python process twice:
cold (empty cache: reads and frames the HDF5 file, writes the cache) and warm (cache
hit). The peak resident memory of each child (its VmHWM, and ``ru_maxrss`` from
``os.wait4``) is compared with a child that only imports galaxysim, and with the
issue's 1.5 GB limit. The file is deleted afterwards unless ``--keep``.

Usage::

    nice python benchmarks/bench_load_galaxy10.py            # full size, ~3.5 GB on disk
    python benchmarks/bench_load_galaxy10.py --n 2000 --keep # quicker, keep the file
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

LIMIT_GB = 1.5
HERE = Path(__file__).resolve().parent

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import galaxysim.datasets as d
t1 = time.perf_counter()
out = {"import_s": t1 - t0}
if sys.argv[1] != "-":
    X, y = d.load_galaxy10(sys.argv[1], cache_dir=sys.argv[2], crop=int(sys.argv[3]),
                           image_size=int(sys.argv[4]), return_X_y=True, verbose=0)
    out.update(load_s=time.perf_counter() - t1, shape=list(X.shape), checksum=int(X[::97].sum()))
try:  # this process's own high-water mark (Linux); ru_maxrss can include the parent's
    with open("/proc/self/status") as f:
        hwm = [line for line in f if line.startswith("VmHWM:")][0]
    out["vmhwm_gb"] = int(hwm.split()[1]) * 1024 / 1e9
except (OSError, IndexError):
    pass
print(json.dumps(out))
"""


def write_file(path, n, size, *, compression=None, block=256, seed=0):
    """Write a Galaxy10 DECaLS-format file of ``n`` random-ish images, chunk by chunk."""
    rng = np.random.default_rng(seed)
    # Smooth-ish "galaxies" plus noise, varied per block by a roll: cheap to make,
    # not constant (so compression, when asked for, does real work).
    yy, xx = np.mgrid[:size, :size]
    r2 = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size / 8) ** 2
    blob = (200 * np.exp(-r2))[..., np.newaxis].astype(np.float32)
    base = np.clip(
        blob + rng.normal(20, 10, size=(block, size, size, 3)).astype(np.float32), 0, 255
    ).astype(np.uint8)
    chunks = (1, size, size, 3) if compression else None
    with h5py.File(path, "w") as f:
        images = f.create_dataset(
            "images",
            shape=(n, size, size, 3),
            dtype=np.uint8,
            chunks=chunks,
            compression=compression,
        )
        for s in range(0, n, block):
            e = min(n, s + block)
            images[s:e] = np.roll(base, s // block, axis=2)[: e - s]
        f.create_dataset("ans", data=rng.integers(0, 10, size=n).astype(np.uint8))
        f.create_dataset("ra", data=rng.uniform(0, 360, size=n))
        f.create_dataset("dec", data=rng.uniform(-30, 60, size=n))
        redshift = rng.uniform(0.01, 0.3, size=n)
        redshift[rng.random(n) < 0.1] = np.nan
        f.create_dataset("redshift", data=redshift)
        f.create_dataset("pxscale", data=rng.choice([0.262, 0.524], size=n))


def run_child(args):
    """Run CHILD with ``args``; return its JSON output, wall time and peak RSS in GB."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *map(str, args)], stdout=subprocess.PIPE, text=True
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child failed with exit code {proc.returncode}")
    # ru_maxrss is in KiB on Linux, bytes on macOS
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 1e9
    out = json.loads(out)
    return out, wall, out.get("vmhwm_gb", rss), rss


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=17736, help="number of images (default 17736)")
    p.add_argument("--size", type=int, default=256, help="image side (default 256)")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument(
        "--compression",
        choices=["none", "gzip", "lzf"],
        default="none",
        help="HDF5 filter of 'images' (chunked one image per chunk when set)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=HERE / "_data",
        help="where the big file is written (default benchmarks/_data, gitignored)",
    )
    p.add_argument("--keep", action="store_true", help="keep the file (and reuse it next time)")
    opts = p.parse_args(argv)

    raw_gb = opts.n * opts.size * opts.size * 3 / 1e9
    opts.data_dir.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(opts.data_dir).free / 1e9
    path = opts.data_dir / f"Galaxy10_DECals_bench_{opts.n}x{opts.size}_{opts.compression}.h5"
    if not path.exists() and free_gb < raw_gb * 1.2 + 1:
        raise SystemExit(
            f"need about {raw_gb * 1.2:.1f} GB free in {opts.data_dir}; {free_gb:.1f} GB free"
        )

    cache = Path(tempfile.mkdtemp(prefix="galaxysim-bench-cache-"))
    try:
        if path.exists():
            print(f"reusing {path}")
            write_s = float("nan")
        else:
            print(
                f"writing {path} ({opts.n} x {opts.size}x{opts.size}x3, {raw_gb:.2f} GB of pixels)"
            )
            t0 = time.perf_counter()
            code = (
                "import sys; sys.path.insert(0, sys.argv[1]); import bench_load_galaxy10 as b; "
                "b.write_file(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), "
                "compression=None if sys.argv[5] == 'none' else sys.argv[5])"
            )
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    code,
                    str(HERE),
                    str(path),
                    str(opts.n),
                    str(opts.size),
                    opts.compression,
                ],
                check=True,
            )
            write_s = time.perf_counter() - t0
        file_gb = path.stat().st_size / 1e9

        base, base_wall, base_hwm, base_maxrss = run_child(["-", "-", 0, 0])
        rows = [("import galaxysim only", base_wall, base_hwm, base_maxrss, "")]
        a = [path, cache, opts.crop, opts.image_size]
        cold, cold_wall, cold_rss, cold_maxrss = run_child(a)
        rows.append(
            ("load_galaxy10 cold (no cache)", cold_wall, cold_rss, cold_maxrss, cold["load_s"])
        )
        warm, warm_wall, warm_rss, warm_maxrss = run_child(a)
        rows.append(
            ("load_galaxy10 warm (cache hit)", warm_wall, warm_rss, warm_maxrss, warm["load_s"])
        )
        assert cold["checksum"] == warm["checksum"] and cold["shape"] == warm["shape"]
        cache_gb = sum(f.stat().st_size for f in cache.iterdir()) / 1e9
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if not opts.keep:
            path.unlink(missing_ok=True)

    print()
    print(
        f"file: {opts.n} images {opts.size}x{opts.size}x3 uint8, raw array {raw_gb:.2f} GB, "
        f"{file_gb:.2f} GB on disk (compression: {opts.compression}); written in {write_s:.1f} s"
    )
    print(
        f"framing: crop={opts.crop}, image_size={opts.image_size} -> {tuple(cold['shape'])}; "
        f"cache file {cache_gb:.3f} GB"
    )
    print()
    print(
        f"| {'run':<32} | {'load s':>7} | {'process s':>9} | {'peak RSS GB':>11} "
        f"| {'ru_maxrss GB':>12} |"
    )
    print(f"|{'-' * 34}|{'-' * 9}|{'-' * 11}|{'-' * 13}|{'-' * 14}|")
    for name, wall, rss, maxrss, load in rows:
        load = f"{load:7.2f}" if load != "" else f"{'':7}"
        print(f"| {name:<32} | {load} | {wall:9.2f} | {rss:11.3f} | {maxrss:12.3f} |")
    print(
        "peak RSS: the child's VmHWM (its own high-water mark); ru_maxrss (os.wait4) also "
        "counts\nthe parent's high-water mark inherited through fork+exec on Linux."
    )
    print()
    ok = cold_rss < LIMIT_GB and warm_rss < LIMIT_GB
    print(
        f"peak RSS cold {cold_rss:.3f} GB, warm {warm_rss:.3f} GB: "
        f"{'under' if ok else 'OVER'} the {LIMIT_GB} GB limit (raw array {raw_gb:.2f} GB)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
