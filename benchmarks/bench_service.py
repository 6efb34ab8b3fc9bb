"""A bounded local load test of `clearface serve`: loopback only, fixed request count, stops by itself.

    .venv/bin/python benchmarks/bench_service.py [--model M] [--requests 400] [--concurrency 4]

Starts the server on 127.0.0.1 (a free port) in a subprocess, sends ``--requests`` single-image
``POST /predict`` requests of real 64x64 JPEGs from ``--concurrency`` client threads (one httpx
client each), then stops the server and prints latency p50/p99, requests/s and the error count
as a markdown table. The clients and the server share this machine's cores.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "val_img.zip"
DEFAULT_MODEL = ROOT / "runs" / "default_s0" / "model.pt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _real_images(path: Path, n: int) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        names = sorted(i.filename for i in zf.infolist() if i.filename.lower().endswith((".jpg", ".jpeg", ".png")))[:n]
        return [(Path(name).name, zf.read(name)) for name in names]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: runs/default_s0/model.pt if present, else the packaged model")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="zip of real images to send")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--engine", default="auto", choices=("auto", "torch", "onnx"))
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--startup-timeout", type=float, default=180)
    args = ap.parse_args(argv)

    import httpx
    import numpy as np

    model = args.model or (str(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None)
    images = _real_images(Path(args.data), min(args.requests, 500))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="clearface_bench_service_") as tmp:
        env = dict(os.environ, CLEARFACE_CACHE_DIR=str(Path(tmp) / "cache"))
        cmd = [sys.executable, "-m", "clearface.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--engine", args.engine, "--log-level", "warning"]
        if model:
            cmd += ["--model", str(model)]
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log:
            server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + args.startup_timeout
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"server exited ({server.returncode}):\n{log_path.read_text()[-2000:]}")
                try:
                    health = httpx.get(base + "/health", timeout=2).json()
                    break
                except (httpx.HTTPError, ValueError):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"server did not start in {args.startup_timeout:.0f} s") from None
                    time.sleep(0.3)
            print(f"server up: {health['model']} ({', '.join(health['members'])}; engine {health['engine']}); "
                  f"{len(os.sched_getaffinity(0))} CPU cores shared by server and clients; "
                  f"load average {os.getloadavg()[0]:.2f}", file=sys.stderr)

            with httpx.Client(base_url=base, timeout=30) as c:
                for name, blob in images[:args.warmup]:
                    c.post("/predict", files={"file": (name, blob, "image/jpeg")})

            counter = itertools.count()
            lock = threading.Lock()
            latencies, errors = [], []

            def worker():
                with httpx.Client(base_url=base, timeout=30) as c:
                    while True:
                        i = next(counter)
                        if i >= args.requests:
                            return
                        name, blob = images[i % len(images)]
                        t0 = time.perf_counter()
                        try:
                            r = c.post("/predict", files={"file": (name, blob, "image/jpeg")})
                            ok = r.status_code == 200 and len(r.json()) == 1
                            err = None if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                        except httpx.HTTPError as exc:
                            err = f"{type(exc).__name__}: {exc}"
                        dt = time.perf_counter() - t0
                        with lock:
                            latencies.append(dt)
                            if err:
                                errors.append(err)

            threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    lat = np.array(latencies) * 1000
    print(f"\n`clearface serve` ({health['engine']}, model `{health['model']}`): {args.requests} single-image "
          f"POST /predict, {args.concurrency} concurrent clients, loopback\n")
    print("| requests | concurrency | p50 latency (ms) | p99 latency (ms) | requests/s | errors |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {len(lat)} | {args.concurrency} | {np.percentile(lat, 50):.1f} | {np.percentile(lat, 99):.1f} | "
          f"{len(lat) / wall:.1f} | {len(errors)} |")
    if errors:
        print(f"\nfirst error: {errors[0]}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
