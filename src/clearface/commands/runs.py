"""Commands that train or reshape runs: train, audit, ensemble, calibrate, pseudolabel."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ClearfaceError
from ..outputs import check_input, check_output, check_output_dir, removed_on_failure
from .checks import _check_file_with_json, _data_dirs, _distinct, _emit, _inputs, _model_inputs, _preprocess


# ---------------------------------------------------------------------------- train

def _train_overrides(args, extra) -> dict:
    from ..settings import parse_overrides, parse_value, set_dotted
    overrides = parse_overrides(extra)
    for dest, raw in vars(args).items():
        if dest.startswith("set__"):
            set_dotted(overrides, dest[len("set__"):], parse_value(raw))
    if getattr(args, "preprocess", None):
        overrides["preprocess"] = args.preprocess
    if args.resize:
        if overrides.get("preprocess", "resize") != "resize":
            raise ClearfaceError(f"--resize and --preprocess {overrides['preprocess']} contradict each other: give one")
        overrides["preprocess"] = "resize"
    if args.cache_dir:
        overrides["cache_dir"] = args.cache_dir
    if args.weights and args.no_pretrained:
        raise ClearfaceError("--weights and --no-pretrained contradict each other: give one")
    if args.weights:
        check_input(args.weights, "--weights")
        if not os.path.isfile(args.weights):
            raise ClearfaceError(f"--weights {args.weights}: weights file not found")
        overrides.setdefault("model_kwargs", {})["weights"] = args.weights
    if args.no_pretrained:
        overrides.setdefault("model_kwargs", {})["pretrained"] = False
    return overrides


def _run_training(data, labels, out: Path, cfg: dict, resume: bool = False) -> dict:
    """Train into ``out``; on bad input take back what was added (kept once checkpoints exist)."""
    from ..train.run import train
    with removed_on_failure(out, keep=lambda: any(out.glob("**/checkpoints/*.ckpt"))):
        return train(data, labels, out, cfg, resume=resume)


def cmd_train(args, extra) -> int:
    from .. import settings
    overrides = _train_overrides(args, extra)
    inputs = _inputs(args, "data", "labels", "config")
    out = check_output_dir(args.out, inputs, "--out", _data_dirs(args))
    if args.resume:
        from ..rundir import RunDir
        saved = RunDir(out).config_path
        if not saved.is_file():
            raise ClearfaceError(f"{saved}: nothing to resume (no config.yaml in --out)")
        cfg = settings.resolve(str(saved), overrides)
    else:
        cfg = settings.resolve(args.config, overrides)
    for key in ("pseudo_data", "pseudo_labels"):
        check_input(cfg.get(key), f"--{key.replace('_', '-')}", folder_ok=key == "pseudo_data")
    if cfg.get("cache_dir"):  # also when it comes from a recipe or a resumed config.yaml
        check_output_dir(cfg["cache_dir"], inputs, "cache_dir", _data_dirs(args))
    result = _run_training(args.data, args.labels, out, cfg, resume=args.resume)
    short = {k: result[k] for k in ("threshold", "threshold_source", "val", "test") if k in result}
    prose = []
    if result:
        prose.append(f"wrote {out}/model.pt: tau {result['threshold']:.6f}, val HTER {result['val']['hter']:.4f}"
                     + (f", held-out HTER {result['test']['hter']:.4f}" if "test" in result else ""))
    _emit(args, short, *prose)
    return 0

# ---------------------------------------------------------------------------- run-level commands

def cmd_audit(args, extra) -> int:
    inputs = _inputs(args, "scores", "data", "labels", "config")
    _distinct(("--out", args.out), ("--sheet", args.sheet))
    out = check_output(args.out, inputs, "--out", _data_dirs(args))
    check_output(args.sheet, inputs, "--sheet", _data_dirs(args))
    if args.sheet and not args.data:
        raise ClearfaceError("--sheet needs --data (the images to show)")
    from ..audit import audit
    scores = args.scores
    if scores is None:
        if not (args.data and args.labels):
            raise ClearfaceError("audit needs --scores, or --data and --labels to train a k-fold run first")
        from .. import settings
        run_dir = Path(args.run_dir) if args.run_dir else out.with_suffix("").with_name(out.stem + "_oof")
        check_output_dir(run_dir, inputs, "--run-dir", _data_dirs(args))
        cfg = settings.resolve(args.config, {"folds": args.folds, **settings.parse_overrides(extra)})
        _run_training(args.data, args.labels, run_dir, cfg)
        scores = run_dir
    elif extra:
        raise ClearfaceError(f"unrecognized arguments: {' '.join(extra)} (settings only apply without --scores)")
    r = audit(scores, out, data=args.data, labels_path=args.labels, top=args.top, sheet=args.sheet,
              cache_dir=args.cache_dir)
    _emit(args, r, f"wrote {out}: {r['suspects']} suspects of {r['n']} labels ({100 * r['share']:.2f} %)"
          + (f"; sheet {r['sheet']}" if r.get("sheet") else ""))
    return 0


def _run_inputs(runs) -> list:
    """What ``--runs`` reads (run folders and their model files, model files, packaged models)."""
    paths = []
    for r in runs:
        check_input(r, "--runs", folder_ok=True)
        paths += _model_inputs(r)
    return paths


def _tau_prose(r: dict, out) -> str:
    test = f", held-out HTER {r['test']['hter']:.4f}" if "test" in r else ""
    return f"wrote {out}: tau {r['threshold']:.6f} ({r.get('threshold_source', '')}), val HTER {r['val']['hter']:.4f}{test}"


def cmd_ensemble(args, extra) -> int:
    out = _check_file_with_json(args.out, _run_inputs(args.runs) + _inputs(args, "data", "labels", "run"),
                                not_inside=_data_dirs(args))
    from ..ensemble import ensemble
    r = ensemble(args.runs, out, half=args.half, rule=args.threshold_rule, data=args.data, labels=args.labels,
                 cache_dir=args.cache_dir, batch_size=args.batch_size, only=args.only, run=args.run, tta=args.tta)
    _emit(args, {k: r[k] for k in ("threshold", "threshold_source", "val", "test") if k in r}, _tau_prose(r, out))
    return 0


def cmd_calibrate(args, extra) -> int:
    out = _check_file_with_json(args.out, _inputs(args, "data", "labels", "model", "run"),
                                not_inside=_data_dirs(args))
    from ..calibrate import calibrate
    r = calibrate(args.model, args.run, args.data, args.labels, out, tta=args.tta, rule=args.threshold_rule,
                  half=args.half, cache_dir=args.cache_dir, batch_size=args.batch_size,
                  preprocess=_preprocess(args))
    _emit(args, {k: r[k] for k in ("threshold", "threshold_source", "val", "test") if k in r}, _tau_prose(r, out))
    return 0


def cmd_pseudolabel(args, extra) -> int:
    out = _check_file_with_json(args.out, _inputs(args, "data", "labels", "model", "run", "unlabelled"),
                                not_inside=_data_dirs(args))
    from ..pseudolabel import pseudolabel
    r = pseudolabel(args.model, args.run, args.data, args.labels, args.unlabelled, out, precision0=args.precision0,
                     precision1=args.precision1, cache_dir=args.cache_dir, batch_size=args.batch_size,
                     preprocess=_preprocess(args), engine=args.engine)
    u = r["unlabelled"]
    _emit(args, r, f"wrote {out}: {u['class0']} class 0 (score <= {r['below']:.4f}), {u['class1']} class 1 "
          f"(score >= {r['above']:.4f}), {u['left_out']} of {u['images']} left out")
    return 0
