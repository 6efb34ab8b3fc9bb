"""A bounded local load test of `clearface serve`: loopback only, fixed request count, stops by itself.

    .venv/bin/python benchmarks/bench_service.py [--model M] [--requests 400] [--concurrency 4] [--photos]

Starts the server on 127.0.0.1 (a free port) in a subprocess, sends ``--requests`` single-image
``POST /predict`` requests from ``--concurrency`` client threads (one httpx client each): real
64x64 JPEGs (scored whole, ``crop``), or with ``--photos`` 640x480 PNGs with 1-3 real faces
pasted in (face detection, ``detect``). Then stops the server and prints latency p50/p99,
requests/s, the 503s (load shed by the server, retried after its ``Retry-After``) and the
error count as a markdown table. The clients and the server share this machine's cores.
For a mixed, hostile load and memory over time, see ``benchmarks/load_test.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "val_img.zip"
DEFAULT_MODEL = ROOT / "runs" / "default_s0" / "model.pt"


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
    ap.add_argument("--engine", default="auto", choices=("auto", "torch", "onnx", "int8"))
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--startup-timeout", type=float, default=180)
    ap.add_argument("--photos", action="store_true", help="send composed 640x480 photos with faces (detect path)")
    args = ap.parse_args(argv)

    import httpx
    import numpy as np

    model = args.model or (str(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None)
    images = _real_images(Path(args.data), min(args.requests, 500))
    kind = "64x64 crops"
    if args.photos:
        import io

        from PIL import Image

        from clearface.faces.synthetic import compose_photo
        crops = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for _, b in images[:200]]
        photos = []
        for i in range(24):
            buf = io.BytesIO()
            compose_photo(crops, np.zeros(len(crops)), size=(640, 480), faces=(1, 3), seed=i).image.save(buf, "PNG")
            photos.append((f"photo{i}.png", buf.getvalue()))
        images, kind = photos, "640x480 photos with 1-3 faces"
    from clearface.serve.server import spawned
    cmd = ["--engine", args.engine, "--log-level", "warning"] + (["--model", str(model)] if model else [])
    with tempfile.TemporaryDirectory(prefix="clearface_bench_service_") as tmp:
        env = dict(os.environ, CLEARFACE_CACHE_DIR=str(Path(tmp) / "cache"))
        with contextlib.ExitStack() as stack:
            try:
                base, health, _ = stack.enter_context(
                    spawned(cmd, log_path=Path(tmp) / "server.log", env=env, startup_timeout=args.startup_timeout))
            except RuntimeError as exc:
                raise SystemExit(str(exc)) from None
            print(f"server up: {health['model']} ({', '.join(health['members'])}; engine {health['engine']}); "
                  f"{len(os.sched_getaffinity(0))} CPU cores shared by server and clients; "
                  f"load average {os.getloadavg()[0]:.2f}", file=sys.stderr)

            with httpx.Client(base_url=base, timeout=30) as c:
                for name, blob in images[:args.warmup]:
                    c.post("/predict", files={"file": (name, blob, "image/jpeg")})

            counter = itertools.count()
            lock = threading.Lock()
            latencies, errors, shed = [], [], []

            def worker():
                with httpx.Client(base_url=base, timeout=30) as c:
                    while True:
                        i = next(counter)
                        if i >= args.requests:
                            return
                        name, blob = images[i % len(images)]
                        t0 = time.perf_counter()
                        try:
                            r = c.post("/predict", files={"file": (name, blob, "application/octet-stream")})
                            while r.status_code == 503:  # shed: come back as told
                                with lock:
                                    shed.append(1)
                                time.sleep(float(r.headers.get("retry-after", 1)))
                                r = c.post("/predict", files={"file": (name, blob, "application/octet-stream")})
                            ok = r.status_code == 200 and len(r.json()) == 1 and r.json()[0]["faces"] is not None
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

    lat = np.array(latencies) * 1000
    print(f"\n`clearface serve` ({health['engine']}, model `{health['model']}`): {args.requests} single-image "
          f"POST /predict of {kind}, {args.concurrency} concurrent clients, loopback\n")
    print("| images | requests | concurrency | p50 latency (ms) | p99 latency (ms) | requests/s | 503 (retried) | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {kind} | {len(lat)} | {args.concurrency} | {np.percentile(lat, 50):.1f} | {np.percentile(lat, 99):.1f} | "
          f"{len(lat) / wall:.1f} | {len(shed)} | {len(errors)} |")
    if errors:
        print(f"\nfirst error: {errors[0]}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
