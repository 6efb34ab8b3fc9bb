"""The sub-commands of ``clearface`` (the parser is :mod:`clearface.cli`).

Each command first checks its inputs and outputs (nothing is written when one is refused), then calls the
library, then prints: prose on stderr, and with ``--json`` the result as JSON on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .errors import ClearfaceError
from .outputs import check_input, check_output, check_output_dir, removed_on_failure


def _emit(args, result, *prose: str) -> None:
    for line in prose:
        print(line, file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2, default=_jsonable))


def _jsonable(v):
    try:
        import numpy as np
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(v)


_FOLDER_INPUTS = ("data", "unlabelled", "run", "scores", "model", "calib_data")  # may be folders; labels/config may not


def _model_inputs(model) -> list:
    """The files a ``--model`` reads (the packaged one when omitted), so no output can overwrite them."""
    from .modelfile import PACKAGED, packaged_model_path
    if model is None or (str(model) in PACKAGED and not Path(model).exists()):
        packaged = packaged_model_path(str(model or "default"))
        return [packaged] if packaged else []
    from .rundir import RunDir
    p = Path(model)
    return [p, RunDir(p).model_path] if p.is_dir() else [p]


def _inputs(args, *names: str) -> list:
    """Check the named input options (no FIFO/device; folders only where allowed); return their paths."""
    paths = []
    for name in names:
        value = getattr(args, name, None)
        if value is None:
            continue
        check_input(value, "--" + name.replace("_", "-"), folder_ok=name in _FOLDER_INPUTS)
        paths.append(value)
    paths += _model_inputs(getattr(args, "model", None)) if "model" in names else []
    if getattr(args, "cache_dir", None):  # the cache is an output folder too
        check_output_dir(args.cache_dir, paths, "--cache-dir", _data_dirs(args))
    return paths


def _data_dirs(args) -> list:
    """Input folders of images: nothing may be written inside them."""
    return [v for v in (getattr(args, "data", None), getattr(args, "unlabelled", None)) if v and os.path.isdir(v)]


def _check_file_with_json(out, inputs, what="--out", not_inside=()):
    """Outputs that also write ``out`` with suffix .json beside them: both are checked, and must differ."""
    out = check_output(out, inputs, what, not_inside)
    side = out.with_suffix(".json")
    if side == out:
        raise ClearfaceError(f"{what} {out}: the metrics go to {side}; give the model another suffix (e.g. .pt)")
    check_output(side, inputs, f"{what} (its metrics file {side.name})", not_inside)
    return out


def _distinct(*pairs) -> None:
    seen = {}
    for what, path in pairs:
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise ClearfaceError(f"{what} {path}: the same file as {seen[key]}")
        seen[key] = what


def _preprocess(args):
    """``--preprocess`` with ``--resize`` as its alias; None: the model file's step."""
    from .preprocess import step_arg
    return step_arg(getattr(args, "preprocess", None), getattr(args, "resize", False))


# ---------------------------------------------------------------------------- train

def _train_overrides(args, extra) -> dict:
    from .settings import parse_overrides, parse_value, set_dotted
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
    from .train.run import train
    with removed_on_failure(out, keep=lambda: any(out.glob("**/checkpoints/*.ckpt"))):
        return train(data, labels, out, cfg, resume=resume)


def cmd_train(args, extra) -> int:
    from . import settings
    overrides = _train_overrides(args, extra)
    inputs = _inputs(args, "data", "labels", "config")
    out = check_output_dir(args.out, inputs, "--out", _data_dirs(args))
    if args.resume:
        from .rundir import RunDir
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


# ---------------------------------------------------------------------------- scoring commands

def cmd_evaluate(args, extra) -> int:
    inputs = _inputs(args, "data", "labels", "model")
    if args.report:
        check_output_dir(args.report, inputs, "--report", _data_dirs(args))
        from .report import build_report
        rep = build_report(args.model, args.data, args.labels, args.report, threshold=args.threshold, preprocess=_preprocess(args),
                           cache_dir=args.cache_dir, batch_size=args.batch_size, engine=args.engine)
        result = dict(rep["headline"], engine=rep.get("model", {}).get("engine"))
        print(f"wrote report {rep['out']}/index.html ({rep['seconds']['total']:.1f} s)", file=sys.stderr)
    else:
        from .predict import evaluate
        result = evaluate(args.model, args.data, args.labels, threshold=args.threshold, preprocess=_preprocess(args),
                          cache_dir=args.cache_dir, batch_size=args.batch_size, engine=args.engine)
    if args.json:
        print(json.dumps(result, indent=2, default=_jsonable))
    else:  # the table is this command's result, so it goes to stdout
        print(f"model      {result['model']}")
        print(f"images     {result['n']} ({result['n_neg']} class 0, {result['n_pos']} class 1)")
        print(f"threshold  {result['threshold']:.6f} ({result['threshold_origin']})")
        print(f"FAR        {result['far']:.4f}")
        print(f"FRR        {result['frr']:.4f}")
        print(f"HTER       {result['hter']:.4f}  (95% CI {result['hter_ci95'][0]:.4f}-{result['hter_ci95'][1]:.4f})")
        print(f"EER        {result['eer']:.4f}")
        print(f"ROC AUC    {result['auc']:.4f}")
    return 0


def cmd_report(args, extra) -> int:
    inputs = _inputs(args, "data", "labels", "model", "run")
    check_output_dir(args.out, inputs, "--out", _data_dirs(args))
    from .report import build_report
    rep = build_report(args.model, args.data, args.labels, args.out, run=args.run, threshold=args.threshold,
                       preprocess=_preprocess(args), cache_dir=args.cache_dir, batch_size=args.batch_size, engine=args.engine)
    h = rep["headline"]
    _emit(args, rep, f"wrote {rep['out']}/index.html: {h['n']} images, tau {h['threshold']:.6f}, HTER {h['hter']:.4f} "
          f"(FAR {h['far']:.4f}, FRR {h['frr']:.4f}), EER {h['eer']:.4f}, AUC {h['auc']:.4f} "
          f"in {rep['seconds']['total']:.1f} s")
    return 0


def cmd_predict(args, extra) -> int:
    inputs = _inputs(args, "data", "model")
    _distinct(("--out", args.out), ("--scores", args.scores), ("--embeddings", args.embeddings),
              ("--faces", getattr(args, "faces", None)))
    check_output(args.out, inputs, "--out", _data_dirs(args))
    for opt in ("scores", "embeddings", "faces"):
        check_output(getattr(args, opt, None), inputs, "--" + opt, _data_dirs(args))
    from .predict import predict
    info = predict(args.model, args.data, args.out, scores_path=args.scores, threshold=args.threshold,
                   preprocess=_preprocess(args), cache_dir=args.cache_dir, batch_size=args.batch_size, engine=args.engine,
                   embeddings_path=args.embeddings, faces_path=getattr(args, "faces", None))
    summary = {k: v for k, v in info.items() if k not in ("scores", "names")}  # per image: --scores has them
    summary.update(out=str(args.out), scores_file=args.scores)
    _emit(args, summary, f"wrote {info['n']} labels to {args.out} ({info['n_pos']} class 1, "
          f"{info['n'] - info['n_pos']} class 0; tau {info['threshold']:.6f}; {info['images_per_s']:.0f} images/s)")
    return 0


def cmd_export(args, extra) -> int:
    out = check_output(args.out, _inputs(args, "model"), "--out")
    if out.suffix.lower() != ".onnx":
        raise ClearfaceError(f"--out {out}: an ONNX file must end in .onnx")
    import onnx
    newest = onnx.defs.onnx_opset_version()
    if args.opset > newest:
        raise ClearfaceError(f"--opset {args.opset}: the installed onnx supports opsets up to {newest}")
    if getattr(args, "int8", False):
        return _export_int8(args, out)
    from .export import export_onnx
    meta = export_onnx(args.model, out, opset=args.opset)
    _emit(args, meta, f"wrote {meta['path']} ({', '.join(m['model'] for m in meta['members'])}; tau "
          f"{meta['threshold']:.6f}; max |onnx - torch| {meta['max_abs_diff']:.2g})")
    return 0


def _export_int8(args, out) -> int:
    if not args.calib_data:
        raise ClearfaceError("--int8 needs --calib-data: images to calibrate on (e.g. the validation images)")
    inputs = _inputs(args, "model", "calib_data", "calib_labels")
    check_output(out, inputs, "--out", [args.calib_data] if os.path.isdir(args.calib_data) else [])
    from .quantize import export_int8
    meta = export_int8(args.model, out, args.calib_data, args.calib_labels, args.calib_images,
                       cache_dir=getattr(args, "cache_dir", None))
    q = meta["quantization"]
    _emit(args, meta, f"wrote {meta['path']} (int8 {q['format'].upper()}, calibrated on {q['calibration_images']} "
          f"images; tau {meta['threshold']:.6f} from {meta['threshold_source']})")
    return 0


def cmd_serve(args, extra) -> int:
    _inputs(args, "model")
    from .serve.app import run_server
    run_server(args.model, host=args.host, port=args.port, engine=args.engine, log_level=args.log_level)
    return 0


# ---------------------------------------------------------------------------- run-level commands

def cmd_audit(args, extra) -> int:
    inputs = _inputs(args, "scores", "data", "labels", "config")
    _distinct(("--out", args.out), ("--sheet", args.sheet))
    out = check_output(args.out, inputs, "--out", _data_dirs(args))
    check_output(args.sheet, inputs, "--sheet", _data_dirs(args))
    if args.sheet and not args.data:
        raise ClearfaceError("--sheet needs --data (the images to show)")
    from .audit import audit
    scores = args.scores
    if scores is None:
        if not (args.data and args.labels):
            raise ClearfaceError("audit needs --scores, or --data and --labels to train a k-fold run first")
        from . import settings
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
    from .rundir import RunDir
    paths = []
    for r in runs:
        check_input(r, "--runs", folder_ok=True)
        paths += [r, RunDir(r).model_path]
    return paths


def _tau_prose(r: dict, out) -> str:
    test = f", held-out HTER {r['test']['hter']:.4f}" if "test" in r else ""
    return f"wrote {out}: tau {r['threshold']:.6f} ({r.get('threshold_source', '')}), val HTER {r['val']['hter']:.4f}{test}"


def cmd_ensemble(args, extra) -> int:
    out = _check_file_with_json(args.out, _run_inputs(args.runs) + _inputs(args, "data", "labels"),
                                not_inside=_data_dirs(args))
    from .ensemble import ensemble
    r = ensemble(args.runs, out, half=args.half, rule=args.threshold_rule, data=args.data, labels=args.labels,
                 cache_dir=args.cache_dir, batch_size=args.batch_size)
    _emit(args, {k: r[k] for k in ("threshold", "threshold_source", "val", "test") if k in r}, _tau_prose(r, out))
    return 0


def cmd_calibrate(args, extra) -> int:
    out = _check_file_with_json(args.out, _inputs(args, "data", "labels", "model", "run"),
                                not_inside=_data_dirs(args))
    from .calibrate import calibrate
    r = calibrate(args.model, args.run, args.data, args.labels, out, tta=args.tta, rule=args.threshold_rule,
                  half=args.half, cache_dir=args.cache_dir, batch_size=args.batch_size, resize=args.resize)
    _emit(args, {k: r[k] for k in ("threshold", "threshold_source", "val", "test") if k in r}, _tau_prose(r, out))
    return 0


def cmd_pseudolabel(args, extra) -> int:
    out = _check_file_with_json(args.out, _inputs(args, "data", "labels", "model", "run", "unlabelled"),
                                not_inside=_data_dirs(args))
    from .pseudolabel import pseudolabel
    r = pseudolabel(args.model, args.run, args.data, args.labels, args.unlabelled, out, precision0=args.precision0,
                     precision1=args.precision1, cache_dir=args.cache_dir, batch_size=args.batch_size,
                     resize=args.resize)
    u = r["unlabelled"]
    _emit(args, r, f"wrote {out}: {u['class0']} class 0 (score <= {r['below']:.4f}), {u['class1']} class 1 "
          f"(score >= {r['above']:.4f}), {u['left_out']} of {u['images']} left out")
    return 0


def cmd_models(args, extra) -> int:
    from .models import get_model_entry, list_models
    if args.json:
        print(json.dumps([{"name": n, "description": get_model_entry(n).description} for n in list_models()], indent=2))
        return 0
    for name in list_models():
        print(f"{name:18s} {get_model_entry(name).description}")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "report": cmd_report, "predict": cmd_predict,
            "export": cmd_export, "serve": cmd_serve, "audit": cmd_audit, "ensemble": cmd_ensemble,
            "calibrate": cmd_calibrate, "pseudolabel": cmd_pseudolabel, "models": cmd_models}
