"""``clearface calibrate``: choose tau again for a model file after its inference settings change.

τ belongs to one exact scoring function. Dropping the test-time flip (for speed), switching the
threshold rule, storing float16 weights or merging members changes the scores, so the stored τ
no longer fits: it must be chosen again on the validation images of the run that trained the
model, never on the held-out part, which is only scored.

    clearface calibrate --model runs/x/model.pt --run runs/x --data ZIP --labels TXT \
        --tta none --out x_notta.pt
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from .calibration import choose_and_score
from .engines import TorchEngine
from .errors import ClearfaceError
from .modelfile import halve_weights, load_model_file, save_model_file
from .outputs import write_text_atomic
from .rundir import TEST, VAL, RunDir


def rechoose_on_run(blob: dict, run_dir, data, labels, rule: str, cache_dir=None, batch_size: int = 512,
                    preprocess: str | None = None, what: str = "", same_split: tuple = ()) -> dict:
    """Score the run's validation and held-out parts with ``blob`` exactly as it will be stored,
    choose tau by ``rule`` on the validation part and score the held-out part at it.
    ``preprocess``: the step (crop or resize) that reads ``data``; None: the model file's own.
    ``same_split``: ``(name, settings)`` of merged items whose stored settings must rebuild the run's
    validation and held-out parts (a member trained on validation images would make tau optimistic)."""
    from .data import load_labelled
    from .data.split import split_from_config
    from .preprocess import resolve

    run = RunDir(run_dir)
    imageset, y = load_labelled(data, labels, cache_dir=cache_dir, step=resolve(blob, preprocess)[0])
    parts = run.validation_split(imageset.names)
    for name, settings in same_split:
        theirs = split_from_config(settings, imageset.hashes, y)
        for part in (VAL, TEST):
            if not np.array_equal(theirs == part, parts == part):
                raise ClearfaceError(f"{name}: its stored settings make other {part} images than {run.split_path} "
                                     f"names; it may have trained on them (merge models trained with the same split)")
    engine = TorchEngine(blob)
    val, test = np.flatnonzero(parts == VAL), np.flatnonzero(parts == TEST)
    source = f"validation split of {run.name} ({len(val)} images){what}, tta {blob['tta']}"
    return choose_and_score(engine.score(imageset.images[val], batch_size), y[val], rule, source,
                            engine.score(imageset.images[test], batch_size) if test.size else None, y[test])


def save_with_result(blob: dict, result: dict, out) -> dict:
    """Store the chosen tau (and the figures behind it) in the model file ``out``, and ``result``
    beside it as ``.json``."""
    blob = dict(blob, threshold=float(result["threshold"]), threshold_method=result["threshold_method"],
                threshold_source=result["threshold_source"],
                metrics={k: result[k] for k in ("val", "test") if k in result})
    # the recorded recipe follows what the file now does
    blob["config"] = dict(blob.get("config") or {}, tta=blob["tta"], threshold_method=result["threshold_method"])
    if blob.get("weights_dtype"):
        result["weights_dtype"] = blob["weights_dtype"]
    save_model_file(blob, out)
    write_text_atomic(Path(out).with_suffix(".json"), json.dumps(result, indent=2))
    return result


def calibrate(model, run_dir, data, labels, out, tta: str | None = None, rule: str | None = None,
              half: bool = False, cache_dir=None, batch_size: int = 512, preprocess: str | None = None) -> dict:
    """Re-choose tau of ``model`` (changed by ``tta``/``half``) on the validation part of ``run_dir``."""
    blob = copy.copy(load_model_file(model))
    if tta is not None:
        blob["tta"] = tta
    if half:  # before scoring: tau and the metrics must belong to the weights that are stored
        blob = halve_weights(blob)
    rule = rule or blob.get("threshold_method", "min_hter")
    result = rechoose_on_run(blob, run_dir, data, labels, rule, cache_dir, batch_size, preprocess)
    result["tta"] = blob["tta"]
    return save_with_result(blob, result, out)
