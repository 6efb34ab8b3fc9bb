"""``clearface ensemble``: merge runs trained on the same split into one model file.

The members' validation scores are averaged exactly as the merged model will average them
(probabilities, over members and TTA views), and tau is chosen again on that average. Runs must
share their validation part (``--split_seed``), otherwise a member would be calibrated on images
another member trained on.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from . import metrics
from .data.ingest import write_text_atomic
from .errors import ClearfaceError
from .inference import halve_weights, load_model_file, save_model_file


def _scores(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    if not path.exists():
        raise ClearfaceError(f"{path}: missing (is this a finished clearface run folder?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["name"] for r in rows], np.array([int(r["label"]) for r in rows]), np.array([float(r["score"]) for r in rows])


def merge_runs(runs: list, out, half: bool = False) -> dict:
    if len(runs) < 2:
        raise ClearfaceError("an ensemble needs at least two run folders")
    runs = [Path(r) for r in runs]
    blobs = [load_model_file(r / "model.pt") for r in runs]
    ref = blobs[0]
    for r, b in zip(runs[1:], blobs[1:]):
        for key in ("preprocess", "tta"):
            if b[key] != ref[key]:
                raise ClearfaceError(f"{r}: {key} differs from {runs[0]}; members must see the same input")
    val = [_scores(r / "val_scores.csv") for r in runs]
    for r, v in zip(runs[1:], val[1:]):
        if v[0] != val[0][0]:
            raise ClearfaceError(f"{r}: its validation images differ from {runs[0]}'s; train the members "
                                 "with the same --split_seed")
    n_members = [len(b["members"]) for b in blobs]
    weights = np.array(n_members, float) / sum(n_members)  # the merged model averages over all members
    y = val[0][1]
    s = sum(w * v[2] for w, v in zip(weights, val))
    method = ref["threshold_method"]
    tau = metrics.choose_threshold(s, y, method)
    source = f"validation split ({len(y)} images), mean score of {sum(n_members)} members"
    result = {"threshold": tau, "threshold_method": method, "threshold_source": source,
              "members": [str(r) for r in runs], "val": metrics.summarize(s, y, tau).as_dict()}
    tests = [r / "test_scores.csv" for r in runs]
    if all(t.exists() for t in tests):
        t = [_scores(p) for p in tests]
        if all(x[0] == t[0][0] for x in t):
            ts = sum(w * x[2] for w, x in zip(weights, t))
            result["test"] = metrics.summarize_with_ci(ts, t[0][1], tau)
            result["test_protocol"] = f"tau chosen on the {source}; scored on the {len(ts)}-image held-out part"
            result["members_test_hter"] = [metrics.hter(x[2], x[1], b["threshold"]) for x, b in zip(t, blobs)]
    merged = dict(ref)
    merged["members"] = [m for b in blobs for m in b["members"]]
    merged["threshold"], merged["threshold_source"] = float(tau), source
    merged["metrics"] = {k: result[k] for k in ("val", "test") if k in result}
    merged["config"] = dict(ref["config"], ensemble_of=[str(r) for r in runs])
    if half:
        merged = halve_weights(merged)
        result["weights_dtype"] = "float16"
    save_model_file(merged, out)
    write_text_atomic(Path(out).with_suffix(".json"), json.dumps(result, indent=2))
    return result
