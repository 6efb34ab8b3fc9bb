"""Decoding 64x64 JPEG crops: PIL vs the simplejpeg fast path that ``clearface`` uses, on every image.

    .venv/bin/python benchmarks/bench_decode.py [--data ../shared/data/train_img.zip ../shared/data/val_img.zip]

For each zip: how many images take the fast path, whether every one of them gives PIL's pixels
exactly (the cache, the hashes and the scores depend on it), and the cost per crop of each decoder,
both timed in this run (alternating blocks, best of 3), zip reading excluded. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _pil(data: bytes) -> np.ndarray:
    from PIL import Image

    from clearface.data.ingest import to_rgb64
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return to_rgb64(img)


def _per_crop(fn, blobs, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for b in blobs:
            fn(b)
        best = min(best, (time.perf_counter() - t0) / len(blobs))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=[str(DATA / "train_img.zip"), str(DATA / "val_img.zip")])
    ap.add_argument("--timed", type=int, default=5000, help="images per zip in the timing")
    args = ap.parse_args(argv)
    from clearface.data.ingest import _colour_jpeg64, listed

    print("| data | images | fast path | pixels equal to PIL | PIL (us/crop) | fast path (us/crop) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for path in args.data:
        p, names = listed(path)
        fast = equal = 0
        with zipfile.ZipFile(p) as zf:
            timed = []
            for i, name in enumerate(names):
                b = zf.read(name)
                arr = _colour_jpeg64(b)
                if arr is not None:
                    fast += 1
                    equal += bool(np.array_equal(arr, _pil(b)))
                if i < args.timed:
                    timed.append(b)
        t_pil = _per_crop(_pil, timed)
        t_fast = _per_crop(_colour_jpeg64, timed)
        print(f"| {p.name} | {len(names)} | {fast} | {equal} | {t_pil * 1e6:.1f} | {t_fast * 1e6:.1f} | "
              f"{t_pil / t_fast:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
