"""A table of bad command lines across every command; each must keep the promise (see ``fuzz_world``).

Run in-process (``clearface.cli.main``) so the whole table takes seconds; each case gets a fresh world.
"""

from __future__ import annotations

import os

import pytest

import numpy as np

from clearface.cli import main
from conftest import jpeg_bytes, write_zip
from fuzz_world import assert_promise, snapshot, world  # noqa: F401  (world is a fixture)

NUMBERS_NOT_PROBABILITIES = ["2", "-1", "nan", "inf", "-inf", "abc", "1.0000001", "1e309", ""]
BAD_BATCH = ["0", "-5", "abc", "1.5", "100000", "nan"]


def base(w, command: str) -> list:
    """A good command line for ``command`` whose outputs all fall inside the world."""
    r = w.root
    return {
        "predict": ["predict", "--model", w.model, "--data", w.data, "--out", r / "pred.txt"],
        "evaluate": ["evaluate", "--model", w.model, "--data", w.data, "--labels", w.labels],
        "report": ["report", "--model", w.model, "--data", w.data, "--labels", w.labels, "--out", r / "rep"],
        "export": ["export", "--model", w.model, "--out", r / "m.onnx"],
        "audit": ["audit", "--scores", w.scores, "--out", r / "sus.csv"],
        "ensemble": ["ensemble", "--runs", w.run, w.run2, "--out", r / "ens.pt"],
        "calibrate": ["calibrate", "--model", w.model, "--run", w.run, "--data", w.data, "--labels", w.labels,
                      "--out", r / "cal.pt"],
        "pseudolabel": ["pseudolabel", "--model", w.model, "--run", w.run, "--data", w.data, "--labels", w.labels,
                        "--unlabelled", w.data, "--out", r / "pl.csv"],
        "train": ["train", "--data", w.data, "--labels", w.labels, "--out", r / "newrun", "--holdout", "0",
                  "--model", "cfnet_tiny", "--epochs", "1"],
        "serve": ["serve", "--model", w.model],
        "models": ["models"],
    }[command]


def setopt(argv: list, opt: str, value) -> list:
    """``argv`` with ``opt`` set to ``value`` (replaced if present, appended otherwise; None removes it)."""
    argv = list(argv)
    if opt in argv:
        i = argv.index(opt)
        n = 1
        while i + n < len(argv) and not str(argv[i + n]).startswith("--"):
            n += 1
        del argv[i:i + n]
        if value is None:
            return argv
        argv[i:i] = [opt, *(value if isinstance(value, list) else [value])]
        return argv
    return argv if value is None else argv + [opt, *(value if isinstance(value, list) else [value])]


CASES: list = []  # (id, command, {opt: value-maker}, extra tokens, what the error line must name)


def case(cid, command, opts=None, extra=(), names=()):
    CASES.append(pytest.param(command, opts or {}, list(extra), names, id=cid))


# ---------------------------------------------------------------------------- output guard: files
FILE_OUTPUTS = [("predict", "--out"), ("predict", "--scores"), ("predict", "--embeddings"), ("export", "--out"),
                ("audit", "--out"), ("audit", "--sheet"), ("ensemble", "--out"), ("calibrate", "--out"),
                ("pseudolabel", "--out")]
BAD_FILE_OUTPUT = {
    "dev_full": (lambda w: "/dev/full", ["/dev/full", "device"]),
    "dev_null": (lambda w: "/dev/null", ["/dev/null", "device"]),
    "folder": (lambda w: w.folder, ["adir", "folder"]),
    "missing_parent": (lambda w: w.missing / "x.out", ["no_such_folder", "does not exist"]),
    "read_only_parent": (lambda w: w.ro / "x.png", ["read-only"]),
    "fifo": (lambda w: w.fifo, ["fifo", "FIFO"]),
    "is_labels": (lambda w: w.labels, ["labels.txt", "input"]),
    "symlink_to_labels": (lambda w: w.link_labels, ["link_to_labels.txt", "input"]),
    "hardlink_to_labels": (lambda w: w.hard_labels, ["hard_labels.txt", "input"]),
    "is_data": (lambda w: w.data, ["data.zip", "input"]),
    "under_a_file": (lambda w: w.file / "x.out", ["afile.txt"]),
}
NEEDS_LABELS = {"is_labels", "symlink_to_labels", "hardlink_to_labels"}
for cmd, opt in FILE_OUTPUTS:
    for bad, (make, names) in BAD_FILE_OUTPUT.items():
        extra_opts = {}
        if bad in NEEDS_LABELS and cmd in ("predict", "export", "ensemble"):
            continue  # these commands do not read a label file
        if bad in NEEDS_LABELS and cmd == "audit":
            extra_opts["--labels"] = lambda w: w.labels
        if bad == "is_data" and cmd in ("export", "ensemble"):
            continue
        if bad == "is_data" and cmd == "audit":
            extra_opts["--data"] = lambda w: w.data
        if opt == "--sheet":
            extra_opts["--data"] = lambda w: w.data
        case(f"{cmd}{opt}-{bad}", cmd, {opt: make, **extra_opts}, names=[n if n != "fifo" else "fifo" for n in names][:1])
# the model and run folders are inputs too
case("predict--out-is-model", "predict", {"--out": lambda w: w.model}, names=["model.pt", "input"])
case("export--out-is-model", "export", {"--out": lambda w: w.model}, names=["model.pt", "input"])
case("calibrate--out-is-model", "calibrate", {"--out": lambda w: w.model}, names=["model.pt", "input"])
case("calibrate--out-is-run-model", "calibrate", {"--out": lambda w: w.run / "model.pt", "--model": lambda w: w.run},
     names=["model.pt", "input"])
case("ensemble--out-is-member", "ensemble", {"--out": lambda w: w.run / "model.pt"}, names=["model.pt", "input"])
case("audit--out-is-scores", "audit", {"--out": lambda w: w.scores}, names=["scores.csv", "input"])
case("pseudolabel--out-is-unlabelled", "pseudolabel", {"--out": lambda w: w.data}, names=["data.zip", "input"])
case("predict--scores-same-as-out", "predict", {"--scores": lambda w: w.root / "pred.txt"}, names=["--scores"])
case("audit--sheet-same-as-out", "audit", {"--sheet": lambda w: w.root / "sus.csv", "--data": lambda w: w.data},
     names=["--sheet"])
case("ensemble--out-json", "ensemble", {"--out": lambda w: w.root / "ens.json"}, names=["ens.json"])
case("calibrate--out-json", "calibrate", {"--out": lambda w: w.root / "cal.json"}, names=["cal.json"])
case("export--out-not-onnx", "export", {"--out": lambda w: w.root / "m.txt"}, names=["m.txt", ".onnx"])
case("audit--sheet-not-image", "audit", {"--sheet": lambda w: w.root / "s.txt", "--data": lambda w: w.data},
     names=["s.txt"])
case("audit--sheet-without-data", "audit", {"--sheet": lambda w: w.root / "s.png"}, names=["--sheet", "--data"])

# ---------------------------------------------------------------------------- output guard: folders
FOLDER_OUTPUTS = [("train", "--out"), ("report", "--out"), ("evaluate", "--report")]
BAD_FOLDER_OUTPUT = {
    "a_file": (lambda w: w.file, ["afile.txt", "not a folder"]),
    "dev_null": (lambda w: "/dev/null", ["/dev/null"]),
    "fifo": (lambda w: w.fifo, ["fifo"]),
    "under_read_only": (lambda w: w.ro / "sub", ["read-only"]),
    "under_a_file": (lambda w: w.file / "sub", ["afile.txt"]),
    "is_data_folder": (lambda w: w.images, ["images", "input"]),
}
for cmd, opt in FOLDER_OUTPUTS:
    for bad, (make, names) in BAD_FOLDER_OUTPUT.items():
        opts = {opt: make}
        if bad == "is_data_folder":
            opts["--data"] = lambda w: w.images
            opts["--labels"] = lambda w: w.labels
        case(f"{cmd}{opt}-{bad}", cmd, opts, names=names[:1])
case("audit--run-dir-a-file", "audit", {"--scores": None, "--data": lambda w: w.data, "--labels": lambda w: w.labels,
                                        "--run-dir": lambda w: w.file}, names=["afile.txt"])

# ---------------------------------------------------------------------------- numbers of every command
for cmd in ("predict", "evaluate", "report"):
    for v in NUMBERS_NOT_PROBABILITIES:
        case(f"{cmd}-threshold-{v or 'empty'}", cmd, {"--threshold": v}, names=["--threshold"])
for cmd in ("predict", "evaluate", "report", "calibrate", "pseudolabel"):
    for v in BAD_BATCH:
        case(f"{cmd}-batch-size-{v}", cmd, {"--batch-size": v}, names=["--batch-size"])
for v in ["0", "99999", "-1", "abc", "65536", "80.5"]:
    case(f"serve-port-{v}", "serve", {"--port": v}, names=["--port"])
for v in ["0", "-1", "x", "1.5"]:
    case(f"audit-top-{v}", "audit", {"--top": v}, names=["--top"])
for v in ["1", "0", "abc", "-3"]:
    case(f"audit-folds-{v}", "audit", {"--folds": v}, names=["--folds"])
for opt in ("--precision0", "--precision1"):
    for v in ["0", "1.5", "nan", "-0.1", "x"]:
        case(f"pseudolabel{opt}-{v}", "pseudolabel", {opt: v}, names=[opt])
for v in ["16", "abc", "0", "100"]:
    case(f"export-opset-{v}", "export", {"--opset": v}, names=["--opset"])
for cmd, opt, v in [("serve", "--engine", "gpu"), ("predict", "--engine", "tensorrt"), ("calibrate", "--tta", "rot"),
                    ("calibrate", "--method", "median"), ("serve", "--log-level", "loud")]:
    case(f"{cmd}{opt}-{v}", cmd, {opt: v}, names=[opt])
for cmd in ("predict", "evaluate", "export", "ensemble", "models"):
    case(f"{cmd}-unknown-option", cmd, extra=["--frobnicate", "1"], names=["--frobnicate"])

# ---------------------------------------------------------------------------- training settings
TRAIN_BAD = [
    ("--lr", ".nan", "--lr"), ("--lr", "0", "--lr"), ("--lr", "-1", "--lr"), ("--lr", "inf", "--lr"),
    ("--lr", "abc", "--lr"), ("--epochs", "true", "--epochs"), ("--epochs", "0", "--epochs"),
    ("--epochs", "-1", "--epochs"), ("--epochs", "1.5", "--epochs"), ("--epochs", "abc", "--epochs"),
    ("--limit_images", "abc", "--limit-images"), ("--limit_images", "-1", "--limit-images"),
    ("--limit-images", "0", "--limit-images"), ("--batch-size", "0", "--batch-size"),
    ("--batch-size", "-5", "--batch-size"), ("--batch_size", "abc", "--batch-size"),
    ("--val-fraction", "0", "--val-fraction"), ("--val-fraction", "1", "--val-fraction"),
    ("--val_fraction", "2", "--val-fraction"), ("--holdout", "-1", "--holdout"), ("--holdout", "2.5", "--holdout"),
    ("--holdout", "abc", "--holdout"), ("--tta", "rot90", "--tta"), ("--schedule", "linear", "--schedule"),
    ("--imbalance", "magic", "--imbalance"), ("--threshold-method", "median", "--threshold-method"),
    ("--threshold-method", "far_at:2", "--threshold-method"), ("--augment.flip", "3", "--augment.flip"),
    ("--augment.scale", "[2, 1]", "--augment.scale"), ("--augment.erase", "1.5", "--augment.erase"),
    ("--augment.rotate", "nan", "--augment.rotate"), ("--augment.nonesuch", "1", "augment.nonesuch"),
    ("--epochz", "3", "epochz"), ("--model", "nonesuch", "nonesuch"), ("--seed", "-1", "--seed"),
    ("--split-seed", "abc", "--split-seed"), ("--weight-decay", "-0.1", "--weight-decay"),
    ("--label-smoothing", "1", "--label-smoothing"), ("--folds", "0", "--folds"), ("--max-minutes", "0", "--max-minutes"),
    ("--stop-after", "0", "--stop-after"), ("--early-stopping-patience", "-2", "--early-stopping-patience"),
    ("--num-threads", "0", "--num-threads"), ("--eval-batch-size", "0", "--eval-batch-size"),
    ("--track-holdout", "maybe", "--track-holdout"), ("--preprocess", "squash", "--preprocess"),
    ("--model-kwargs", "3", "--model-kwargs"), ("--resize", "[]", None), ("--devices", "0", "--devices"),
    ("--focal-gamma", "-1", "--focal-gamma"), ("--log-every-n-steps", "0", "--log-every-n-steps"),
]
for opt, v, name in TRAIN_BAD:
    if opt == "--resize":
        case("train-resize-and-preprocess-detect", "train", {"--preprocess": "detect"}, extra=["--resize"],
             names=["--resize"])
        continue
    case(f"train{opt}-{v}", "train", {opt: v}, names=[name])
case("train-setting-without-value", "train", extra=["--epochs"], names=["--epochs"])
case("train-stray-word", "train", extra=["banana"], names=["banana"])
case("train-weights-and-no-pretrained", "train", {"--model": "mobilenet_v2", "--weights": lambda w: w.file},
     extra=["--no-pretrained"], names=["--weights"])
case("train-config-folder", "train", {"--config": lambda w: w.folder}, names=["adir", "folder"])
case("train-config-fifo", "train", {"--config": lambda w: w.fifo}, names=["fifo"])
case("train-config-missing", "train", {"--config": lambda w: w.root / "nope.yaml"}, names=["nope.yaml"])
case("train-config-dev-null-device", "train", {"--config": "/dev/zero"}, names=["/dev/zero"])
for cid, text, name in [("bad-yaml", "epochs: [1,\n", "not valid YAML"), ("list", "- 1\n- 2\n", "mapping"),
                        ("unknown-key", "epochz: 3\n", "epochz"), ("ill-typed", "epochs: many\n", "epochs"),
                        ("nan-lr", "lr: .nan\n", "lr"), ("bad-augment", "augment: 3\n", "augment"),
                        ("binary", None, "recipe.yaml")]:
    def make(w, text=text):
        p = w.root / "recipe.yaml"
        if text is None:
            p.write_bytes(b"\xff\xfe\x00\x01binary")
        else:
            p.write_text(text)
        return p
    case(f"train-config-{cid}", "train", {"--config": make}, names=[name])
case("train-into-existing-folder-bad-labels", "train", {"--out": lambda w: w.folder,
                                                        "--labels": lambda w: (w.labels.write_text("0\n7\n"), w.labels)[1]},
     names=["labels.txt:2"])
case("train-into-existing-folder-bad-model", "train", {"--out": lambda w: w.folder, "--model": "nonesuch"},
     names=["nonesuch"])
case("train-into-existing-folder-corrupt-data", "train",
     {"--out": lambda w: w.folder, "--data": lambda w: (w.data.write_bytes(w.data.read_bytes()[:300]), w.data)[1]},
     names=["data.zip"])
case("audit-sheet-data-not-a-zip", "audit", {"--sheet": lambda w: w.root / "s.png", "--data": lambda w: w.file},
     names=["afile.txt"])
case("train-resume-without-run", "train", {"--out": lambda w: w.folder}, extra=["--resume"], names=["config.yaml"])

# ---------------------------------------------------------------------------- input files
for cmd in ("predict", "evaluate", "train", "calibrate"):
    case(f"{cmd}-data-fifo", cmd, {"--data": lambda w: w.fifo}, names=["fifo", "FIFO"])
    case(f"{cmd}-data-missing", cmd, {"--data": lambda w: w.root / "gone.zip"}, names=["gone.zip"])
    case(f"{cmd}-data-not-zip", cmd, {"--data": lambda w: w.file}, names=["afile.txt"])
    case(f"{cmd}-data-device", cmd, {"--data": "/dev/zero"}, names=["/dev/zero"])
for cmd in ("evaluate", "train", "calibrate", "pseudolabel", "report"):
    case(f"{cmd}-labels-fifo", cmd, {"--labels": lambda w: w.fifo}, names=["fifo"])
    case(f"{cmd}-labels-folder", cmd, {"--labels": lambda w: w.folder}, names=["adir"])
for cid, text, name in [("short", "0\n1\n1\n", "3 labels"), ("long", "0\n1\n1\n0\n1\n", "5 labels"),
                        ("two", "0\n2\n1\n0\n", ":2"), ("word", "0\nyes\n1\n0\n", ":2"), ("empty", "", "no labels"),
                        ("blank-middle", "0\n\n1\n0\n", ":2"), ("binary", None, "labels.txt")]:
    def make_labels(w, text=text):
        if text is None:
            w.labels.write_bytes(b"\x80\x81\x82\xff")
        else:
            w.labels.write_text(text)
        return w.labels
    for cmd in ("evaluate", "train"):
        case(f"{cmd}-labels-{cid}", cmd, {"--labels": make_labels}, names=[name])
case("audit-labels-fifo", "audit", {"--labels": lambda w: w.fifo}, names=["fifo"])
case("audit-scores-fifo", "audit", {"--scores": lambda w: w.fifo}, names=["fifo"])
case("pseudolabel-unlabelled-fifo", "pseudolabel", {"--unlabelled": lambda w: w.fifo}, names=["fifo"])
case("predict-model-fifo", "predict", {"--model": lambda w: w.fifo}, names=["fifo"])
case("predict-model-missing", "predict", {"--model": lambda w: w.root / "none.pt"}, names=["none.pt"])
case("predict-model-not-a-model", "predict", {"--model": lambda w: w.labels}, names=["labels.txt"])
case("predict-model-empty-folder", "predict", {"--model": lambda w: w.folder}, names=["adir"])
case("export-model-not-a-model", "export", {"--model": lambda w: w.scores}, names=["scores.csv"])
case("ensemble-one-run", "ensemble", {"--runs": lambda w: [w.run]}, names=["two"])
case("ensemble-run-missing", "ensemble", {"--runs": lambda w: [w.run, w.root / "gone"]}, names=["gone"])
case("calibrate-run-without-split", "calibrate", names=["split.csv"])
case("pseudolabel-run-without-split", "pseudolabel", names=["split.csv"])

for cmd in ("predict", "evaluate", "train", "report", "calibrate", "pseudolabel"):
    case(f"{cmd}-cache-dir-a-file", cmd, {"--cache-dir": lambda w: w.file}, names=["--cache-dir", "afile.txt"])
    case(f"{cmd}-cache-dir-dev-null", cmd, {"--cache-dir": "/dev/null"}, names=["--cache-dir"])
    case(f"{cmd}-cache-dir-read-only", cmd, {"--cache-dir": lambda w: w.ro / "c"}, names=["--cache-dir", "read-only"])
for cmd in ("predict", "evaluate", "train"):
    case(f"{cmd}-data-empty-path", cmd, {"--data": ""}, names=["--data", "empty"])
case("predict-out-empty-path", "predict", {"--out": ""}, names=["--out", "empty"])
case("predict-model-empty-file", "predict", {"--model": lambda w: (w.file.write_bytes(b""), w.file)[1]},
     names=["afile.txt"])
case("predict-model-garbage-onnx", "predict", {"--model": lambda w: ((w.root / "g.onnx").write_bytes(b"\x08\x01junk"),
                                                                    w.root / "g.onnx")[1]}, names=["g.onnx"])
case("predict-model-truncated", "predict", {"--model": lambda w: (w.file.write_bytes(w.model.read_bytes()[:5000]),
                                                                  w.file)[1]}, names=["afile.txt"])
case("predict-data-empty-zip", "predict", {"--data": lambda w: write_zip(w.root / "empty.zip", [])}, names=["empty.zip"])
case("predict-data-empty-folder", "predict", {"--data": lambda w: w.ro}, names=["ro"])
case("predict-data-zip-of-text", "predict",
     {"--data": lambda w: write_zip(w.root / "t.zip", [b"hello"], names=["img/000001.txt"])}, names=["t.zip"])
case("predict-data-wrong-size", "predict", {"--data": lambda w: write_zip(
    w.root / "big.zip", [jpeg_bytes(np.zeros((90, 70, 3), np.uint8))])}, names=["000001.jpg"])
case("predict-data-gapped-names", "predict", {"--data": lambda w: write_zip(
    w.root / "gap.zip", [jpeg_bytes(np.zeros((64, 64, 3), np.uint8))] * 2, names=["img/000001.jpg", "img/000003.jpg"])},
     names=["gap.zip"])
case("evaluate-labels-bom", "evaluate", {"--labels": lambda w: (w.labels.write_text("\ufeff0\n1\n1\n0\n"), w.labels)[1]},
     names=["labels.txt:1"])
case("evaluate-labels-is-data", "evaluate", {"--labels": lambda w: w.data}, names=["data.zip"])
case("calibrate-run-is-a-file", "calibrate", {"--run": lambda w: w.file}, names=["afile.txt"])
case("report-run-is-a-fifo", "report", {"--run": lambda w: w.fifo}, names=["fifo"])
for cmd, opt in (("predict", "--out"), ("predict", "--scores"), ("train", "--out"), ("report", "--out"),
                 ("evaluate", "--report"), ("calibrate", "--out"), ("pseudolabel", "--out"), ("train", "--cache-dir")):
    opts = {"--data": lambda w: w.images, opt: lambda w: w.images / "out.x"}
    if cmd != "predict":
        opts["--labels"] = lambda w: (w.labels.write_text("0\n1\n"), w.labels)[1]
    case(f"{cmd}{opt}-inside-the-data-folder", cmd, opts, names=["inside", "images"])
def _packaged(w):
    from clearface.modelfile import packaged_model_path
    return packaged_model_path() or w.model  # without a shipped model: the --model file itself


case("predict--out-is-the-packaged-model", "predict", {"--model": None, "--out": _packaged}, names=["input"])
case("serve-model-fifo", "serve", {"--model": lambda w: w.fifo}, names=["fifo"])

# ---------------------------------------------------------------------------- audit scores
SCORES_BAD = [
    ("text-score", "name,label,score\nimg/000001.jpg,0,high\n", ":2"),
    ("short-row", "name,label,score\nimg/000001.jpg,0\n", ":2"),
    ("label-2", "name,label,score\nimg/000001.jpg,2,0.5\nimg/000002.jpg,1,0.5\n", ":2"),
    ("single-class", "name,label,score\nimg/000001.jpg,1,0.5\nimg/000002.jpg,1,0.7\n", "both classes"),
    ("nan-score", "name,label,score\nimg/000001.jpg,0,nan\nimg/000002.jpg,1,0.5\n", ":2"),
    ("score-above-1", "name,label,score\nimg/000001.jpg,0,1.5\nimg/000002.jpg,1,0.5\n", ":2"),
    ("no-columns", "a,b\n1,2\n", "name,label,score"),
    ("empty", "", "name,label,score"),
    ("header-only", "name,label,score\n", "no score rows"),
    ("binary", None, "scores.csv"),
    ("nul-bytes", "name,label,score\nimg/000001.jpg,0,0.1\x00\n", "scores.csv"),
]
for cid, text, name in SCORES_BAD:
    def make_scores(w, text=text):
        if text is None:
            w.scores.write_bytes(bytes(range(256)) * 4)
        else:
            w.scores.write_text(text)
        return w.scores
    case(f"audit-scores-{cid}", "audit", {"--scores": make_scores}, names=[name])
case("audit-scores-missing", "audit", {"--scores": lambda w: w.root / "gone.csv"}, names=["gone.csv"])
case("audit-scores-run-without-csv", "audit", {"--scores": lambda w: w.run}, names=["val_scores.csv"])


def _labels_201(w):
    w.labels.write_text("0\n1\n1\n0\n1\n")
    return w.labels


case("audit-labels-count-differs", "audit", {"--labels": _labels_201}, names=["5 labels", "4 scores"])
case("audit-labels-count-differs-with-data", "audit", {"--labels": _labels_201, "--data": lambda w: w.data},
     names=["5 labels"])
case("audit-labels-disagree", "audit", {"--labels": lambda w: (w.labels.write_text("1\n1\n1\n0\n"), w.labels)[1]},
     names=["labels.txt"])
case("audit-no-scores-no-data", "audit", {"--scores": None}, names=["--scores"])
case("audit-settings-with-scores", "audit", extra=["--epochs", "2"], names=["--epochs"])


def _value(w, maker):
    v = maker(w) if callable(maker) else maker
    return [str(x) for x in v] if isinstance(v, list) else (None if v is None else str(v))


@pytest.mark.parametrize("command,opts,extra,names", CASES)
def test_bad_input_keeps_the_promise(world, capsys, command, opts, extra, names):  # noqa: F811
    argv = base(world, command)
    for opt, maker in opts.items():
        argv = setopt(argv, opt, _value(world, maker))
    argv = [str(a) for a in argv] + list(extra)
    before = snapshot(world.root)
    code = main(argv)
    out, err = capsys.readouterr()
    if os.environ.get("CLEARFACE_FUZZ_LOG"):  # e.g. to review every message
        with open(os.environ["CLEARFACE_FUZZ_LOG"], "a") as f:
            f.write(f"{code} {' '.join(argv[:1])} :: {err.strip()}\n")
    assert_promise(code, err, before, snapshot(world.root), tuple(names))


def test_the_table_is_large_enough():
    assert len(CASES) >= 150, len(CASES)
