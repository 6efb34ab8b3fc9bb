"""``clearface ensemble``: merge runs (and model files) trained on the same split into one model file.

The merged model averages probabilities over all members (and TTA views), so a run of k members
weighs k times a run of one; the members' validation scores are averaged the same way
(:func:`mean_score`) and tau is chosen again on that average. Runs must share their validation
part (``--split-seed``), otherwise a member would be calibrated on images another member trained
on. With ``--half`` the weights are stored as float16, so tau is chosen on the float16 model's
own scores of the validation images (``--data``/``--labels``), not on the float32 score files.

Model files (a packaged name too) carry no score files, and ``--only`` keeps some members of a
merged file (named after the run each came from, as ``benchmarks/ensemble_study.py`` prints them):
then tau is always chosen by scoring the validation part with the merged weights, the part named
by ``--run`` (default: the first run folder given), and every item's stored settings must rebuild
that same split.
"""

from __future__ import annotations

from pathlib import Path

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


def member_names(blob: dict, fallback: str) -> list[str]:
    """One name per member: the runs a merged file lists (one member each), else ``fallback`` (+ index)."""
    runs = (blob.get("config") or {}).get("ensemble_of") or []
    n = len(blob["members"])
    if len(runs) == n:
        return [Path(r).name for r in runs]
    return [fallback] if n == 1 else [f"{fallback}[{i}]" for i in range(n)]


def ensemble(items: list, out, half: bool = False, rule: str | None = None, data=None, labels=None,
             cache_dir=None, batch_size: int = 512, only: list | None = None, run=None,
             tta: str | None = None) -> dict:
    """Merge ``items`` (run folders, model files or packaged names) into the model file ``out``."""
    if len(items) < 2 and not only:
        raise ClearfaceError("an ensemble needs at least two run folders or model files")
    runs = [RunDir(i) if Path(i).expanduser().is_dir() else None for i in items]
    blobs = [load_model_file(r.model_path if r else i) for i, r in zip(items, runs)]
    if all(runs) and not only and run is None and tta is None:
        return _merge_runs(runs, blobs, out, half, rule, data, labels, cache_dir, batch_size)
    item_names = [r.name if r else Path(str(i)).stem for i, r in zip(items, runs)]
    return _merge_members(item_names, blobs, runs, out, half, rule, data, labels, cache_dir, batch_size, only,
                          run, tta)


def _merge_members(item_names, blobs, runs, out, half, rule, data, labels, cache_dir, batch_size, only, run, tta):
    """Merge chosen members of run folders and model files; tau from scoring the validation part."""
    if not (data and labels):
        raise ClearfaceError("model files and --only choose tau by scoring the validation part with the merged "
                             "weights: give --data and --labels (the images the members trained on)")
    named = [(n, m, b) for name, b in zip(item_names, blobs) for n, m in zip(member_names(b, name), b["members"])]
    if only:
        known = [n for n, _, _ in named]
        for n in only:
            if n not in known:
                raise ClearfaceError(f"--only {n}: no such member (members: {', '.join(known)})")
            if known.count(n) > 1:
                raise ClearfaceError(f"--only {n}: more than one member has this name; merge those files separately")
        named = [t for t in named if t[0] in only]
    if len(named) < 2:
        raise ClearfaceError("an ensemble needs at least two members")
    kept = [b for _, _, b in named]
    ref = kept[0]
    for b in kept[1:]:
        if b["preprocess"] != ref["preprocess"]:
            raise ClearfaceError(f"{named[kept.index(b)][0]}: its preprocessing differs from {named[0][0]}'s; "
                                 "members must see the same input")
    if tta is None and any(b["tta"] != ref["tta"] for b in kept):
        raise ClearfaceError("the members were stored with different test-time augmentation: give --tta "
                             "(flip or none) for the merged model")
    ref_run = RunDir(run) if run is not None else next((r for r in runs if r), None)
    if ref_run is None:
        raise ClearfaceError("give --run: the training run whose split.csv names the validation part "
                             "(no run folder among --runs)")
    dtypes = {b.get("weights_dtype") for b in kept}
    merged = dict(ref, members=[m for _, m, _ in named], tta=tta or ref["tta"],
                  config=dict(ref["config"], ensemble_of=[n for n, _, _ in named]))
    merged.pop("weights_dtype", None)
    if len(dtypes) == 1 and None not in dtypes:
        merged["weights_dtype"] = dtypes.pop()
    if half:
        merged = halve_weights(merged)
    # every item's stored settings must rebuild --run's split: no member trained on its validation images
    settings = [(name, b["config"]) for name, b in zip(item_names, blobs)]
    result = rechoose_on_run(merged, ref_run.path, data, labels, rule or ref["threshold_method"], cache_dir,
                             batch_size, what=f", {len(named)} members"
                             + (", float16 weights" if merged.get("weights_dtype") == "float16" else ""),
                             same_split=settings)
    result["members"] = [n for n, _, _ in named]
    return save_with_result(merged, result, out)


def _merge_runs(runs: list, blobs: list, out, half, rule, data, labels, cache_dir, batch_size) -> dict:
    """Merge whole run folders; tau from their saved validation scores (or, with ``half``, by scoring)."""
    if half and not (data and labels):
        raise ClearfaceError("--half chooses tau on the float16 weights it stores: give --data and --labels "
                             "(the images the runs trained on) to score the validation part with them")
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
