"""The raw (not averaged) weights of an ``--ema-decay`` run as a model file: the paired baseline of the average.

An EMA run trains the raw weights exactly as the same run without EMA would (the average never feeds back),
and its ``checkpoints/best.ckpt`` holds both: ``model.*`` (raw) and ``ema.module.*`` (what its model.pt stores).
Comparing the two on the same held-out images (``benchmarks/heldout_compare.py``) isolates the averaging.

    python benchmarks/ema_raw_weights.py runs/ema128 raw.pt
    clearface calibrate --model raw.pt --run runs/ema128 --data … --labels … --tta none --half --out raw_default.pt
"""

from __future__ import annotations

import argparse
import copy


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="run folder trained with --ema-decay")
    ap.add_argument("out", help="model file to write (the run's model.pt with the raw weights of its best epoch)")
    args = ap.parse_args(argv)

    from clearface.modelfile import load_model_file, save_model_file
    from clearface.train.checkpoints import read_checkpoint

    best = read_checkpoint(f"{args.run}/checkpoints/best.ckpt")
    raw = {k[len("model."):]: v for k, v in best["state_dict"].items() if k.startswith("model.")}
    blob = copy.deepcopy(load_model_file(f"{args.run}/model.pt"))
    if not any(k.startswith("ema.") for k in best["state_dict"]):
        raise SystemExit(f"{args.run}: not an --ema-decay run (its model.pt already holds the raw weights)")
    if raw.keys() != blob["members"][0]["state_dict"].keys():
        raise SystemExit(f"{args.run}: best.ckpt's raw weights do not match its model.pt")
    blob["members"][0]["state_dict"] = raw
    save_model_file(blob, args.out)
    print(f"wrote {args.out}: raw weights of epoch {best.get('epoch')} (tau still the average's: calibrate it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
