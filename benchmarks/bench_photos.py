"""Photos per second through the photo front end, end to end, on the CPU cores available.

    nice -n 5 .venv/bin/python benchmarks/bench_photos.py [--photos 60] [--model default] [--engine auto] [--layout]

The photos: ``--photos`` composed 500x400 photos (``clearface.faces.synthetic``: 1 to 3 training
crops of 96..200 px pasted on a face-free canvas) plus matplotlib's ``grace_hopper.jpg`` fitted into
500x400, all saved as JPEG (quality 90) in a zip, as a user would bring them.

Measured in this process, photo by photo, torch on one thread (warm: nets loaded, one untimed photo
first): decode (``open_photo``), detect (the MTCNN nets), cut (``cut_face`` per face), score (the
model's engine on that photo's crops), each as wall time and as CPU time. On a shared machine the
wall time measures the neighbours; CPU seconds per photo give the rate of one idle core, and
``predict`` runs one photo per core. Then end to end: the wall
time of a fresh ``clearface predict --preprocess detect --faces faces.csv`` process on the zip
(interpreter start, imports, model + detector load, everything), and of the same command on a
one-photo zip, whose difference gives the steady rate without the start-up cost.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SIZE = (500, 400)


def training_crops(n: int, start: int = 5000):
    from PIL import Image
    labels = np.array([int(v) for v in (DATA / "label_train.txt").read_text().split()], np.int8)[start:start + n]
    with zipfile.ZipFile(DATA / "train_img.zip") as zf:
        crops = np.stack([np.asarray(Image.open(io.BytesIO(zf.read(f"train_img/{i:06d}.jpg"))).convert("RGB"))
                          for i in range(start + 1, start + n + 1)]).transpose(0, 3, 1, 2)
    return crops, labels


def build_photos(n: int) -> list[tuple[str, bytes]]:
    """``n`` composed 500x400 photos and grace_hopper fitted to 500x400, as JPEG bytes."""
    from matplotlib import cbook
    from PIL import Image

    from clearface.faces.synthetic import compose_photos, paste_image
    crops, labels = training_crops(600)
    pool, textures = crops[:200], crops[200:]
    photos = [p.image for p in compose_photos(pool, labels[:200], n, seed=0, size=SIZE, faces=(1, 3), textures=textures)]
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        portrait = Image.open(f).convert("RGB")
    photos.append(paste_image(portrait, size=SIZE, side=SIZE[1], seed=0, textures=textures).image)
    out = []
    for k, img in enumerate(photos):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append((f"photos/{k + 1:06d}.jpg", buf.getvalue()))
    return out


def stage_times(photos, engine) -> dict:
    """Wall and CPU seconds per stage summed over ``photos`` (after one untimed warm-up photo), and faces found.

    CPU time (``time.process_time``, this process, all its threads) does not grow when other jobs
    share the cores; wall time does."""
    from clearface.faces import open_photo
    from clearface.faces.detector import detect
    from clearface.faces.framing import cut_face
    wall = dict(decode=0.0, detect=0.0, cut=0.0, score=0.0)
    cpu = dict(wall)
    faces = 0
    for k, (name, data) in enumerate([photos[0]] + photos):
        marks = [(time.perf_counter(), time.process_time())]
        img = open_photo(data, name)
        marks.append((time.perf_counter(), time.process_time()))
        boxes, _, points = detect(img)
        marks.append((time.perf_counter(), time.process_time()))
        arr = np.asarray(img)
        crops = [cut_face(arr, b, p) for b, p in zip(boxes, points)]
        marks.append((time.perf_counter(), time.process_time()))
        if crops:
            engine.score(np.stack(crops))
        marks.append((time.perf_counter(), time.process_time()))
        if k == 0:
            continue  # warm-up
        faces += len(crops)
        for key, (m0, m1) in zip(wall, zip(marks, marks[1:])):
            wall[key] += m1[0] - m0[0]
            cpu[key] += m1[1] - m0[1]
    return {"wall": wall, "cpu": cpu, "faces": faces, "photos": len(photos)}


def layout_check(photos, rounds: int = 2) -> None:
    """Detector CPU ms per photo with the nets' weights in NCHW vs channels-last (what ``load_detector``
    ships), alternated in one run so that both see the same machine, and the largest box/landmark gap."""
    import torch

    from clearface.faces import open_photo
    from clearface.faces.detector import detect, load_detector
    imgs = [open_photo(data, name) for name, data in photos]
    nets = load_detector()
    nets = (nets.pnet, nets.rnet, nets.onet)
    cpu = {"NCHW": 0.0, "channels-last": 0.0}
    found = {}
    for _ in range(rounds):
        for layout, fmt in (("NCHW", torch.contiguous_format), ("channels-last", torch.channels_last)):
            for net in nets:
                net.to(memory_format=fmt)
            detect(imgs[0])
            t = time.process_time()
            found[layout] = [detect(im) for im in imgs]
            cpu[layout] += time.process_time() - t
    gap = max((float(np.abs(a[k] - b[k]).max()) for a, b in zip(found["NCHW"], found["channels-last"])
               if len(a[0]) == len(b[0]) and len(a[0]) for k in (0, 2)), default=0.0)
    same = sum(len(a[0]) == len(b[0]) for a, b in zip(found["NCHW"], found["channels-last"]))
    n = rounds * len(imgs)
    print(f"\nDetector weights layout, {len(imgs)} photos x {rounds} rounds, alternated (CPU ms per photo):\n")
    print("| layout | CPU ms per photo |")
    print("|---|---|")
    for layout, v in cpu.items():
        print(f"| {layout} | {1000 * v / n:.1f} |")
    print(f"\nchannels-last takes {cpu['channels-last'] / cpu['NCHW']:.2f}x the CPU of NCHW; same face count on "
          f"{same}/{len(imgs)} photos; largest box/landmark difference {gap:.2g} px")


def run_cli(zip_path: Path, out_dir: Path, model, engine: str) -> float:
    out = out_dir / f"labels_{zip_path.stem}.txt"
    cmd = [sys.executable, "-m", "clearface.cli", "predict", "--preprocess", "detect", "--data", str(zip_path),
           "--out", str(out), "--faces", str(out_dir / f"faces_{zip_path.stem}.csv"), "--engine", engine]
    if model:
        cmd += ["--model", str(model)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=60, help="composed photos (grace_hopper is added)")
    ap.add_argument("--model", default=None, help="default: the packaged default model")
    ap.add_argument("--engine", default="auto", choices=("auto", "torch", "onnx"))
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end `clearface predict` runs")
    ap.add_argument("--layout", action="store_true", help="also compare the detector's weight layouts (NCHW vs "
                    "channels-last) on the same photos")
    args = ap.parse_args(argv)

    import torch

    from clearface.engines import available_cores, load_engine
    torch.set_num_threads(1)  # one photo per core, as `predict` runs them (and no thread contention)
    photos = build_photos(args.photos)
    engine = load_engine(args.model, args.engine)
    r = stage_times(photos, engine)
    n = r["photos"]
    wall, cpu = sum(r["wall"].values()), sum(r["cpu"].values())
    print(f"\nPhoto front end in one process (torch {torch.get_num_threads()} thread), {n} photos of {SIZE[0]}x{SIZE[1]} "
          f"({r['faces']} faces found), {available_cores()} cores, engine {engine.info.get('engine')}, "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| stage | wall ms per photo | CPU ms per photo | share of CPU |")
    print("|---|---|---|---|")
    for key in r["wall"]:
        print(f"| {key} | {1000 * r['wall'][key] / n:.1f} | {1000 * r['cpu'][key] / n:.1f} | {r['cpu'][key] / cpu:.0%} |")
    print(f"| **all** | **{1000 * wall / n:.1f}** | **{1000 * cpu / n:.1f}** | |")
    print(f"\nphotos/s: {n / wall:.1f} measured (wall, one process); {n / cpu:.1f} per core from CPU time, "
          f"so {available_cores() * n / cpu:.1f} on {available_cores()} idle cores with one photo per core")

    if args.layout:
        layout_check(photos)
    if args.no_cli:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        many, one = tmp / "photos.zip", tmp / "one.zip"
        for path, items in ((many, photos), (one, photos[:1])):
            with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
                for name, data in items:
                    zf.writestr(name, data)
        t_one = run_cli(one, tmp, args.model, args.engine)
        t_many = run_cli(many, tmp, args.model, args.engine)
        rows = (tmp / f"faces_{many.stem}.csv").read_text().splitlines()
    steady = (n - 1) / max(t_many - t_one, 1e-9)
    print(f"\n`clearface predict --preprocess detect --faces faces.csv --engine {args.engine}` on the zip:\n")
    print("| run | wall s | photos/s |")
    print("|---|---|---|")
    print(f"| 1 photo (start-up cost) | {t_one:.1f} | - |")
    print(f"| {n} photos | {t_many:.1f} | {n / t_many:.1f} |")
    print(f"| steady ({n} - 1 photos, start-up taken off) | {t_many - t_one:.1f} | {steady:.1f} |")
    print(f"\nfaces.csv rows: {len(rows) - 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
