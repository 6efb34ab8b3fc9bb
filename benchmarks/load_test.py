"""A bounded mixed load on `clearface serve`, hostile requests included: is memory flat, is nothing a 5xx?

    nice -n 10 .venv/bin/python benchmarks/load_test.py [--minutes 10] [--clients 4] [--max-requests 50000]

Loopback only: starts the server on 127.0.0.1 (a free port) in a subprocess, runs ``--clients``
client threads for ``--minutes`` (or until ``--max-requests``), then stops the server and itself.
Each request is drawn (seeded) from this mix:

==================  =============================================================  ==========
kind                what is sent                                                   expected
==================  =============================================================  ==========
crops               4 real 64x64 JPEGs (multipart)                                 200
photo               a 640x480 PNG with 1-3 pasted real faces (detect path)         200
big_photo           a 1600x1000 JPEG with 2 faces                                  200
blank_4096          one blank 4096x4096 PNG (decoded, no face found)               200
blank_4096_x64      64 blank 4096x4096 PNGs in one request (about 1 MB)            413
bomb                a PNG header claiming 100000x100000                            413
saliency            8 crops with ?saliency=1 (Grad-CAM on the first few)           200
not_image           a text file                                                    422
truncated_file      the first half of a JPEG                                       422
truncated_body      Content-Length 200 kB, 5 kB sent, then the client hangs up     (no answer)
stalled_body        Content-Length 200 kB, 5 kB sent, then silence                 408
==================  =============================================================  ==========

The server's RSS is sampled every 0.5 s from /proc: at the start (after one request of each kind,
which loads the detector and Grad-CAM, and ``--warmup-minutes`` of the same load, which fills
thread pools, allocator arenas and kernel caches once), its peak, and at the end (after the
load, 3 s idle), with a per-minute line. Prints markdown tables; exits 1 if any answer is a 5xx other than 503, or RSS grew by more
than ``--max-growth`` (default 10 %).
"""

from __future__ import annotations

import argparse
import contextlib
import collections
import io
import os
import socket
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ZIP = ROOT.parent / "shared" / "data" / "train_img.zip"
TRAIN_LABELS = ROOT.parent / "shared" / "data" / "label_train.txt"
KINDS = {  # kind: (weight, expected status)
    "crops": (20, 200), "photo": (20, 200), "big_photo": (8, 200), "blank_4096": (3, 200),
    "blank_4096_x64": (3, 413), "bomb": (5, 413), "saliency": (6, 200), "not_image": (8, 422),
    "truncated_file": (8, 422), "truncated_body": (4, None), "stalled_body": (2, 408),
}


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _encode(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def build_payloads(seed: int = 0) -> dict:
    """Every request body of the mix, made once: ``kind -> list of (files, query)``."""
    import numpy as np
    from PIL import Image

    from clearface.faces.synthetic import compose_photo, png_header_only
    labels = np.array(TRAIN_LABELS.read_text().split(), dtype=np.int8)
    with zipfile.ZipFile(TRAIN_ZIP) as zf:
        jpegs = [zf.read(f"train_img/{i:06d}.jpg") for i in range(5001, 5201)]
    crops = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in jpegs]
    lab = labels[5000:5200]
    photos = [_encode(compose_photo(crops, lab, size=(640, 480), faces=(1, 3), seed=seed + i).image, "PNG")
              for i in range(12)]
    big = [_encode(compose_photo(crops, lab, size=(1600, 1000), faces=2, face_sides=(120, 300),
                                 seed=seed + 100 + i).image, "JPEG", quality=90) for i in range(4)]
    blank = _encode(Image.new("L", (4096, 4096), 200), "PNG", optimize=True)

    def files(items):
        return [("file", (name, data, "application/octet-stream")) for name, data in items]

    return {
        "crops": [(files([(f"c{j}.jpg", jpegs[(4 * i + j) % len(jpegs)]) for j in range(4)]), "") for i in range(40)],
        "photo": [(files([(f"photo{i}.png", p)]), "") for i, p in enumerate(photos)],
        "big_photo": [(files([(f"big{i}.jpg", b)]), "") for i, b in enumerate(big)],
        "blank_4096": [(files([("blank.png", blank)]), "")],
        "blank_4096_x64": [(files([(f"blank{i}.png", blank) for i in range(64)]), "")],
        "bomb": [(files([("bomb.png", png_header_only(100_000, 100_000))]), "")],
        "saliency": [(files([(f"s{j}.jpg", jpegs[(8 * i + j) % len(jpegs)]) for j in range(8)]), "?saliency=1")
                     for i in range(10)],
        "not_image": [(files([("notes.txt", b"I am not an image, " * 50)]), "")],
        "truncated_file": [(files([(f"cut{i}.jpg", jpegs[i][: len(jpegs[i]) // 2])]), "") for i in range(10)],
    }


def raw_partial(port: int, stall: bool) -> str:
    """A body shorter than its Content-Length: hang up (``stall=False``) or wait for the server's answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                  b"Content-Length: 200000\r\n\r\n" + b"\x89PNG" + b"\x00" * 5000)
        if not stall:
            return "closed"
        answer = s.recv(64)
    return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "no answer"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: the packaged model")
    ap.add_argument("--engine", default="auto", choices=("auto", "torch", "onnx"))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=50_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth, start to end")
    ap.add_argument("--warmup-minutes", type=float, default=1.0,
                    help="mixed load before 'start' is measured: thread pools, allocator arenas and kernel "
                    "caches fill up once; what the test looks for is growth after that")
    args = ap.parse_args(argv)

    import httpx
    import numpy as np

    from clearface.serve.server import spawned

    payloads = build_payloads(args.seed)
    counts: dict = collections.defaultdict(collections.Counter)
    latencies: dict = collections.defaultdict(list)
    unexpected: list[str] = []
    lock = threading.Lock()

    with tempfile.TemporaryDirectory(prefix="clearface_load_") as tmp:
        env = dict(os.environ, CLEARFACE_CACHE_DIR=os.environ.get("CLEARFACE_CACHE_DIR", str(Path(tmp) / "cache")))
        cmd = ["--engine", args.engine, "--log-level", "warning"] + (["--model", args.model] if args.model else [])
        log_path = Path(tmp) / "server.log"
        with contextlib.ExitStack() as stack:
            try:
                base, health, server = stack.enter_context(spawned(cmd, log_path=log_path, env=env))
            except RuntimeError as exc:
                raise SystemExit(str(exc)) from None
            port = int(base.rsplit(":", 1)[1])

            def one(client, kind, rng) -> None:
                t0 = time.perf_counter()
                try:
                    if kind in ("truncated_body", "stalled_body"):
                        status = raw_partial(port, stall=kind == "stalled_body")
                    else:
                        files, query = payloads[kind][int(rng.integers(len(payloads[kind])))]
                        r = client.post("/predict" + query, files=files)
                        status = str(r.status_code)
                        if r.status_code >= 500 and r.status_code != 503:
                            with lock:
                                unexpected.append(f"{kind}: HTTP {r.status_code} {r.text[:200]}")
                except (httpx.HTTPError, OSError) as exc:
                    status = f"client error ({type(exc).__name__})"
                with lock:
                    counts[kind][status] += 1
                    latencies[kind].append(time.perf_counter() - t0)

            with httpx.Client(base_url=base, timeout=60) as c:  # warm-up: detector, Grad-CAM, every path
                rng0 = np.random.default_rng(args.seed)
                for kind in KINDS:
                    one(c, kind, rng0)
            rss_warm0 = _rss_mb(server.pid)
            kinds = list(KINDS)
            weights = np.array([KINDS[k][0] for k in kinds], float)
            weights /= weights.sum()
            sent = iter(range(args.max_requests))

            def client_loop(i, until):
                rng = np.random.default_rng(args.seed + 1000 * (1 + i) + int(until))
                with httpx.Client(base_url=base, timeout=60) as c:
                    while time.monotonic() < until:
                        with lock:
                            if next(sent, None) is None:
                                return
                        one(c, kinds[int(rng.choice(len(kinds), p=weights))], rng)

            def run_clients(seconds):
                until = time.monotonic() + seconds
                threads = [threading.Thread(target=client_loop, args=(i, until)) for i in range(args.clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()

            run_clients(60 * args.warmup_minutes)
            rss_warm = _rss_mb(server.pid)
            counts.clear()
            latencies.clear()
            sent = iter(range(args.max_requests))
            time.sleep(3)
            rss = [(0.0, _rss_mb(server.pid))]
            t_start = time.monotonic()
            stop = threading.Event()

            def sampler():
                while not stop.wait(0.5):
                    try:
                        rss.append((time.monotonic() - t_start, _rss_mb(server.pid)))
                    except OSError:
                        return

            sampling = threading.Thread(target=sampler, daemon=True)
            sampling.start()
            run_clients(60 * args.minutes)
            wall = time.monotonic() - t_start
            time.sleep(3)
            stop.set()
            sampling.join()
            rss_end = _rss_mb(server.pid)
        tracebacks = log_path.read_text(errors="replace").count("Traceback")

    rss_start, rss_peak = rss[0][1], max(v for _, v in rss)
    growth = rss_end / rss_start - 1
    total = sum(sum(c.values()) for c in counts.values())
    statuses = sorted({s for c in counts.values() for s in c})
    print(f"\n`clearface serve` ({health['engine']}, model `{health['model']}`) under a mixed load: {args.clients} "
          f"clients, {wall / 60:.1f} min, {total} requests ({total / wall:.1f}/s); "
          f"{len(os.sched_getaffinity(0))} CPU cores shared by server and clients\n")
    print(f"RSS after the model loaded and one request of each kind: {rss_warm0:.0f} MB; after "
          f"{args.warmup_minutes:g} min of warm-up load: {rss_warm:.0f} MB.\n")
    print("| RSS start (MB) | RSS peak (MB) | RSS end (MB) | growth start to end | server tracebacks |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {rss_start:.0f} | {rss_peak:.0f} | {rss_end:.0f} | {100 * growth:+.1f} % | {tracebacks} |\n")
    marks = [m for m in range(1, int(wall // 60) + 1)]
    if marks:  # the shape over time: flat, or a slope?
        at = {m: max((v for t, v in rss if t <= 60 * m), default=float("nan")) for m in marks}
        last = {m: [v for t, v in rss if t <= 60 * m][-1] for m in marks}
        print("| minute | " + " | ".join(str(m) for m in marks) + " |")
        print("|---|" + "---:|" * len(marks))
        print("| RSS (MB) | " + " | ".join(f"{last[m]:.0f}" for m in marks) + " |")
        print("| peak so far (MB) | " + " | ".join(f"{at[m]:.0f}" for m in marks) + " |\n")
    print("| kind | expected | " + " | ".join(statuses) + " | p50 (ms) | p99 (ms) |")
    print("|---|---:|" + "---:|" * len(statuses) + "---:|---:|")
    for kind in KINDS:
        lat = np.array(latencies.get(kind) or [np.nan]) * 1000
        cells = " | ".join(str(counts[kind].get(s, 0)) for s in statuses)
        exp = KINDS[kind][1] or "closed"
        print(f"| {kind} | {exp} | {cells} | {np.percentile(lat, 50):.0f} | {np.percentile(lat, 99):.0f} |")
    every = collections.Counter()
    for c in counts.values():
        every.update(c)
    print("| **all** | | " + " | ".join(str(every.get(s, 0)) for s in statuses) + " | | |")
    if unexpected:
        print(f"\n{len(unexpected)} unexpected 5xx; first: {unexpected[0]}")
    ok = not unexpected and growth <= args.max_growth
    print(f"\nverdict: {'PASS' if ok else 'FAIL'} (5xx other than 503: {len(unexpected)}; "
          f"RSS growth {100 * growth:+.1f} % vs limit {100 * args.max_growth:.0f} %)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
