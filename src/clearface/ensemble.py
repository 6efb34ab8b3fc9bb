"""``clearface ensemble``: merge runs trained on the same split into one model file.

The merged model averages probabilities over all members (and TTA views), so a run of k members
weighs k times a run of one; the members' validation scores are averaged the same way
(:func:`mean_score`) and tau is chosen again on that average. Runs must share their validation
part (``--split-seed``), otherwise a member would be calibrated on images another member trained
on. With ``--half`` the weights are stored as float16, so tau is chosen on the float16 model's
own scores of the validation images (``--data``/``--labels``), not on the float32 score files.
"""

from __future__ import annotations

import numpy as np

from .calibrate import rechoose_on_run, save_with_result
from .calibration import choose_and_score
from .errors import ClearfaceError
from .metrics import hter
from .modelfile import halve_weights, load_model_file
from .rundir import TEST, VAL, RunDir


def member_weights(blobs: list[dict]) -> np.ndarray:
    """Each run's share of the merged model's mean: its number of members over all members."""
    n = np.array([len(b["members"]) for b in blobs], float)
    return n / n.sum()


def mean_score(scores: list, weights) -> np.ndarray:
    """The merged model's score from its runs' scores (as it averages over all members)."""
    return sum(w * np.asarray(s) for w, s in zip(weights, scores))


def shared_scores(runs: list[RunDir], part: str):
    """``(names, labels, [scores per run])`` of one part, refusing runs scored on other images."""
    read = [r.read_scores(part) for r in runs]
    for r, v in zip(runs[1:], read[1:]):
        if v[0] != read[0][0]:
            raise ClearfaceError(f"{r.path}: its {part} images differ from {runs[0].path}'s; train the members "
                                 "with the same --split-seed")
    return read[0][0], read[0][1], [v[2] for v in read]


def ensemble(runs: list, out, half: bool = False, rule: str | None = None, data=None, labels=None,
             cache_dir=None, batch_size: int = 512) -> dict:
    if len(runs) < 2:
        raise ClearfaceError("an ensemble needs at least two run folders")
    if half and not (data and labels):
        raise ClearfaceError("--half chooses tau on the float16 weights it stores: give --data and --labels "
                             "(the images the runs trained on) to score the validation part with them")
    runs = [RunDir(r) for r in runs]
    blobs = [load_model_file(r.model_path) for r in runs]
    ref = blobs[0]
    for r, b in zip(runs[1:], blobs[1:]):
        for key in ("preprocess", "tta"):
            if b[key] != ref[key]:
                raise ClearfaceError(f"{r.path}: {key} differs from {runs[0].path}; members must see the same input")
    _, y, val = shared_scores(runs, VAL)
    weights = member_weights(blobs)
    n_members = sum(len(b["members"]) for b in blobs)
    rule = rule or ref["threshold_method"]
    merged = dict(ref, members=[m for b in blobs for m in b["members"]],
                  config=dict(ref["config"], ensemble_of=[str(r.path) for r in runs]))
    test = shared_scores(runs, TEST) if all(r.has_scores(TEST) for r in runs) else None
    if half:
        merged = halve_weights(merged)
        result = rechoose_on_run(merged, runs[0].path, data, labels, rule, cache_dir, batch_size,
                                 what=f", {n_members} members, float16 weights")
    else:
        source = f"validation split ({len(y)} images), mean score of {n_members} members"
        result = choose_and_score(mean_score(val, weights), y, rule, source,
                                  mean_score(test[2], weights) if test else None, test[1] if test else None)
    result["members"] = [str(r.path) for r in runs]
    if test:
        result["members_test_hter"] = [hter(s, test[1], b["threshold"]) for s, b in zip(test[2], blobs)]
    return save_with_result(merged, result, out)
