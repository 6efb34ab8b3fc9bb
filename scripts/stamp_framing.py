"""Stamp the packaged model files with their preprocessing step and the measured face framing.

Adds ``preprocess.step = "crop"`` (the packaged models score 64x64 crops; ``--preprocess detect``
switches to photos) and ``preprocess.framing`` (``src/clearface/faces/framing.json``, from
``benchmarks/measure_framing.py``) to ``src/clearface/weights/*.pt``. Weights, tau and every other
field are left as they are; the script checks that (tensors equal, and identical scores and labels
on the first ``--check`` images of val_img.zip) before replacing a file.

    .venv/bin/python scripts/stamp_framing.py            # both packaged models
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "src" / "clearface" / "weights"
VAL = ROOT.parent / "shared" / "data" / "val_img.zip"


def _same_weights(a: dict, b: dict) -> bool:
    import torch
    if len(a["members"]) != len(b["members"]):
        return False
    for ma, mb in zip(a["members"], b["members"]):
        sa, sb = ma["state_dict"], mb["state_dict"]
        if sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa):
            return False
    return True


def stamp(path: Path, framing: dict, images: np.ndarray | None) -> dict:
    from clearface.calibration import labels_from_scores
    from clearface.engines import TorchEngine
    from clearface.modelfile import load_model_file, save_model_file
    old = load_model_file(path)
    new = dict(old, preprocess=dict(old["preprocess"], step="crop", framing=framing))
    new.pop("path", None)
    tmp = path.with_name(f".{path.name}.stamped")
    save_model_file(new, tmp)
    try:
        again = load_model_file(tmp)
        assert _same_weights(old, again), "weights changed"
        assert again["threshold"] == old["threshold"], "tau changed"
        assert again["preprocess"]["step"] == "crop" and again["preprocess"]["framing"] == framing
        out = {"model": path.name, "threshold": old["threshold"]}
        if images is not None:
            s_old, s_new = TorchEngine(old).score(images), TorchEngine(again).score(images)
            l_old, l_new = labels_from_scores(s_old, old["threshold"]), labels_from_scores(s_new, again["threshold"])
            assert np.array_equal(s_old, s_new), "scores changed"
            assert np.array_equal(l_old, l_new), "labels changed"
            out.update(images=len(images), labels_changed=int((l_old != l_new).sum()),
                       max_score_diff=float(np.abs(s_old - s_new).max()))
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framing", default=str(ROOT / "src" / "clearface" / "faces" / "framing.json"))
    ap.add_argument("--check", type=int, default=2000, help="val images to compare scores/labels on (0: skip)")
    ap.add_argument("models", nargs="*", default=[str(p) for p in sorted(WEIGHTS.glob("*.pt"))])
    args = ap.parse_args(argv)
    from clearface.faces.framing import check_framing
    import json
    framing = check_framing(json.loads(Path(args.framing).read_text()), args.framing)
    images = None
    if args.check and VAL.exists():
        from clearface.data import load_images
        images = np.ascontiguousarray(load_images(VAL, use_cache=False, limit=args.check).images)
    for m in args.models:
        r = stamp(Path(m), framing, images)
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
