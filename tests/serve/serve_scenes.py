"""Scenes for the service tests: real 64x64 training crops, enlarged, pasted at known places.

The two crops were picked once (``python tests/serve/serve_scenes.py`` prints candidates): the
packaged default model labels them right through the ``detect`` path, and the detector finds
each of them enlarged on the gradient canvas below. The tests re-check their labels against
``label_train.txt``, so a changed pick cannot slip through.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from conftest import TRAIN_LABELS, real_slice

CLEAN_INDEX = 30  # 0-based index into train_img.zip / label_train.txt: a label-1 crop
OCCLUDED_INDEX = 25  # a label-0 crop
SCENE_SIZE = (720, 420)
FACE_SIDE = 200
POSITIONS = ((60, 120), (420, 80))  # top-left corner of each pasted crop: clean, occluded


def training_crop(index: int) -> tuple[Image.Image, int]:
    blobs, labels = real_slice(1, start=index)
    return Image.open(io.BytesIO(blobs[0])).convert("RGB"), int(labels[0])


def labels_of(indices) -> list[int]:
    labels = TRAIN_LABELS.read_text().split()
    return [int(labels[i]) for i in indices]


def canvas(size=SCENE_SIZE, seed: int = 0) -> Image.Image:
    """A smooth two-colour gradient with mild noise: natural-looking, nothing face-like."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (0.7 * xx / w + 0.3 * yy / h)[..., None]
    c0, c1 = np.array([70, 110, 150], np.float32), np.array([200, 180, 140], np.float32)
    arr = c0 * (1 - t) + c1 * t + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def two_face_scene(clean=CLEAN_INDEX, occluded=OCCLUDED_INDEX):
    """``(RGB scene, [(x0, y0, x1, y1) of each pasted crop], [its label])``: clean face left, occluded right."""
    scene = canvas()
    boxes, labels = [], []
    for index, (x, y) in zip((clean, occluded), POSITIONS):
        crop, label = training_crop(index)
        scene.paste(crop.resize((FACE_SIDE, FACE_SIDE), Image.LANCZOS), (x, y))
        boxes.append((x, y, x + FACE_SIDE, y + FACE_SIDE))
        labels.append(label)
    return scene, boxes, labels


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def inside(box, region, slack: float = 0.15) -> bool:
    """Is the detected ``box``'s centre in the middle of ``region``, and its size a face's in it?"""
    x0, y0, x1, y1 = region
    side = x1 - x0
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    mid = (x0 + x1) / 2, (y0 + y1) / 2
    near = abs(cx - mid[0]) < (0.25 + slack) * side and abs(cy - mid[1]) < (0.25 + slack) * side
    bside = max(box[2] - box[0], box[3] - box[1])
    return near and 0.3 * side < bside < 1.3 * side


if __name__ == "__main__":  # pick candidates: crops the default model gets right via detect, confidently
    import sys

    from clearface.serve.photos import Service
    from clearface.serve.limits import peek_uploads
    svc = Service(None)
    start, n = int(sys.argv[1]) if len(sys.argv) > 1 else 0, int(sys.argv[2]) if len(sys.argv) > 2 else 40
    blobs, labels = real_slice(n, start=start)
    for i, (blob, label) in enumerate(zip(blobs, labels)):
        crop = Image.open(io.BytesIO(blob)).convert("RGB")
        scene = canvas()
        scene.paste(crop.resize((FACE_SIDE, FACE_SIDE), Image.LANCZOS), POSITIONS[0])
        data = png_bytes(scene)
        out = svc.predict([("s.png", data)], peek_uploads([("s.png", data)], 10**8, 10**8), 10**8)[0]
        print(start + i, label, out["label"], out["score"], len(out["faces"]), flush=True)
