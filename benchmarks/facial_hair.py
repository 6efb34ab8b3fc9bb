"""Why beards pass as clean elsewhere: the packaged model on held-out class-0 faces whose only occlusion is
facial hair, under the framing and resolution changes another source brings.

``facial_hair_heldout.csv`` lists 300 class-0 images drawn at random (seed 11) from the packaged model's
held-out part of ``train_img.zip`` and judged by eye from contact sheets: ``facial_hair`` (beard,
moustache, goatee or heavy stubble, and no glasses or head covering) or ``other`` (glasses, sunglasses,
hats, ...; a few look clean: label noise). Nothing here trains or calibrates: tau is the one stored in
the model file (chosen on its validation part).

    python benchmarks/facial_hair.py --model default [--sheet docs/facial_hair_sheet.png]

Prints FAR (share of these class-0 faces called clean) per group and per perturbation
(``benchmarks/robustness.py``'s list), with a 95 % Wilson interval for the facial-hair group.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[0].parent / "shared" / "data"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def judged_faces(names, labels, parts) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the 300 judged images in ``names`` and a mask of the facial-hair ones; stops unless they
    are all class-0 images of the held-out part ``parts`` marks (else the model saw some of them)."""
    with open(HERE / "facial_hair_heldout.csv", newline="") as f:
        judged = {r["name"]: r["judged"] for r in csv.DictReader(f)}
    pos = {n: i for i, n in enumerate(names)}
    idx = np.array([pos[n] for n in judged])
    if not ((parts[idx] == "test").all() and (labels[idx] == 0).all()):
        raise SystemExit("the listed images are not class-0 images of this model's held-out part")
    return idx, np.array([judged[n] == "facial_hair" for n in judged])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=str(DATA / "train_img.zip"))
    ap.add_argument("--labels", default=str(DATA / "label_train.txt"))
    ap.add_argument("--sheet", default=None, help="PNG: the facial-hair faces with their scores")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from robustness import _pil_map, perturbations

    from clearface.data import load_labelled
    from clearface.data.split import split_from_config
    from clearface.engines import load_engine
    from clearface.modelfile import load_model_file

    s, y = load_labelled(args.data, args.labels)
    parts = split_from_config(load_model_file(args.model)["config"], s.hashes, y)
    idx, fh = judged_faces(s.names, y, parts)
    images = np.ascontiguousarray(s.images[idx])
    engine = load_engine(args.model)
    tau = engine.info["threshold"]
    print(f"model {args.model}, stored tau {tau:.4f} (chosen on its validation part); {fh.sum()} facial-hair-only "
          f"and {(~fh).sum()} other class-0 held-out faces\n")
    print("| change | FAR facial hair (95 % CI) | FAR other class 0 |\n|---|---|---|")
    for name, fn in perturbations():
        sc = engine.score(images if fn is None else _pil_map(images, fn))
        k = int((sc[fh] >= tau).sum())
        lo, hi = wilson(k, int(fh.sum()))
        print(f"| {name} | {k / fh.sum():.3f} ({lo:.3f}-{hi:.3f}) | {np.mean(sc[~fh] >= tau):.3f} |", flush=True)
        if fn is None and args.sheet:
            _sheet(images[fh], sc[fh], tau, args.sheet)


def _sheet(images, scores, tau, path):
    from PIL import Image, ImageDraw

    from clearface.outputs import atomic_path
    cols, side = 9, 96
    rows = -(-len(images) // cols)
    sheet = Image.new("RGB", (cols * side, rows * (side + 14)), "white")
    for place, k in enumerate(np.argsort(-scores)):  # most clean-looking first; red: called clean (>= tau)
        r, c = divmod(place, cols)
        tile = Image.fromarray(images[k].transpose(1, 2, 0)).resize((side, side), Image.BICUBIC)
        sheet.paste(tile, (c * side, r * (side + 14)))
        ImageDraw.Draw(sheet).text((c * side + 2, r * (side + 14) + side), f"{scores[k]:.2f}",
                                   fill=(200, 0, 0) if scores[k] >= tau else (0, 0, 0))
    with atomic_path(path, suffix=".png") as tmp:
        sheet.quantize(256).save(tmp, "PNG", optimize=True)  # a docs figure: small beats lossless


if __name__ == "__main__":
    main()
