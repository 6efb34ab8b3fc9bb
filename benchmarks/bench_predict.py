"""How fast is `clearface predict`? PyTorch vs onnxruntime, end to end, on the CPU cores available.

    .venv/bin/python benchmarks/bench_predict.py [--model runs/default_s0/model.pt] [--data ../shared/data/val_img.zip]

End to end = wall time of a fresh ``clearface predict`` process (interpreter start, imports, model
load, zip read + decode, scoring, writing labels), the way a user runs it. Measured separately, in
this process: zip read + decode alone (``load_images(..., use_cache=False)``) and scoring alone on
the decoded array. The onnx engine is run twice: cold (first use: exports the model to the cache)
and warm (cached export). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "val_img.zip"
DEFAULT_MODEL = ROOT / "runs" / "default_s0" / "model.pt"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def _run_predict(model, data, engine, cache, out_dir, tag) -> tuple[float, str]:
    out = Path(out_dir) / f"labels_{tag}.txt"
    env = dict(os.environ, CLEARFACE_CACHE_DIR=str(cache))
    cmd = [sys.executable, "-m", "clearface.cli", "predict", "--data", str(data), "--out", str(out),
           "--engine", engine, "--cache-dir", str(cache)]
    if model:
        cmd += ["--model", str(model)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return dt, out.read_text()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: runs/default_s0/model.pt if present, else the packaged model")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--no-torch", action="store_true", help="onnxruntime only (PyTorch runs of big ensembles take minutes)")
    args = ap.parse_args(argv)

    from clearface.data import list_images, load_images
    from clearface.engines import load_engine
    from clearface.modelfile import resolve_model_path

    model = args.model or (str(DEFAULT_MODEL) if DEFAULT_MODEL.exists() else None)
    model_path = resolve_model_path(model)
    data = Path(args.data)
    n = len(list_images(data))
    cores = _cores()
    print(f"model {model_path}; data {data} ({n} images); {cores} CPU cores; "
          f"load average {os.getloadavg()[0]:.2f}", file=sys.stderr)

    t0 = time.perf_counter()
    imgs = load_images(data, use_cache=False)
    t_decode = time.perf_counter() - t0

    rows = []
    with tempfile.TemporaryDirectory(prefix="clearface_bench_") as tmp:
        cache = Path(tmp) / "cache"
        runs = [("torch", "torch")] * (not args.no_torch) + [("onnx (cold: exports)", "onnx"), ("onnx (cached export)", "onnx")]
        outputs, e2e = {}, {}
        for tag, engine in runs:
            dt, text = _run_predict(model, data, engine, cache, tmp, tag.split()[0] + str(len(e2e)))
            e2e[tag], outputs[tag] = dt, text
            print(f"  {tag}: {dt:.1f} s end to end", file=sys.stderr)
        ref = outputs[runs[0][0]].split()
        n_diff = max(sum(a != b for a, b in zip(ref, v.split())) + abs(len(ref) - len(v.split()))
                     for v in outputs.values())

        score_only = {}
        for engine in sorted({e for _, e in runs}):
            fn = load_engine(model, engine=engine, cache_dir=cache).score
            fn(imgs.images[:64], batch_size=64)  # warm-up
            t0 = time.perf_counter()
            fn(imgs.images, batch_size=args.batch_size)
            score_only[engine] = time.perf_counter() - t0

    for tag, engine in runs:
        rows.append((tag, e2e[tag], n / e2e[tag], t_decode / e2e[tag], n / score_only[engine]))

    print(f"\n`clearface predict` on {n} images ({data.name}), {cores} CPU cores, batch {args.batch_size}, "
          f"model `{model_path.name}`\n")
    print("| engine | end to end (s) | images/s end to end | zip read + decode share | scoring only (images/s) |")
    print("|---|---:|---:|---:|---:|")
    for tag, t, ips, share, sps in rows:
        print(f"| {tag} | {t:.1f} | {ips:.0f} | {100 * share:.0f}% | {sps:.0f} |")
    print(f"\nzip read + decode alone: {t_decode:.1f} s ({n / t_decode:.0f} images/s); "
          f"labels differing between engines: {n_diff}")
    if "torch" in e2e:
        ratio = e2e["torch"] / e2e["onnx (cached export)"]
        print(f"onnx (cached) vs torch end to end: {ratio:.2f}x; scoring only: "
              f"{score_only['torch'] / score_only['onnx']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
