"""The ``clearface`` command: parse arguments, check every path and number, call the library, print.

Conventions, the same for every command:
- bad input is one line ``clearface: error: ...`` naming the option, file, line or value; exit code 2;
- outputs are checked (:mod:`clearface.outputs`) before any work starts, so a refused command writes nothing;
- human progress and summaries go to stderr; ``--json`` puts the machine-readable result on stdout;
- options are spelled with dashes (``--cache-dir``); the old underscore spellings still work.

Heavy imports (torch, Lightning) happen inside the sub-commands so ``clearface --help`` is instant.
The sub-commands themselves live in :mod:`clearface.commands` (runs.py: train and run-level; scoring.py).
"""

from __future__ import annotations

import argparse
import os
import sys

from .cli_options import (COUNT, FOLDS, PERCENT, PORT, SHARE, add_batch, add_cache_dir, add_data, add_engine, add_json,
                          add_model, add_preprocess, add_rule, add_scoring, add_settings, opt, ranged, rule)
from .errors import ClearfaceError


class UsageError(ClearfaceError):
    """A command line argparse refused; shown as one line like every other error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message over several lines; we keep one line
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------------------- the parser

MODEL_ANY = "model file (.pt or .onnx) or run folder; default: the packaged model"
CALIBRATE_ABOUT = ("Scores the validation part of RUN_DIR/split.csv with the model (as changed by --tta/--threshold-rule/"
                   "--half), chooses tau there, scores the held-out part, and writes a new model file.")
GAN_ABOUT = ("Trains a class-conditional GAN (spectral-norm hinge DCGAN with DiffAugment) on the images RUN_DIR/"
             "split.csv marks 'train', and writes OUT/generator.pt (after every epoch) for train --imbalance "
             "gan_oversample --gan.generator OUT/generator.pt; TensorBoard sample grids per epoch in OUT/tb. See docs/gan.md.")
PSEUDOLABEL_ABOUT = ("Chooses one score cut per class on the validation part of RUN_DIR so that the teacher's calls there "
                     "are at least --precision0/--precision1 correct, then labels the --unlabelled images outside the "
                     "cuts and writes them as name,score,label (plus a .json summary).")


def _command(sub, name: str, *, data: str | None = None, model: str | None = None, model_required=False,
             run: str | None = None, json=True, **kw):
    """A sub-command with what most commands open with: --data (+ --labels when ``data="labelled"``),
    --model, --run (required, when ``run`` says what it is for) and --json."""
    p = sub.add_parser(name, **kw)
    if data is not None:
        add_data(p, labels=data == "labelled")
    if model is not None:
        add_model(p, required=model_required, what=model)
    if run is not None:
        p.add_argument("--run", required=True, metavar="RUN_DIR", help=run)
    if json:
        add_json(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    ap = _Parser(prog="clearface", description="Train, calibrate, evaluate and serve face classifiers "
                 "(1 = clean face, 0 = occluded) that minimise HTER = (FAR + FRR) / 2.")
    ap.add_argument("--version", action="version", version=f"clearface {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = _command(sub, "train", data="labelled", help="train, calibrate tau on validation data, save RUN_DIR/model.pt",
                 allow_abbrev=False, description="Every setting below can also come from a YAML "
                 "recipe (--config); later wins: defaults < recipe < options.")
    p.add_argument("--out", required=True, help="run folder (created)")
    p.add_argument("--config", default=None, help="YAML recipe, e.g. configs/default.yaml")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="pretrained (e.g. ImageNet) weights file for models that take them (= --model-kwargs.weights)")
    opt(p, "--no-pretrained", action="store_true",
         help="train a pretrained-capable model from scratch (= --model-kwargs.pretrained false)")
    add_settings(p)
    p.add_argument("--threshold-rule", "--threshold_rule", dest="set__threshold_method", type=rule,
                   default=argparse.SUPPRESS, metavar="RULE", help="the same as --threshold-method")

    p = _command(sub, "evaluate", data="labelled", model=MODEL_ANY,
                 help="FAR, FRR, HTER at the stored tau, EER, AUC on labelled images")
    p.add_argument("--report", default=None, metavar="DIR", help="also write the HTML report (as `clearface report`) to DIR")
    add_scoring(p)

    p = _command(sub, "report", data="labelled", model=MODEL_ANY,
                 help="HTML report: metrics, ROC/DET curves, galleries of mistakes, Grad-CAM",
                 description="Writes DIR/index.html (opens offline), DIR/metrics.json, DIR/scores.csv, "
                 "DIR/figures/*.png and DIR/img/*.png.")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder (created; a previous report there is replaced)")
    p.add_argument("--run", default=None, metavar="RUN_DIR", help="training run folder: adds loss and val HTER curves from summary.csv")
    add_scoring(p)

    p = _command(sub, "predict", data="images", model=MODEL_ANY,
                 help="label images: one 0/1 line per image, in numeric order")
    p.add_argument("--out", required=True, help="label file to write (format of label_train.txt)")
    p.add_argument("--scores", default=None, help="also write a CSV of name, score, label")
    p.add_argument("--embeddings", default=None, help="also write the model's embeddings (.npy), e.g. facenet_seed's 128-d")
    p.add_argument("--faces", default=None, help="with --preprocess detect: also write a CSV with one row per face "
                   "(image, face, x0, y0, x1, y1, confidence, score, label; a photo without a face: one no_face row)")
    add_scoring(p)

    p = _command(sub, "export", model="model file (.pt) or run folder; default: the packaged model",
                 help="export a model file to ONNX (tau, preprocessing, classes in its metadata)")
    p.add_argument("--out", required=True, help="ONNX file to write (.onnx); with --int8 a .json writes the int8 "
                   "recipe instead (settings, activation ranges and metadata, no weights: a few kB), which "
                   "--engine int8 rebuilds from the float model on first use when named MODEL.int8.json beside MODEL.pt")
    p.add_argument("--opset", type=ranged(True, 17, 99, what="17..99"), default=17,
                   help="ONNX opset (17 up to what the installed onnx supports)")
    p.add_argument("--int8", action="store_true", help="write the int8 model (static quantisation, QDQ, "
                   "per-channel weights) calibrated on --calib-data; see docs/MODEL_CARD.md for when it holds quality")
    opt(p, "--calib-data", default=None, metavar="DATA", help="with --int8: zip or folder of images to calibrate "
         "on, e.g. the model's validation images (never its held-out ones)")
    opt(p, "--calib-labels", default=None, metavar="LABELS", help="with --int8: 0/1 labels of --calib-data; "
         "tau is then re-chosen on them for the int8 scores (else the float tau is kept)")
    opt(p, "--calib-part", choices=("val",), default=None, help="with --int8, when --calib-data/--calib-labels are "
        "the model's own training data: use only its validation part, rebuilt from the split stored in the model "
        "file, so the held-out part is never seen")
    # The settings below default to None so that giving one without --int8 is refused (cmd_export).
    opt(p, "--calib-images", type=COUNT, default=None, help="with --int8: how many --calib-data images calibrate (default 1000)")
    opt(p, "--calib-method", choices=("minmax", "percentile", "entropy"), default=None,
        help="with --int8: how activation ranges are set: minmax (default), percentile (clips the rarest values; "
        "holds all activations in memory, ~12 GB per 1,000 images of a 96 px model), entropy")
    opt(p, "--calib-percentile", type=PERCENT, default=None, help="with --calib-method percentile: the share of "
        "each tensor's absolute values its range covers (default 99.999)")
    p.add_argument("--full-range", action="store_true", default=None, help="with --int8: full 8-bit weights (for "
                   "CPUs with AVX-512 VNNI); default 7-bit, which onnxruntime's AVX2 kernels need to avoid overflow")
    opt(p, "--fallback-agreement", type=ranged(False, 0, 1, what="[0, 1]"), default=None,
        help="with --int8 of a model file: the band around tau inside which --engine int8 re-scores in float is "
        "the narrowest that makes this share of the --calib-data labels equal the float labels (default 0.999; "
        "0: no band, pure int8)")

    p = _command(sub, "serve", model=MODEL_ANY, json=False,
                 help="HTTP service: POST /predict, GET /health, and a web page at /")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=PORT, default=8000, help="TCP port, 1..65535 (default 8000)")
    opt(p, "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
         help="uvicorn log level (info logs every request)")
    add_preprocess(p, "step for every upload (default: a 64x64 image is a crop and is scored whole; any "
                   "other image is a photo whose faces are found and cut; ?preprocess= overrides per request)")
    add_engine(p)

    p = _command(sub, "audit", help="rank likely wrong labels from out-of-fold scores (confident learning)",
                 allow_abbrev=False)
    p.add_argument("--scores", default=None, help="k-fold run folder (its val_scores.csv) or a name,label,score "
                   "CSV; without it, a k-fold run is trained first (--config, --folds) to get out-of-fold scores")
    p.add_argument("--config", default=None, help="recipe for the k-fold run (default: the default recipe)")
    p.add_argument("--folds", type=FOLDS, default=5, help="folds of the k-fold run (2..100, default 5)")
    opt(p, "--run-dir", default=None, help="where the k-fold run goes (default: OUT without suffix + _oof)")
    p.add_argument("--out", required=True, help="suspects CSV to write")
    p.add_argument("--data", default=None, help="the images, for the contact sheet")
    p.add_argument("--labels", default=None, help="label file, to check it matches the scores")
    p.add_argument("--sheet", default=None, help="contact-sheet PNG of the top suspects")
    p.add_argument("--top", type=COUNT, default=100, help="suspects on the contact sheet (default 100)")
    add_cache_dir(p)

    p = _command(sub, "ensemble", help="merge runs trained on the same split into one model file (tau re-chosen)")
    p.add_argument("--runs", nargs="+", required=True,
                   help="finished run folders (same --split-seed), or model files / packaged names (then tau is "
                        "chosen by scoring: give --data and --labels)")
    p.add_argument("--only", nargs="+", default=None, metavar="MEMBER",
                   help="keep only these members, named after the run each came from (a merged file's runs, "
                        "a run folder's or model file's own name)")
    opt(p, "--run", default=None, help="with model files: the training run whose split.csv names the validation "
        "part (default: the first run folder in --runs)")
    p.add_argument("--tta", choices=("none", "flip"), default=None,
                   help="test-time augmentation of the merged model (default: the members'; needed if they differ)")
    p.add_argument("--out", required=True, help="model file to write; metrics go beside it as .json")
    p.add_argument("--half", action="store_true", help="store the weights as float16 (half the file; "
                   "inference still runs in float32); tau is then chosen on the float16 model's scores of "
                   "the validation part, so --data and --labels are needed")
    p.add_argument("--data", default=None, help="with --half, model files or --only: the images the members trained on")
    p.add_argument("--labels", default=None, help="with --half, model files or --only: their label file")
    add_cache_dir(p)
    add_rule(p, "the first run's")
    add_batch(p)

    p = _command(sub, "calibrate", data="labelled", model="model file (.pt) or run folder", model_required=True,
                 run="the training run whose split.csv names the validation part", description=CALIBRATE_ABOUT,
                 help="re-choose tau on a run's validation part after changing TTA or the rule")
    p.add_argument("--out", required=True, help="model file to write; metrics go beside it as .json")
    p.add_argument("--tta", choices=("none", "flip"), default=None, help="test-time augmentation (default: as stored)")
    add_rule(p)
    p.add_argument("--half", action="store_true", help="store the weights as float16")
    add_batch(p)

    p = _command(sub, "pseudolabel", data="labelled", model="teacher model file (.pt) or run folder",
                 model_required=True, run="the teacher's training run (its split.csv names the validation part)",
                 help="confident teacher calls on unlabelled images, for train --pseudo-labels", description=PSEUDOLABEL_ABOUT)
    p.add_argument("--unlabelled", required=True, help="zip or folder of images without labels, e.g. val_img.zip")
    p.add_argument("--precision0", type=SHARE, default=0.95, help="required share (0, 1] of correct class-0 calls on validation")
    p.add_argument("--precision1", type=SHARE, default=0.98, help="required share (0, 1] of correct class-1 calls on validation")
    p.add_argument("--out", required=True, help="CSV to write")
    add_batch(p)
    add_engine(p)

    p = _command(sub, "gan", data="labelled", run="training run folder: only the images its split.csv marks 'train' "
                 "are used (never validation or held-out ones)", help="train a class-conditional GAN for "
                 "imbalance gan_oversample (writes OUT/generator.pt)", description=GAN_ABOUT)
    p.add_argument("--out", required=True, metavar="DIR", help="GAN folder (created): generator.pt, checkpoints/, tb/")
    p.add_argument("--resume", action="store_true", help="continue the GAN in --out from its last checkpoint")
    p.add_argument("--epochs", type=COUNT, default=25, help="epochs; one = every minority training image plus as "
                   "many majority ones (default 25)")
    opt(p, "--max-minutes", type=ranged(False, 0, lo_open=True, what="> 0"), default=None,
        help="also stop after this many minutes (generator.pt is rewritten after every epoch)")
    opt(p, "--batch-size", type=COUNT, default=64, help="batch size (default 64)")
    p.add_argument("--ngf", type=COUNT, default=32, help="width of G and D (default 32: ~1.2 M parameters in G)")
    opt(p, "--z-dim", type=COUNT, default=64, help="noise dimension (default 64)")
    p.add_argument("--lr", type=ranged(False, 0, 1, lo_open=True, what="(0, 1]"), default=1e-4,
                   help="G's learning rate; D's is 4x (default 1e-4)")
    p.add_argument("--seed", type=ranged(True, 0, what=">= 0"), default=0, help="seed (default 0)")
    opt(p, "--num-threads", type=COUNT, default=1, help="torch CPU threads (default 1)")

    _command(sub, "models", help="list the model registry")
    return ap


def use_huge_pages() -> None:
    """Have torch's CPU allocator ask for transparent huge pages (call before torch is imported).

    torch maps each large tensor afresh and the kernel faults it in 4 KB at a time; with huge pages
    (Linux, THP "madvise" or "always") that is one fault per 2 MB. On the 2-core VM, torch scoring ran
    ~2x and training ~1.3x faster (``benchmarks/bench_alloc.py``). ``THP_MEM_ALLOC_ENABLE=0`` in the
    environment turns it off; onnxruntime keeps its own memory arena and is unaffected."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        if extra and args.command not in ("train", "audit"):
            raise UsageError(f"unrecognized arguments: {' '.join(extra)} (see `clearface {args.command} --help`)")
        use_huge_pages()
        from .commands import COMMANDS
        return COMMANDS[args.command](args, extra) or 0
    except ClearfaceError as exc:
        print(f"clearface: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the environment (disk full, permission): still one line, naming the file
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"clearface: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clearface: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
