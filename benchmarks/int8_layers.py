"""Which layers cost int8 its label agreement? Keep one Conv/Gemm in float at a time and count flips.

    nice -n 5 .venv/bin/python benchmarks/int8_layers.py --model default [--calibration percentile]

One calibration (``--calib-images`` images of the model's validation part, never its held-out part)
is measured once and shared by every variant (``clearface.quantize``'s ``calibration_cache``), so
the variants differ only in the one layer kept in float. Each variant scores the ``val_img.zip``
images whose float score lies within ``--near`` logits of the stored tau (a label can only flip
there) and counts the labels that differ from float at the stored tau. Prints one row per layer,
fewest flips first, after the all-int8 row. If no single layer holds most of the error, keeping a
few layers in float (mixed precision) cannot reach the agreement gate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def logit(s) -> np.ndarray:
    s = np.clip(np.asarray(s, np.float64), 1e-7, 1 - 1e-7)
    return np.log(s / (1 - s))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--train-data", default=str(DATA / "train_img.zip"))
    ap.add_argument("--train-labels", default=str(DATA / "label_train.txt"))
    ap.add_argument("--unlabelled", default=str(DATA / "val_img.zip"))
    ap.add_argument("--calib-images", type=int, default=960, help="a multiple of 64 (histogram calibrators "
                    "need equal batches)")
    ap.add_argument("--calibration", default="percentile", choices=("minmax", "percentile", "entropy"))
    ap.add_argument("--percentile", type=float, default=99.999)
    ap.add_argument("--near", type=float, default=1.5, help="logits from tau that count as near")
    ap.add_argument("--limit", type=int, default=None, help="only the first N layers (a quick look)")
    args = ap.parse_args(argv)

    import onnx

    from clearface.data import load_images, read_labels
    from clearface.data.split import split_from_config
    from clearface.engines import OnnxEngine, load_engine
    from clearface.modelfile import load_model_file
    from clearface.quantize import calibration_sample, quantize_onnx

    tr = load_images(args.train_data)
    y = read_labels(args.train_labels, expected=len(tr))
    unlabelled = load_images(args.unlabelled).images
    blob = load_model_file(args.model)
    parts = split_from_config(blob["config"], tr.hashes, y)
    val = np.flatnonzero(parts == "val")
    float_path = Path(load_engine(args.model, "onnx").info["onnx"])
    tau = float(blob["threshold"])
    f_all = OnnxEngine(float_path, threads=1).score(unlabelled)
    near = np.flatnonzero(np.abs(logit(f_all) - logit(tau)) < args.near)
    images, f_near = np.ascontiguousarray(unlabelled[near]), f_all[near]
    calib = tr.images[val[calibration_sample(val.size, args.calib_images, seed=0)]]
    layers = [n.name for n in onnx.load(str(float_path)).graph.node if n.op_type in ("Conv", "Gemm")]
    layers = layers[:args.limit] if args.limit else layers
    print(f"{args.model}: tau {tau:.4f} (stored); {near.size} of {len(unlabelled)} {Path(args.unlabelled).name} "
          f"images within {args.near} logits of it; {args.calibration} calibration"
          f"{f' at {args.percentile}' if args.calibration == 'percentile' else ''} on {len(calib)} validation "
          f"images, full-range int8 weights; {len(layers)} layers\n", flush=True)

    with tempfile.TemporaryDirectory(prefix="clearface_int8_layers_") as tmp:
        cache, out = Path(tmp) / "ranges.json", Path(tmp) / "q.onnx"

        def quantized(keep_float: tuple) -> OnnxEngine:
            quantize_onnx(float_path, out, calib, calibration=args.calibration, percentile=args.percentile,
                          reduce_range=False, exclude_ops=keep_float, calibration_cache=cache)
            return OnnxEngine(out, threads=1)

        def flips(q: np.ndarray) -> tuple[int, float]:
            return int(np.sum((q >= tau) != (f_near >= tau))), float(np.mean(np.abs(logit(q) - logit(f_near))))

        t0 = time.perf_counter()
        # the all-int8 model on every image, to check that flips really stay among the near ones
        q_all = quantized(()).score(unlabelled)
        base = flips(q_all[near])
        far = np.ones(len(unlabelled), bool)
        far[near] = False
        far_flips = int(np.sum(((q_all >= tau) != (f_all >= tau)) & far))
        rows = []
        for i, name in enumerate(layers):
            rows.append((*flips(quantized((name,)).score(images)), name))
            print(f"  [{i + 1}/{len(layers)}] {name}: {rows[-1][0]} flips", file=sys.stderr, flush=True)
    n = len(unlabelled)
    print("| kept in float | label flips vs float | agreement | mean abs logit change (near tau) |")
    print("|---|---:|---:|---:|")
    print(f"| nothing (all int8) | {base[0]} | {100 * (1 - base[0] / n):.2f} % | {base[1]:.3f} |")
    for f, m, name in sorted(rows):
        print(f"| {name} | {f} | {100 * (1 - f / n):.2f} % | {m:.3f} |")
    print(f"\n{time.perf_counter() - t0:.0f} s. Flips are counted among the near images; all int8, "
          f"{far_flips} of the {int(far.sum())} farther images flipped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
