"""The option types and option groups that ``clearface``'s commands share (the parser is :mod:`clearface.cli`).

Every number an option takes is range-checked by its type, so a bad value is argparse's one-line
error naming the option; an option spelled with dashes also answers to its old underscore spelling.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from .errors import ClearfaceError
from .settings.fields import PREPROCESS_STEPS as PREPROCESS_CHOICES  # dataclasses only: --help stays light


# ---------------------------------------------------------------------------- value types

def _number(text: str, whole: bool):
    try:
        v = int(text) if whole else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if whole else 'a number'}") from None
    if not whole and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not finite")
    return v


def ranged(whole: bool, lo=None, hi=None, lo_open=False, what=""):
    def parse(text: str):
        v = _number(text, whole)
        if (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{text} is out of range {what}")
        return v
    parse.__name__ = what
    return parse


THRESHOLD = ranged(False, 0, 1, what="[0, 1]")
BATCH = ranged(True, 1, 65536, what="1..65536")
PORT = ranged(True, 1, 65535, what="1..65535")
COUNT = ranged(True, 1, 10 ** 9, what=">= 1")
FOLDS = ranged(True, 2, 100, what="2..100")
SHARE = ranged(False, 0, 1, lo_open=True, what="(0, 1]")
PERCENT = ranged(False, 0, 100, lo_open=True, what="(0, 100]")


def rule(text: str) -> str:
    """A threshold rule name, checked against :mod:`clearface.calibration`'s registry."""
    from .calibration import check_rule
    try:
        return check_rule(text)
    except ClearfaceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def opt(p, name: str, **kw):
    """``--batch-size`` plus its old spelling ``--batch_size``."""
    names = [name] + (["--" + name[2:].replace("-", "_")] if "-" in name[2:] else [])
    return p.add_argument(*names, **kw)


# ---------------------------------------------------------------------------- shared options

def add_preprocess(p, default_help: str):
    p.add_argument("--preprocess", choices=PREPROCESS_CHOICES, default=None, help=default_help)


def add_data(p, labels: bool):
    p.add_argument("--data", required=True, help="zip or folder of numerically named images")
    if labels:
        p.add_argument("--labels", required=True, help="text file, one 0/1 per line, line i = image i")
    add_preprocess(p, "how files become 64x64 face images (default: the model file's step): crop (already "
                   "64x64 RGB crops), resize (squash whole), detect (photos: find faces, cut them as the "
                   "training crops are framed; the largest face decides, no face -> 0)")
    p.add_argument("--resize", action="store_true", help="convert any size/mode to 64x64 RGB instead of failing "
                   "(deprecated spelling of --preprocess resize)")
    add_cache_dir(p)


def add_cache_dir(p):
    opt(p, "--cache-dir", default=None, help="where decoded uint8 caches live (default: user cache dir)")


def add_engine(p):
    p.add_argument("--engine", choices=("auto", "torch", "onnx", "int8"), default="auto",
                   help="auto (default): onnxruntime through a cached ONNX export of the model, PyTorch if "
                   "the export fails; for predict and serve also int8 where the model file has its "
                   "MODEL.int8.onnx beside it and the CPU has VNNI; torch: PyTorch; onnx: onnxruntime in "
                   "float, failing if the export fails; int8: the int8 export, with images near tau "
                   "re-scored in float")


def add_json(p):
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def add_model(p, required=False, what="model file (.pt or .onnx) or run folder; default: the packaged model"):
    p.add_argument("--model", required=required, default=None, help=what)


def add_rule(p, default_help="as stored"):
    """``--threshold-rule`` (old spelling ``--method``) wherever a command chooses tau."""
    from_help = "min_hter, eer, far_at:<x> (FAR <= x), frr_at:<x> (FRR <= x), ..."
    p.add_argument("--threshold-rule", "--threshold_rule", "--method", dest="threshold_rule", type=rule, default=None,
                   metavar="RULE", help=f"rule choosing tau on validation scores: {from_help} (default: {default_help})")


def add_batch(p):
    opt(p, "--batch-size", type=BATCH, default=512, help="images per scoring batch (default 512)")


def add_scoring(p, engine: bool = True):
    """What every command that scores with a stored tau takes: --threshold, --batch-size, --engine."""
    p.add_argument("--threshold", type=THRESHOLD, default=None, help="use this tau (0..1) instead of the stored one")
    add_batch(p)
    if engine:
        add_engine(p)


# list-valued settings are one YAML token: show its shape, so nobody types `--augment.scale 0.8 1.25`
_METAVARS = {"range": "[LO,HI]", "sizes": "[N,...]"}


def add_settings(p):
    """One option per training setting, with its default and meaning in ``--help`` (timm-style)."""
    from .settings import Settings
    g = p.add_argument_group("settings (defaults = configs/mobilenet_v2_96.yaml; any YAML value; "
                             "--model-kwargs.KEY VALUE for model arguments)")
    taken = {"cache_dir", "preprocess"}  # already data options
    for prefix, section, defaults in _setting_sections(Settings()):
        for f in dataclasses.fields(section):
            meta = f.metadata
            if f.name in taken or meta["kind"] == "dict" or dataclasses.is_dataclass(getattr(defaults, f.name)):
                continue  # a nested section gets its own --SECTION.KEY options
            flag = f"--{prefix}{f.name}" if prefix else "--" + f.name.replace("_", "-")
            extra = f" [{', '.join(meta['choices'])}]" if meta["choices"] else ""
            opt(g, flag, dest=f"set__{prefix}{f.name}", default=argparse.SUPPRESS,
                metavar=_METAVARS.get(meta["kind"], meta["kind"].upper()),
                help=f"{meta['help']}{extra} (default: {getattr(defaults, f.name)})")


def _setting_sections(defaults):
    """(option prefix, dataclass, its defaults): the top level, then each nested section (``--augment.KEY``)."""
    yield "", type(defaults), defaults
    for f in dataclasses.fields(defaults):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            yield f"{f.name}.", type(value), value
