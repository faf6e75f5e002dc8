"""Load on ``galaxysim serve``: concurrent ``/api/search`` requests by index, on loopback.

Starts the command itself (``galaxysim serve --n-catalog N --port 0``, the built-in
catalogue; the ``ae`` method with an autoencoder trained for one epoch on a small
catalogue by ``galaxysim train``: its latency does not depend on its quality), then,
per method, ``--clients`` threads (one keep-alive connection each) send ``--requests``
``GET /api/search?index=I&method=M&k=10`` for random catalogue rows. Prints, per
method: errors (any status but 200, any exception), p50/p95/p99/max latency,
throughput, and the server's resident memory after the first 500 and after the last
500 requests (flat: no growth per request). Bounded: everything stops at ``--timeout``
seconds, and the server is stopped at the end. Results in docs/benchmarks.md::

    python benchmarks/bench_serve.py                      # 17,736 images, mse,maxabs,ae
    python benchmarks/bench_serve.py --n 2000 --requests 400 --methods mse   # a quick look
"""

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def rss_mib(pid):
    """Resident memory of process ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(args, model_dir):
    cmd = [sys.executable, "-m", "galaxysim.cli", "serve", "--n-catalog", str(args.n)]
    cmd += ["--method", args.methods, "--port", "0", "--host", "127.0.0.1"]
    if model_dir is not None:
        cmd += ["--model-dir", str(model_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise SystemExit(f"galaxysim serve exited with status {proc.returncode}")
        m = re.search(r"open (http://\S+/)", line)
        if m:
            return proc, m[1]
    proc.terminate()
    raise SystemExit("galaxysim serve did not start in time")


def load(address, method, args, pid, deadline):
    """``(latencies in s, errors, rss after the first 500, rss at the end, wall s)``."""
    import httpx

    rng = np.random.default_rng(0)
    indices = rng.integers(0, args.n, args.requests).tolist()
    latencies = [None] * args.requests
    errors, lock = [], threading.Lock()
    done = [0]
    rss = {}
    next_job = iter(range(args.requests))

    def client():
        with httpx.Client(base_url=address, timeout=60) as c:
            for _ in range(3):  # warm the connection (and the server's first requests)
                c.get("/api/search", params={"index": 0, "method": method, "k": 10})
            while time.monotonic() < deadline:
                with lock:
                    j = next(next_job, None)
                if j is None:
                    return
                params = {"index": indices[j], "method": method, "k": 10}
                t0 = time.perf_counter()
                try:
                    r = c.get("/api/search", params=params)
                    ok = r.status_code == 200 and len(r.json()) == 10
                    why = f"HTTP {r.status_code}"
                except Exception as exc:  # counted, never fatal
                    ok, why = False, repr(exc)
                latencies[j] = time.perf_counter() - t0
                with lock:
                    if not ok:
                        errors.append(why)
                    done[0] += 1
                    if done[0] == 500:
                        rss["first"] = rss_mib(pid)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    missing = sum(lat is None for lat in latencies)
    if missing:
        errors += [f"{missing} requests not sent before --timeout"]
    lat = np.array([v for v in latencies if v is not None])
    return lat, errors, rss.get("first", float("nan")), rss_mib(pid), wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=17736, help="built-in catalogue size")
    parser.add_argument("--methods", default="mse,maxabs,ae")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000, help="per method")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds, all in all")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    methods = [m.strip() for m in args.methods.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = None
        deep = [m for m in methods if m in ("ae", "vae", "cnn")]
        if deep:
            model_dir = Path(tmp) / "models"
            train = [sys.executable, "-m", "galaxysim.cli", "train", "-q", "--n-catalog", "512"]
            train += ["--method", ",".join(deep), "--epochs", "1", "--model-dir", str(model_dir)]
            subprocess.run(train, check=True, timeout=args.timeout)
        t0 = time.perf_counter()
        proc, address = start_server(args, model_dir)
        started = time.perf_counter() - t0
        try:
            print(
                f"galaxysim serve --n-catalog {args.n} --method {args.methods}: started in "
                f"{started:.0f} s, {rss_mib(proc.pid):.0f} MiB resident; {args.clients} "
                f"clients, {args.requests} requests per method, k=10, loopback"
            )
            print(
                f"{'method':<8}{'errors':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
                f"{'max ms':>9}{'req/s':>8}{'RSS@500':>9}{'RSS end':>9}"
            )
            for method in methods:
                lat, errors, first, last, wall = load(address, method, args, proc.pid, deadline)
                p50, p95, p99 = (np.percentile(lat, q) * 1000 for q in (50, 95, 99))
                print(
                    f"{method:<8}{len(errors):>7}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}"
                    f"{lat.max() * 1000:>9.1f}{len(lat) / wall:>8.1f}{first:>8.0f}M"
                    f"{last:>8.0f}M",
                    flush=True,
                )
                if errors:
                    print(f"  first errors: {errors[:3]}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
