"""Re-choose tau for a model file after its inference settings change.

τ belongs to one exact scoring function. Dropping the test-time flip (for speed), switching the
threshold rule, or merging members changes the scores, so the stored τ no longer fits: it must
be chosen again on the validation images of the run that trained the model, never on the
held-out part, which is only scored.

    clearface calibrate --model runs/x/model.pt --run runs/x --data ZIP --labels TXT \
        --tta none --out x_notta.pt
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np

from . import metrics
from .data.ingest import write_text_atomic
from .data.split import TEST, VAL
from .errors import ClearfaceError
from .inference import build_scorer, halve_weights, load_model_file, save_model_file, score_array


def run_split(run_dir: Path, names: list[str]) -> np.ndarray:
    """The part names of a training run's ``split.csv``, checked image by image against ``names``."""
    path = run_dir / "split.csv"
    if not path.exists():
        raise ClearfaceError(f"{path}: missing (--run must be the training run folder of the model)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != len(names):
        raise ClearfaceError(f"{path}: {len(rows)} rows but --data has {len(names)} images; give the data the run trained on")
    for i, (row, name) in enumerate(zip(rows, names)):
        if row["name"] != name:
            raise ClearfaceError(f"{path}: line {i + 2} names {row['name']!r} but image {i + 1} of --data is {name!r}")
    parts = np.array([r["part"] for r in rows])
    if not (parts == VAL).any():
        raise ClearfaceError(f"{path}: no 'val' part (a k-fold run calibrates on out-of-fold scores; retrain instead)")
    return parts


def recalibrate(model, run_dir, data, labels, out, tta: str | None = None, method: str | None = None,
                half: bool = False, cache_dir=None, batch_size: int = 512, resize: bool = False) -> dict:
    """Score the run's validation part with the (changed) model, choose τ there, score the held-out part."""
    from .data import load_labelled

    blob = copy.copy(load_model_file(model))
    if tta is not None:
        blob["tta"] = tta
    if half:  # before scoring: tau and the metrics must belong to the weights that are stored
        blob = halve_weights(blob)
    method = method or blob.get("threshold_method", "min_hter")
    run_dir = Path(run_dir)
    imageset, y = load_labelled(data, labels, cache_dir=cache_dir, resize=resize)
    parts = run_split(run_dir, imageset.names)
    scorer = build_scorer(blob)
    val = np.flatnonzero(parts == VAL)
    sv = score_array(scorer, imageset.images[val], batch_size)
    tau = metrics.choose_threshold(sv, y[val], method)
    source = f"validation split of {run_dir.name} ({len(val)} images), tta {blob['tta']}"
    result = {"threshold": tau, "threshold_method": method, "threshold_source": source, "tta": blob["tta"],
              "val": metrics.summarize(sv, y[val], tau).as_dict()}
    test = np.flatnonzero(parts == TEST)
    if test.size:
        st = score_array(scorer, imageset.images[test], batch_size)
        result["test"] = metrics.summarize_with_ci(st, y[test], tau)
        result["test_protocol"] = f"tau chosen on the {source}; scored on the {test.size}-image held-out part"
    blob.update(threshold=float(tau), threshold_method=method, threshold_source=source,
                metrics={k: result[k] for k in ("val", "test") if k in result})
    if half:
        result["weights_dtype"] = "float16"
    save_model_file(blob, out)
    write_text_atomic(Path(out).with_suffix(".json"), json.dumps(result, indent=2))
    return result
