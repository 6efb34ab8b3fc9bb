"""Commands that score images with a model file: evaluate, report, predict, export, serve, models."""

from __future__ import annotations

import json
import os
import sys

from ..errors import ClearfaceError
from ..outputs import check_output, check_output_dir
from .checks import _data_dirs, _distinct, _emit, _inputs, _jsonable, _preprocess


# ---------------------------------------------------------------------------- scoring commands

def cmd_evaluate(args, extra) -> int:
    inputs = _inputs(args, "data", "labels", "model")
    if args.report:
        check_output_dir(args.report, inputs, "--report", _data_dirs(args))
        from ..report import build_report
        rep = build_report(args.model, args.data, args.labels, args.report, threshold=args.threshold, preprocess=_preprocess(args),
                           cache_dir=args.cache_dir, batch_size=args.batch_size, engine=args.engine)
        result = dict(rep["headline"], engine=rep.get("model", {}).get("engine"))
        print(f"wrote report {rep['out']}/index.html ({rep['seconds']['total']:.1f} s)", file=sys.stderr)
    else:
        from ..predict import evaluate
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
    from ..report import build_report
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
    from ..predict import predict
    info = predict(args.model, args.data, args.out, scores_path=args.scores, threshold=args.threshold,
                   preprocess=_preprocess(args), cache_dir=args.cache_dir, batch_size=args.batch_size, engine=args.engine,
                   embeddings_path=args.embeddings, faces_path=getattr(args, "faces", None))
    summary = {k: v for k, v in info.items() if k not in ("scores", "names")}  # per image: --scores has them
    summary.update(out=str(args.out), scores_file=args.scores)
    _emit(args, summary, f"wrote {info['n']} labels to {args.out} ({info['n_pos']} class 1, "
          f"{info['n'] - info['n_pos']} class 0; tau {info['threshold']:.6f}; {info['images_per_s']:.0f} images/s)")
    return 0


def cmd_export(args, extra) -> int:
    from ..quantize import DEFAULT_CALIBRATION_IMAGES, DEFAULT_FALLBACK_AGREEMENT, DEFAULT_PERCENTILE
    int8 = getattr(args, "int8", False)
    int8_only = {"calib_data": None, "calib_labels": None, "calib_part": None,
                 "calib_images": DEFAULT_CALIBRATION_IMAGES, "calib_method": "minmax",
                 "calib_percentile": DEFAULT_PERCENTILE, "full_range": False,
                 "fallback_agreement": DEFAULT_FALLBACK_AGREEMENT}
    if not int8:  # an int8 setting without --int8 would be silently ignored: say so instead
        given = [k for k in int8_only if getattr(args, k, None) not in (None, False)]
        if given:
            raise ClearfaceError(f"--{given[0].replace('_', '-')} only applies with --int8")
    for k, default in int8_only.items():
        if getattr(args, k, None) is None:
            setattr(args, k, default)
    if args.calib_percentile != DEFAULT_PERCENTILE and args.calib_method != "percentile":
        raise ClearfaceError("--calib-percentile only applies with --calib-method percentile")
    if int8 and not args.calib_data:
        raise ClearfaceError("--int8 needs --calib-data: images to calibrate on (e.g. the validation images)")
    if args.calib_part and not args.calib_labels:  # before any image is read
        raise ClearfaceError("--calib-part needs --calib-labels: the split is rebuilt from the images and their labels")
    inputs = _inputs(args, "model", "calib_data", "calib_labels")
    out = check_output(args.out, inputs, "--out", [args.calib_data] if int8 and os.path.isdir(args.calib_data) else [])
    if out.suffix.lower() != ".onnx" and not (int8 and out.suffix.lower() == ".json"):
        raise ClearfaceError(f"--out {out}: an ONNX file must end in .onnx (with --int8 also .json: the int8 "
                             "recipe, ranges without weights)")
    import onnx
    newest = onnx.defs.onnx_opset_version()
    if args.opset > newest:
        raise ClearfaceError(f"--opset {args.opset}: the installed onnx supports opsets up to {newest}")
    if int8:
        from ..quantize import export_int8
        meta = export_int8(args.model, out, args.calib_data, args.calib_labels, args.calib_images,
                           cache_dir=getattr(args, "cache_dir", None), calib_part=args.calib_part,
                           fallback_agreement=args.fallback_agreement, calibration=args.calib_method,
                           percentile=args.calib_percentile, reduce_range=not args.full_range)
        q, fb = meta["quantization"], meta.get("fallback")
        what = (f"int8 {q['format'].upper()}, calibrated on {q['calibration_images']} images; tau "
                f"{meta['threshold']:.6f} from {meta['threshold_source']}")
        if fb:
            what += (f"; float re-scoring within {fb['margin_logit']:.3f} logits of tau {fb['threshold']:.6f} "
                     f"({100 * fb['band_share']:.1f} % of {fb['chosen_on']}; labels agree "
                     f"{100 * fb['agreement_without']:.2f} % without it)")
    else:
        from ..export import export_onnx
        meta = export_onnx(args.model, out, opset=args.opset)
        what = (f"{', '.join(m['model'] for m in meta['members'])}; tau {meta['threshold']:.6f}; "
                f"max |onnx - torch| {meta['max_abs_diff']:.2g}")
    _emit(args, meta, f"wrote {meta['path']} ({what})")
    return 0


def cmd_serve(args, extra) -> int:
    _inputs(args, "model")
    from ..serve.app import run_server
    run_server(args.model, host=args.host, port=args.port, engine=args.engine, log_level=args.log_level,
               preprocess=args.preprocess)
    return 0


def cmd_models(args, extra) -> int:
    from ..models import get_model_entry, list_models
    if args.json:
        print(json.dumps([{"name": n, "description": get_model_entry(n).description} for n in list_models()], indent=2))
        return 0
    for name in list_models():
        print(f"{name:18s} {get_model_entry(name).description}")
    return 0
