"""The ``clearface`` command. Thin: parse arguments, call the library, print.

Heavy imports (torch, Lightning) happen inside the sub-commands so ``clearface --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import ClearfaceError


def _add_data(p, labels: bool):
    p.add_argument("--data", required=True, help="zip or folder of numerically named images")
    if labels:
        p.add_argument("--labels", required=True, help="text file, one 0/1 per line, line i = image i")
    p.add_argument("--resize", action="store_true", help="convert any size/mode to 64x64 RGB instead of failing")
    p.add_argument("--cache-dir", default=None, help="where decoded uint8 caches live (default: user cache dir)")


def _add_engine(p):
    p.add_argument("--engine", choices=("auto", "torch", "onnx"), default="auto",
                   help="auto (default): onnxruntime through a cached ONNX export of the model, PyTorch if "
                   "the export fails; torch: PyTorch; onnx: onnxruntime, failing if the export fails")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    ap = argparse.ArgumentParser(prog="clearface", description="Train, calibrate, evaluate and serve face "
                                 "classifiers (1 = clean face, 0 = occluded) that minimise HTER = (FAR + FRR) / 2.")
    ap.add_argument("--version", action="version", version=f"clearface {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train, calibrate tau on validation data, save RUN_DIR/model.pt",
                       description="Any recipe setting can be overridden as --key value (e.g. --epochs 5, "
                       "--model-kwargs.width 24, --augment.erase 0.2). See configs/*.yaml.")
    _add_data(p, labels=True)
    p.add_argument("--out", required=True, help="run folder (created)")
    p.add_argument("--config", default=None, help="YAML recipe, e.g. configs/default.yaml")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="pretrained (e.g. ImageNet) weights file for models that take them (= --model_kwargs.weights)")
    p.add_argument("--no-pretrained", action="store_true",
                   help="train a pretrained-capable model from scratch (= --model_kwargs.pretrained false)")

    p = sub.add_parser("evaluate", help="FAR, FRR, HTER at the stored tau, EER, AUC on labelled images")
    _add_data(p, labels=True)
    p.add_argument("--model", default=None, help="model file (.pt or .onnx) or run folder; default: the packaged model")
    p.add_argument("--threshold", type=float, default=None, help="use this tau instead of the stored one")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--report", default=None, metavar="DIR", help="also write the HTML report (as `clearface report`) to DIR")
    _add_engine(p)

    p = sub.add_parser("report", help="HTML report: metrics, ROC/DET curves, galleries of mistakes, Grad-CAM",
                       description="Writes DIR/index.html (opens offline), DIR/metrics.json, DIR/scores.csv, "
                       "DIR/figures/*.png and DIR/img/*.png.")
    _add_data(p, labels=True)
    p.add_argument("--model", default=None, help="model file (.pt or .onnx) or run folder; default: the packaged model")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder (created; a previous report there is replaced)")
    p.add_argument("--run", default=None, metavar="RUN_DIR", help="training run folder: adds loss and val HTER curves from summary.csv")
    p.add_argument("--threshold", type=float, default=None, help="use this tau instead of the stored one")
    p.add_argument("--batch-size", type=int, default=512)
    _add_engine(p)

    p = sub.add_parser("predict", help="label images: one 0/1 line per image, in numeric order")
    _add_data(p, labels=False)
    p.add_argument("--model", default=None, help="model file (.pt or .onnx) or run folder; default: the packaged model")
    p.add_argument("--out", required=True, help="label file to write (format of label_train.txt)")
    p.add_argument("--scores", default=None, help="also write a CSV of name, score, label")
    p.add_argument("--embeddings", default=None, help="also write the model's embeddings (.npy), e.g. facenet_seed's 128-d")
    p.add_argument("--threshold", type=float, default=None, help="use this tau instead of the stored one")
    p.add_argument("--batch-size", type=int, default=512)
    _add_engine(p)

    p = sub.add_parser("export", help="export a model file to ONNX (tau, preprocessing, classes in its metadata)")
    p.add_argument("--model", default=None, help="model file (.pt) or run folder; default: the packaged model")
    p.add_argument("--out", required=True, help="ONNX file to write (.onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")

    p = sub.add_parser("serve", help="HTTP service: POST /predict, GET /health, and a web page at /")
    p.add_argument("--model", default=None, help="model file (.pt or .onnx) or run folder; default: the packaged model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn log level (info logs every request)")
    _add_engine(p)

    p = sub.add_parser("audit", help="rank likely wrong labels from out-of-fold scores (confident learning)")
    p.add_argument("--scores", default=None, help="k-fold run folder (its val_scores.csv) or a name,label,score "
                   "CSV; without it, a k-fold run is trained first (--config, --folds) to get out-of-fold scores")
    p.add_argument("--config", default=None, help="recipe for the k-fold run (default: configs-like defaults)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--run-dir", default=None, help="where the k-fold run goes (default: OUT without suffix + _oof)")
    p.add_argument("--out", required=True, help="suspects CSV to write")
    p.add_argument("--data", default=None, help="the images, for the contact sheet")
    p.add_argument("--labels", default=None, help="label file, to check it matches the scores")
    p.add_argument("--sheet", default=None, help="contact-sheet PNG of the top suspects")
    p.add_argument("--top", type=int, default=100)
    p.add_argument("--cache-dir", default=None)

    p = sub.add_parser("ensemble", help="merge runs trained on the same split into one model file (tau re-chosen)")
    p.add_argument("--runs", nargs="+", required=True, help="finished run folders (same --split_seed)")
    p.add_argument("--out", required=True, help="model file to write; metrics go beside it as .json")
    p.add_argument("--half", action="store_true", help="store the weights as float16 (half the file; "
                   "inference still runs in float32)")

    p = sub.add_parser("calibrate", help="re-choose tau on a run's validation part after changing TTA or the rule",
                       description="Scores the validation part of RUN_DIR/split.csv with the model (as changed by "
                       "--tta/--method), chooses tau there, scores the held-out part, and writes a new model file.")
    _add_data(p, labels=True)
    p.add_argument("--model", required=True, help="model file (.pt) or run folder")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="the training run whose split.csv names the validation part")
    p.add_argument("--out", required=True, help="model file to write; metrics go beside it as .json")
    p.add_argument("--tta", choices=("none", "flip"), default=None, help="test-time augmentation (default: as stored)")
    p.add_argument("--method", choices=("min_hter", "eer"), default=None, help="threshold rule (default: as stored)")
    p.add_argument("--half", action="store_true", help="store the weights as float16")
    p.add_argument("--batch-size", type=int, default=512)

    p = sub.add_parser("pseudolabel", help="confident teacher calls on unlabelled images, for train --pseudo_labels",
                       description="Chooses one score cut per class on the validation part of RUN_DIR so that the "
                       "teacher's calls there are at least --precision0/--precision1 correct, then labels the --unlabelled images "
                       "outside the cuts and writes them as name,score,label (plus a .json summary).")
    _add_data(p, labels=True)
    p.add_argument("--model", required=True, help="teacher model file (.pt) or run folder")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="the teacher's training run (its split.csv names the validation part)")
    p.add_argument("--unlabelled", required=True, help="zip or folder of images without labels, e.g. val_img.zip")
    p.add_argument("--precision0", type=float, default=0.95, help="required share of correct class-0 calls on validation")
    p.add_argument("--precision1", type=float, default=0.98, help="required share of correct class-1 calls on validation")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--batch-size", type=int, default=512)

    sub.add_parser("models", help="list the model registry")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if extra and args.command not in ("train", "audit"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](args, extra) or 0
    except ClearfaceError as exc:
        print(f"clearface: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("clearface: interrupted", file=sys.stderr)
        return 130


def cmd_train(args, extra) -> int:
    from . import config
    overrides = config.parse_overrides(extra)
    for key in ("resize", "cache_dir"):
        if getattr(args, key):
            overrides[key] = getattr(args, key)
    if args.weights and args.no_pretrained:
        raise ClearfaceError("--weights and --no-pretrained contradict each other: give one")
    if args.weights:
        overrides.setdefault("model_kwargs", {})["weights"] = args.weights
    if args.no_pretrained:
        overrides.setdefault("model_kwargs", {})["pretrained"] = False
    if args.resume:
        from pathlib import Path
        saved = Path(args.out) / "config.yaml"
        if not saved.exists():
            raise ClearfaceError(f"{saved}: nothing to resume (no config.yaml in --out)")
        cfg = config.resolve(str(saved), overrides)
    else:
        cfg = config.resolve(args.config, overrides)
    from .train.run import train
    result = train(args.data, args.labels, args.out, cfg, resume=args.resume)
    if result:
        print(json.dumps({k: result[k] for k in ("threshold", "threshold_source", "val", "test") if k in result}, indent=2))
    return 0


def cmd_evaluate(args, extra) -> int:
    if args.report:  # the report scores the images and computes the same headline: score once
        from .report import build_report
        rep = build_report(args.model, args.data, args.labels, args.report, threshold=args.threshold, resize=args.resize,
                           cache_dir=args.cache_dir, batch_size=args.batch_size, engine=args.engine)
        result = dict(rep["headline"], engine=rep.get("model", {}).get("engine"))
        print(f"wrote report {rep['out']}/index.html ({rep['seconds']['total']:.1f} s)", file=sys.stderr)
    else:
        from .predict import evaluate
        result = evaluate(args.model, args.data, args.labels, threshold=args.threshold, resize=args.resize,
                          cache_dir=args.cache_dir, batch_size=args.batch_size, engine=args.engine)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
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
    from .report import build_report
    rep = build_report(args.model, args.data, args.labels, args.out, run=args.run, threshold=args.threshold,
                       resize=args.resize, cache_dir=args.cache_dir, batch_size=args.batch_size, engine=args.engine)
    h = rep["headline"]
    print(f"wrote {rep['out']}/index.html: {h['n']} images, tau {h['threshold']:.6f}, HTER {h['hter']:.4f} "
          f"(FAR {h['far']:.4f}, FRR {h['frr']:.4f}), EER {h['eer']:.4f}, AUC {h['auc']:.4f} "
          f"in {rep['seconds']['total']:.1f} s", file=sys.stderr)
    return 0


def cmd_predict(args, extra) -> int:
    from .predict import predict
    info = predict(args.model, args.data, args.out, scores_path=args.scores, threshold=args.threshold,
                   resize=args.resize, cache_dir=args.cache_dir, batch_size=args.batch_size, engine=args.engine,
                   embeddings_path=args.embeddings)
    print(f"wrote {info['n']} labels to {args.out} ({info['n_pos']} class 1, {info['n'] - info['n_pos']} class 0; "
          f"tau {info['threshold']:.6f}; {info['images_per_s']:.0f} images/s)", file=sys.stderr)
    return 0


def cmd_export(args, extra) -> int:
    from .export import export_onnx
    if args.opset < 17:
        raise ClearfaceError(f"--opset {args.opset}: need 17 or later")
    meta = export_onnx(args.model, args.out, opset=args.opset)
    print(f"wrote {meta['path']} ({', '.join(m['model'] for m in meta['members'])}; tau {meta['threshold']:.6f}; "
          f"max |onnx - torch| {meta['max_abs_diff']:.2g})", file=sys.stderr)
    return 0


def cmd_serve(args, extra) -> int:
    from .serve.app import run_server
    run_server(args.model, host=args.host, port=args.port, engine=args.engine, log_level=args.log_level)
    return 0


def cmd_audit(args, extra) -> int:
    from .audit import audit
    scores = args.scores
    if scores is None:
        if not (args.data and args.labels):
            raise ClearfaceError("audit needs --scores, or --data and --labels to train a k-fold run first")
        from pathlib import Path

        from . import config
        from .train.run import train
        run_dir = Path(args.run_dir) if args.run_dir else Path(args.out).with_suffix("").with_name(Path(args.out).stem + "_oof")
        cfg = config.resolve(args.config, {"folds": args.folds, **config.parse_overrides(extra)})
        train(args.data, args.labels, run_dir, cfg)
        scores = run_dir
    r = audit(scores, args.out, data=args.data, labels_path=args.labels, top=args.top, sheet=args.sheet,
              cache_dir=args.cache_dir)
    print(json.dumps(r, indent=2))
    return 0


def cmd_ensemble(args, extra) -> int:
    from .ensemble import merge_runs
    r = merge_runs(args.runs, args.out, half=args.half)
    print(json.dumps({k: r[k] for k in ("threshold", "threshold_source", "val", "test") if k in r}, indent=2))
    return 0


def cmd_calibrate(args, extra) -> int:
    from .calibrate import recalibrate
    r = recalibrate(args.model, args.run, args.data, args.labels, args.out, tta=args.tta, method=args.method,
                    half=args.half, cache_dir=args.cache_dir, batch_size=args.batch_size, resize=args.resize)
    print(json.dumps({k: r[k] for k in ("threshold", "threshold_source", "val", "test") if k in r}, indent=2))
    return 0


def cmd_pseudolabel(args, extra) -> int:
    from .pseudolabel import pseudo_label
    r = pseudo_label(args.model, args.run, args.data, args.labels, args.unlabelled, args.out, precision0=args.precision0,
                     precision1=args.precision1,
                     cache_dir=args.cache_dir, batch_size=args.batch_size, resize=args.resize)
    u = r["unlabelled"]
    print(json.dumps(r["validation"], indent=2))
    print(f"wrote {args.out}: {u['class0']} class 0 (score <= {r['below']:.4f}), {u['class1']} class 1 "
          f"(score >= {r['above']:.4f}), {u['left_out']} of {u['images']} left out", file=sys.stderr)
    return 0


def cmd_models(args, extra) -> int:
    from .models import get_model_entry, list_models
    for name in list_models():
        print(f"{name:18s} {get_model_entry(name).description}")
    return 0


COMMANDS = {"audit": cmd_audit, "pseudolabel": cmd_pseudolabel, "calibrate": cmd_calibrate, "ensemble": cmd_ensemble, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "models": cmd_models,
            "export": cmd_export, "serve": cmd_serve, "report": cmd_report}

if __name__ == "__main__":
    sys.exit(main())
