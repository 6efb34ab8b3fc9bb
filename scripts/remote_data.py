"""Move a run's training and validation images to a remote (GPU) machine; keep its held-out images here.

``pack`` reads ``--data``/``--labels`` and a run folder's ``split.csv`` and writes, under ``--out``:
the images of the ``train`` and ``val`` parts as JPEG mosaics of 64 x 64 tiles (a tile is one image; 64
is a multiple of JPEG's 16 px blocks, so tiles never share a block), their positions (``index.npy``),
the split and the labels. One mosaic holds no per-image JPEG headers, which are ~40 % of a 1.6 kB
crop: 70,000 crops pack into ~66 MB at the source's own quality (75) instead of ~120 MB, within a
transfer limit the original zip exceeds. Re-encoding at the same quality changes pixels little
(PSNR ~42 dB against the source's decode, measured on 4,096 crops; ~41 dB after unpack's second encoding).

``unpack`` (on the remote machine) rebuilds a zip with the source's image names and order: the packed
images re-encoded losslessly enough (JPEG q95, no chroma subsampling), every other image (held out) a
flat grey placeholder. The run folder's ``split.csv`` then gives ``clearface train --resume`` the same
parts by position, so the remote run trains on the training part, validates on the validation part,
and has never seen the held-out images. Its held-out figures are meaningless (placeholders); choose tau
and score the held-out part here with ``clearface calibrate --run RUN`` on the original data.

    python scripts/remote_data.py pack --data train_img.zip --labels label_train.txt --split RUN/split.csv --out .gpu
    python scripts/remote_data.py unpack --src .gpu --out /tmp/data.zip     # remote
    python scripts/remote_data.py collect --runs RUNS --out $OUT            # remote, after training
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from clearface.errors import ClearfaceError

TILE = 64
COLUMNS = 128  # tiles per mosaic row; a mosaic of 8,192 tiles is 8192 x 4096 px
PER_MOSAIC = 8192


def _split_rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def pack(data: str, labels: str, split: str, out: str, quality: int = 75) -> None:
    from clearface.data import load_labelled
    from clearface.rundir import RunDir

    run = RunDir(Path(split).parent)
    if run.split_path.resolve() != Path(split).resolve():
        raise ClearfaceError(f"{split}: give a run folder's split.csv")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    imageset, y = load_labelled(data, labels)
    parts = run.read_split(imageset.names)  # checks it names --data's images, in order
    keep = np.flatnonzero(np.isin(parts, ("train", "val")))
    np.save(out_dir / "index.npy", keep.astype(np.int32))
    with open(split, "rb") as f, gzip.open(out_dir / "split.csv.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    shutil.copyfile(labels, out_dir / "labels.txt")
    total = 0
    for m, start in enumerate(range(0, len(keep), PER_MOSAIC)):
        tiles = imageset.images[keep[start:start + PER_MOSAIC]].transpose(0, 2, 3, 1)  # N x 64 x 64 x 3
        rows_needed = -(-len(tiles) // COLUMNS)
        padded = np.zeros((rows_needed * COLUMNS, TILE, TILE, 3), np.uint8)
        padded[: len(tiles)] = tiles
        mosaic = padded.reshape(rows_needed, COLUMNS, TILE, TILE, 3).transpose(0, 2, 1, 3, 4)
        mosaic = mosaic.reshape(rows_needed * TILE, COLUMNS * TILE, 3)
        path = out_dir / f"mosaic_{m:03d}.jpg"
        Image.fromarray(mosaic).save(path, "JPEG", quality=quality, subsampling=2, optimize=True, progressive=True)
        total += path.stat().st_size
    print(f"packed {len(keep)} of {len(y)} images into {m + 1} mosaics, {total / 1e6:.1f} MB; "
          f"{len(y) - len(keep)} held-out images left here")


def _first(dirs: list[Path], name: str) -> Path:
    found = [d / name for d in dirs if (d / name).exists()]
    if not found:
        raise ClearfaceError(f"no {name} in {', '.join(map(str, dirs))} (give the folder(s) pack wrote)")
    return found[0]


def unpack(src: list[str], out: str) -> None:
    dirs = [Path(s) for s in src]
    rows = _split_rows(_first(dirs, "split.csv.gz"))
    keep = np.load(_first(dirs, "index.npy"))
    mosaics = sorted((p for d in dirs for p in d.glob("mosaic_*.jpg")), key=lambda p: p.name)  # spread over dirs
    if len(mosaics) != -(-len(keep) // PER_MOSAIC):
        raise ClearfaceError(f"{len(mosaics)} mosaics found, {-(-len(keep) // PER_MOSAIC)} expected")
    grey = io.BytesIO()
    Image.new("RGB", (TILE, TILE), (128, 128, 128)).save(grey, "JPEG", quality=95)
    encoded: dict[int, bytes] = {}
    for m, path in enumerate(mosaics):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        grid = pixels.reshape(-1, TILE, COLUMNS, TILE, 3).transpose(0, 2, 1, 3, 4).reshape(-1, TILE, TILE, 3)
        for j, i in enumerate(keep[m * PER_MOSAIC:(m + 1) * PER_MOSAIC]):
            buf = io.BytesIO()
            Image.fromarray(grid[j]).save(buf, "JPEG", quality=95, subsampling=0)
            encoded[int(i)] = buf.getvalue()
    tmp = Path(out).with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for i, row in enumerate(rows):
            z.writestr(row["name"], encoded.get(i, grey.getvalue()))
    tmp.replace(out)
    print(f"{out}: {len(rows)} images, {len(encoded)} real, {len(rows) - len(encoded)} grey placeholders")


def collect(runs: str, out: str, per_file: int = 3) -> None:
    """Each finished run's model file in float16 (how every packaged model is stored), grouped ``per_file``
    to a tar (the transfer back takes 8 files of 16 MB at most), and every run's logs in ``logs.tar``."""
    import tarfile

    from clearface.modelfile import halve_weights, load_model_file, save_model_file

    out_dir = Path(out)
    finished = sorted(p for p in Path(runs).iterdir() if (p / "model.pt").exists())
    for g in range(0, len(finished), per_file):
        with tarfile.open(out_dir / f"models_{g // per_file}.tar", "w") as tar:
            for run in finished[g:g + per_file]:
                half = run / "model_f16.pt"
                save_model_file(halve_weights(load_model_file(run / "model.pt")), half)
                tar.add(half, arcname=f"{run.name}.pt")
    with tarfile.open(out_dir / "logs.tar", "w") as tar:
        for p in sorted(Path(runs).rglob("*")):
            wanted = p.suffix in (".log", ".csv", ".json", ".yaml", ".out") and "scores" not in p.name
            if p.is_file() and wanted and p.name != "split.csv":  # the split stays here: 2.8 MB, known
                tar.add(p, arcname=str(p.relative_to(runs)))
    print(f"collected {len(finished)} finished runs: {[p.name for p in finished]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--data", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--split", required=True, help="a run folder's split.csv")
    p.add_argument("--out", required=True)
    p.add_argument("--quality", type=int, default=75)
    u = sub.add_parser("unpack")
    u.add_argument("--src", nargs="+", required=True,
                   help="the folder(s) pack wrote (its mosaics may be spread over several)")
    u.add_argument("--out", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--runs", required=True)
    c.add_argument("--out", required=True)
    a = ap.parse_args()
    try:
        if a.cmd == "pack":
            pack(a.data, a.labels, a.split, a.out, a.quality)
        elif a.cmd == "unpack":
            unpack(a.src, a.out)
        else:
            collect(a.runs, a.out)
    except ClearfaceError as exc:  # bad input: one line and exit code 2, as the CLI gives it
        print(f"remote_data: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
