"""Peak memory of reading images: a large query image, and a folder of many small ones.

Cases (the issue's memory items, each against a reference from the same run):

(a) a 10,000 x 10,000 RGB PNG read as a query, the CLI's way: the one image reader
    (``galaxysim.utils._imread.read_image``) and the framing (``frame_images``, to
    64 x 64); reported as a ratio to its decoded size (width x height x 3 bytes);
(b) the same for a 10,000 x 10,000 16-bit grey PNG (decoded size: 2 bytes a pixel);
(c) ``load_image_folder`` of N 256 x 256 RGB PNGs framed to 64 x 64, one thread;
    reported as a ratio to the result array's size (N x 64 x 64 x 3 bytes).

Each case runs in a fresh process, started by a fresh measuring process that reads
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` once its only child has exited: the
child's peak resident memory, page-touched allocations of every library included. The
extra memory of a case is that peak minus the peak of its baseline child, measured in
the same run: the same imports and the same code run on a tiny input (a 100 x 100 PNG
of the same kind, a folder of 2 images), so that imports, numba's compiled kernels and
thread pools count in both. A first, unmeasured run of the baseline fills numba's
on-disk cache of each checkout (compiling takes more memory than loading).

``--old PATH`` runs every case a second time with ``PYTHONPATH=PATH``, a checkout of
earlier code, so that both figures come from one run on one machine. Code from before
the one image reader has no ``read_image``: there the query is read by the CLI's own
``galaxysim.cli._main._read_image`` of that time (then framed the same way).

The images are made once and kept in ``--data`` (default ``/tmp/galaxysim-bench-images``:
two 10,000 x 10,000 PNGs, about 35 MB, and a folder of N PNGs). Run::

    python benchmarks/bench_image_memory.py
    python benchmarks/bench_image_memory.py --old /tmp/old-main     # before/after
    python benchmarks/bench_image_memory.py --n 200 --size 2000     # a quick run

Prints one table; docs/benchmarks.md reports it.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CASES = ("query-rgb", "query-grey16", "folder")

# run in the measured child: imports, then one case (the baseline stops after imports)
_CHILD = r"""
import sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
import numpy as np
from galaxysim.datasets import load_image_folder
from galaxysim.utils._image import frame_images
try:
    from galaxysim.utils._imread import read_image

    def read_query(path):
        return read_image(path)[np.newaxis]
except ImportError:  # code from before the one image reader: the CLI's own reader
    from galaxysim.cli._main import _read_image as read_query

case, path = sys.argv[1], Path(sys.argv[2])
if case.startswith("query"):
    out = frame_images(read_query(path), crop=None, image_size=64)
else:
    out = load_image_folder(path, image_size=64, n_jobs=1, verbose=0).images
import galaxysim
print(out.shape[0], int(out.sum()), galaxysim.__file__)
"""

# the measuring process: one child, then its peak
_MEASURE = r"""
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if p.returncode:
    sys.exit(p.stderr[-2000:])
n_images, _, module = p.stdout.split()
print(n_images, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, module)
"""


def _pngs(rgb, grey, size):
    """A size x size RGB PNG and a 16-bit grey one with some texture (made once)."""
    from PIL import Image

    if not (rgb.exists() and grey.exists()):
        y = np.arange(size, dtype=np.uint16)[:, None]
        x = np.arange(size, dtype=np.uint16)[None, :]
        g = ((x * 3 + y * 2) % 60000).astype(np.uint16)
        rows = np.random.default_rng(0).integers(0, 200, (len(g[::7]), size), dtype=np.uint16)
        g[::7] += rows  # some texture, so the files are not trivially compressible
        Image.fromarray(g).save(grey, compress_level=1)
        img = np.empty((size, size, 3), np.uint8)
        img[..., 0] = g >> 8
        img[..., 1] = x % 256
        img[..., 2] = y % 256
        del g
        Image.fromarray(img).save(rgb, compress_level=1)


def _folder(folder, n):
    """``n`` 256 x 256 RGB PNGs of a blob on noisy sky (made once)."""
    from PIL import Image

    if len(list(folder.glob("*.png"))) == n:
        return
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    r = np.hypot(yy - 128, xx - 128)
    for i in range(n):
        blob = 200 * np.exp(-((r / rng.uniform(10, 60)) ** 2))
        img = blob[..., None] * rng.uniform(0.5, 1.0, 3) + rng.normal(0, 6, (256, 256, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.png")


def make_images(data, n, size):
    """``{case: (input, tiny input of its baseline)}``, the images made once in ``data``."""
    data.mkdir(parents=True, exist_ok=True)
    _pngs(data / f"rgb{size}.png", data / f"grey16_{size}.png", size)
    _pngs(data / "rgb100.png", data / "grey16_100.png", 100)
    _folder(data / f"folder{n}", n)
    _folder(data / "folder2", 2)
    return {
        "query-rgb": (data / f"rgb{size}.png", data / "rgb100.png"),
        "query-grey16": (data / f"grey16_{size}.png", data / "grey16_100.png"),
        "folder": (data / f"folder{n}", data / "folder2"),
    }


def peak_bytes(case, path, pythonpath):
    """Peak resident memory of a fresh process running ``case`` (``ru_maxrss`` is in KiB
    on Linux, bytes on macOS), and the number of images it returned."""
    env = dict(os.environ, PYTHONPATH=pythonpath)
    cmd = [sys.executable, "-c", _MEASURE, sys.executable, "-c", _CHILD, case, str(path)]
    # run outside any checkout: `python -c` puts the working folder first on sys.path
    cwd = Path(path).parent
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if out.returncode:
        raise RuntimeError(f"{case} with PYTHONPATH={pythonpath} failed:\n{out.stderr}")
    n_images, maxrss, module = out.stdout.split()
    if not Path(module).resolve().is_relative_to(Path(pythonpath).resolve()):
        raise RuntimeError(f"{case} imported {module}, not the code in {pythonpath}")
    return int(maxrss) * (1 if sys.platform == "darwin" else 1024), int(n_images)


def reference_bytes(case, path, n):
    """Decoded size of the query image, or the size of the folder's result array."""
    if case == "folder":
        return n * 64 * 64 * 3
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's decompression-bomb warning
        with Image.open(path) as im:
            mode, width, height = im.mode, im.width, im.height
    return width * height * {"RGB": 3, "I;16": 2, "I;16B": 2, "L": 1}[mode]


def measure(paths, pythonpath):
    """``{case: (extra peak, reference, baseline peak)}`` in bytes, with this code."""
    rows = {}
    for case in CASES:
        path, tiny = paths[case]
        peak_bytes(case, tiny, pythonpath)  # warm-up: fills numba's on-disk cache
        base, _ = peak_bytes(case, tiny, pythonpath)
        peak, n_images = peak_bytes(case, path, pythonpath)
        rows[case] = (peak - base, reference_bytes(case, path, n_images), base)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="images in the folder case")
    parser.add_argument("--size", type=int, default=10000, help="side of the large PNGs")
    parser.add_argument("--data", default="/tmp/galaxysim-bench-images", help="image cache")
    parser.add_argument("--old", help="checkout of earlier code, run in the same session")
    args = parser.parse_args(argv)

    paths = make_images(Path(args.data), args.n, args.size)
    new = str(Path(__file__).resolve().parents[1])  # this checkout
    runs = ([("old", args.old)] if args.old else []) + [("new", new)]
    results = {name: measure(paths, path) for name, path in runs}

    mb = 1e6
    bases = ", ".join(
        f"{k} {min(r[2] for r in v.values()) / mb:.0f}-{max(r[2] for r in v.values()) / mb:.0f} MB"
        for k, v in results.items()
    )
    print(f"load average {os.getloadavg()[0]:.2f}; baseline peaks: {bases}")
    print("| case | reference |" + "".join(f" {k}: extra peak |" for k, _ in runs))
    print("|---|---|" + "---|" * len(runs))
    labels = {
        "query-rgb": f"query, {args.size}x{args.size} RGB PNG",
        "query-grey16": f"query, {args.size}x{args.size} 16-bit grey PNG",
        "folder": f"load_image_folder, {args.n} 256x256 PNGs -> 64x64",
    }
    for case in CASES:
        ref = results["new"][case][1]
        what = "result" if case == "folder" else "decoded"
        cells = "".join(
            f" {res[case][0] / mb:,.0f} MB ({res[case][0] / ref:.2f}x) |"
            for res in results.values()
        )
        print(f"| {labels[case]} | {what} {ref / mb:,.1f} MB |{cells}")


if __name__ == "__main__":
    main()
