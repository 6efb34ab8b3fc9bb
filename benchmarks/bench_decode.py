"""Decoding 64x64 JPEG crops: PIL vs the simplejpeg fast path that ``clearface`` uses, on every image.

    .venv/bin/python benchmarks/bench_decode.py [--data ../shared/data/train_img.zip ../shared/data/val_img.zip] [--cache-build 2]

For each zip: how many images take the fast path, whether every one of them gives PIL's pixels
exactly (the cache, the hashes and the scores depend on it), and the cost per crop of each decoder,
both timed in this run (alternating blocks, best of 3), zip reading excluded. Prints a markdown table.
``--cache-build R``: also the cold build of the first zip's uint8 cache (2 decode processes), with the
fast path and with it switched off (PIL for every image), alternated R times.
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
    ap.add_argument("--cache-build", type=int, default=0, metavar="R", help="also time R cold cache builds per decoder")
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
    if args.cache_build:
        _cache_builds(args.data[0], args.cache_build)
    return 0


def _cache_builds(path, rounds: int) -> None:
    import shutil
    import tempfile

    import clearface.data.ingest as ingest
    from clearface.data import load_images
    fast, times = ingest._colour_jpeg64, {"PIL": [], "simplejpeg": []}
    try:
        for _ in range(rounds):
            for name, fn in (("PIL", lambda data: None), ("simplejpeg", fast)):
                ingest._colour_jpeg64 = fn  # the forked decode workers inherit it
                cache = tempfile.mkdtemp(prefix="clearface_bench_")
                t0 = time.perf_counter()
                load_images(path, cache_dir=cache, workers=2)
                times[name].append(time.perf_counter() - t0)
                shutil.rmtree(cache)
    finally:
        ingest._colour_jpeg64 = fast
    print(f"\ncold cache build of {Path(path).name}, 2 decode processes, {rounds} alternated rounds: " +
          "; ".join(f"{k} {', '.join(f'{t:.1f}' for t in v)} s" for k, v in times.items()))


if __name__ == "__main__":
    sys.exit(main())
