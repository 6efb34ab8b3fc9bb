"""docs/framing_sheet.png: training crops beside crops the photo front end cuts from photos.

    .venv/bin/python benchmarks/framing_sheet.py [--out docs/framing_sheet.png]

Row 1: training crops as they are (64x64). Rows 2-3: other training crops (row 2) pasted enlarged
into 500x400 composed photos (``clearface.faces.synthetic``), and what ``find_faces`` cut back out of
those photos (row 3): the same face should come back framed the same way. Row 4: a real photo,
matplotlib's ``grace_hopper.jpg``, with the detected box and landmarks, and the crops cut from it as
it is, shrunk into a large scene, turned 12 degrees, and mirrored. The cyan marks on every crop are
where the framing (``faces/framing.json``) puts the eyes of the average training crop.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
COLS = 8


def training_crops(indices) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image
    labels = np.array([int(v) for v in (DATA / "label_train.txt").read_text().split()], np.int8)
    with zipfile.ZipFile(DATA / "train_img.zip") as zf:
        crops = np.stack([np.asarray(Image.open(io.BytesIO(zf.read(f"train_img/{i + 1:06d}.jpg"))).convert("RGB"))
                          for i in indices])
    return crops, labels[np.asarray(indices)]


def show_crop(ax, crop_hwc, title, eyes, colour="black"):
    ax.imshow(crop_hwc, interpolation="lanczos", extent=(0, 1, 1, 0))
    ax.plot(eyes[:, 0], eyes[:, 1], "+", color="cyan", ms=7, mew=1.2)
    ax.set_title(title, fontsize=8, color=colour)
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)
    ax.axis("off")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "framing_sheet.png"))
    args = ap.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cbook
    from matplotlib.patches import Rectangle
    from PIL import Image

    from clearface.faces import default_framing, find_faces
    from clearface.faces.synthetic import expected_face_box, iou, paste_image, paste_one
    from clearface.outputs import write_bytes_atomic

    framing = default_framing()
    eyes = np.asarray(framing["landmarks"], np.float64)[:2]
    rng = np.random.default_rng(4)
    pool = rng.choice(np.arange(20000, 24000), 400, replace=False)
    crops, labels = training_crops(pool)
    textures = crops[200:]
    # Row 1: four of each class; rows 2-3: four of each class, different images.
    order = np.concatenate([np.flatnonzero(labels[:200] == c)[:8] for c in (1, 0)])
    row1 = np.concatenate([order[:4], order[8:12]])
    row2 = np.concatenate([order[4:8], order[12:16]])

    fig = plt.figure(figsize=(COLS * 1.35, 4 * 1.55 + 1.4), dpi=110)
    grid = fig.add_gridspec(5, COLS, height_ratios=[1, 1, 1, 0.05, 1.35], hspace=0.35, wspace=0.08)
    for c, k in enumerate(row1):
        show_crop(fig.add_subplot(grid[0, c]), crops[k], f"training, label {labels[k]}", eyes)
    sides = np.linspace(96, 200, COLS).astype(int)
    for c, k in enumerate(row2):
        photo = paste_one(crops[k].transpose(2, 0, 1), int(labels[k]), int(sides[c]), seed=100 + c, textures=textures)
        show_crop(fig.add_subplot(grid[1, c]), crops[k], f"pasted at {sides[c]} px", eyes)
        faces = find_faces(photo.image)
        ax = fig.add_subplot(grid[2, c])
        hit = [f for f in faces if iou(expected_face_box(photo.crop_boxes, framing["box"]), [f.box])[0, 0] >= 0.4]
        if hit:
            show_crop(ax, hit[0].crop.transpose(1, 2, 0), "cut from photo", eyes)
        else:
            ax.text(0.5, 0.5, "no face found", ha="center", va="center", fontsize=8)
            ax.axis("off")

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = Image.open(f).convert("RGB")
    variants = [("as is", hopper),
                ("260 px in\n1600x1000", paste_image(hopper, size=(1600, 1000), side=260, seed=1, textures=textures).image),
                ("turned 12°", hopper.rotate(12, resample=Image.BICUBIC, expand=True, fillcolor=(128, 128, 128))),
                ("mirrored", hopper.transpose(Image.FLIP_LEFT_RIGHT))]
    ax = fig.add_subplot(grid[4, 0:3])
    ax.imshow(hopper)
    faces = find_faces(hopper)
    for f in faces[:1]:
        x0, y0, x1, y1 = f.box
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="yellow", lw=1.5))
        ax.plot(f.landmarks[:, 0], f.landmarks[:, 1], ".", color="cyan", ms=5)
    ax.set_title("grace_hopper.jpg (matplotlib):\ndetected box and landmarks", fontsize=8)
    ax.axis("off")
    for c, (name, img) in enumerate(variants):
        ax = fig.add_subplot(grid[4, 3 + c])
        found = find_faces(img)
        if found:
            show_crop(ax, found[0].crop.transpose(1, 2, 0), f"cut, {name}", eyes)
        else:
            ax.text(0.5, 0.5, f"{name}: no face", ha="center", va="center", fontsize=8)
            ax.axis("off")
    fig.suptitle("Row 1: training crops. Row 2: other training crops, pasted enlarged into 500x400 photos;\n"
                 "row 3: what the front end cut back out of those photos. Row 4: a real photo and its cuts. "
                 "Cyan +: the framing's eye positions", fontsize=9)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    write_bytes_atomic(out, buf.getvalue())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
