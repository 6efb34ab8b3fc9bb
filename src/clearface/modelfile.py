"""Model files: make, load, save and halve the self-describing ``model.pt``.

A model file (``torch.save`` of plain data, loadable with ``weights_only=True``) holds one or
more members (ensembles), the preprocessing, the test-time augmentation, the class meaning and
the threshold tau chosen on validation data. Turning it into scores is
:mod:`clearface.engines`' job; this module only knows the file.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from .errors import ClearfaceError
from .outputs import atomic_path

FORMAT = "clearface-model"
FORMAT_VERSION = 1
CLASSES = {"0": "occluded face (glasses, hat, cap, bandana or facial hair)", "1": "clean face"}
MODEL_FILE_NAME = "model.pt"  # inside a run folder (see clearface.rundir)
PACKAGED = {"default": "clearface_default.pt", "ensemble": "clearface_ensemble.pt"}


def packaged_model_path(name: str = "default") -> Path | None:
    """A model shipped inside the package (``default``: fast single model; ``ensemble``: most
    accurate, about half the speed), if this build has it."""
    p = Path(__file__).parent / "weights" / PACKAGED[name]
    return p if p.exists() else None


def resolve_model_path(model) -> Path:
    """``--model``: a file or run folder; ``default``/``ensemble`` (packaged, unless such a path
    exists); None -> the packaged default."""
    if model:
        p = Path(model).expanduser()
        if str(model) in PACKAGED and not p.exists():
            packaged = packaged_model_path(str(model))
            if packaged is None:
                raise ClearfaceError(f"this build of clearface ships no {model!r} model")
            return packaged
        return p
    p = packaged_model_path()
    if p is None:
        raise ClearfaceError("no --model given and this build of clearface ships no trained model; "
                             f"train one with `clearface train` and pass --model RUN_DIR/{MODEL_FILE_NAME}")
    return p


def model_file_path(model) -> Path:
    """The file behind ``--model``: a path, a run folder (its ``model.pt``), a packaged name, or
    None for the packaged default; it must exist."""
    p = resolve_model_path(model)
    if p.is_dir() and (p / MODEL_FILE_NAME).exists():
        p = p / MODEL_FILE_NAME
    if not p.exists():
        raise ClearfaceError(f"{p}: no such model file")
    if p.is_dir():
        raise ClearfaceError(f"{p}: folder has no {MODEL_FILE_NAME} (give a model file or a run folder)")
    return p


def check_threshold(tau, where) -> float:
    """A stored tau must be a number in [0, 1]: scores are probabilities."""
    value = float(tau) if isinstance(tau, (int, float)) else math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ClearfaceError(f"{where}: stored threshold {tau!r} is not a number in [0, 1]; "
                             "re-choose it with `clearface calibrate`")
    return value


def load_model_file(path) -> dict:
    """The model file behind ``path`` (see :func:`model_file_path`), checked: marker, format
    version, members and a stored tau in [0, 1]; ``blob["path"]`` says where it came from."""
    p = model_file_path(path)
    import torch
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad pickle/zip
        raise ClearfaceError(f"{p}: not a readable clearface model file ({type(exc).__name__}: {(str(exc).splitlines() or ['empty or truncated'])[0][:200]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ClearfaceError(f"{p}: not a clearface model file (no '{FORMAT}' marker)")
    _check_structure(blob, p)
    blob["threshold"] = check_threshold(blob.get("threshold"), p)
    blob["path"] = str(p)
    return blob


def _check_structure(blob: dict, p) -> None:
    """Every field the engines read has the type they expect, so a damaged file is one line, not a traceback."""
    version = blob.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ClearfaceError(f"{p}: damaged model file (format_version {version!r} is not a whole number)")
    if version > FORMAT_VERSION:
        raise ClearfaceError(f"{p}: made by a newer clearface (format {version}); upgrade clearface")
    members = blob.get("members")
    if not isinstance(members, list) or not members:
        raise ClearfaceError(f"{p}: model file has no members (no network weights to score with)")
    from .models import list_models
    for i, m in enumerate(members):
        if not (isinstance(m, dict) and isinstance(m.get("model"), str) and isinstance(m.get("state_dict"), dict)
                and isinstance(m.get("model_kwargs") or {}, dict) and isinstance(m.get("build_kwargs") or {}, dict)):
            raise ClearfaceError(f"{p}: damaged model file (member {i} lacks model/state_dict/model_kwargs)")
        if m["model"] not in list_models():
            raise ClearfaceError(f"{p}: member {i} is model {m['model']!r}, which this clearface does not know")
    pre = blob.get("preprocess")
    if not (isinstance(pre, dict) and all(isinstance(pre.get(k), (list, tuple)) and len(pre[k]) == 3
                                          and all(isinstance(v, (int, float)) and math.isfinite(v) for v in pre[k])
                                          for k in ("mean", "std"))):
        raise ClearfaceError(f"{p}: damaged model file (preprocess needs 3 finite mean and std values)")
    if blob.get("tta", "none") not in ("none", "flip"):
        raise ClearfaceError(f"{p}: damaged model file (tta {blob.get('tta')!r} is not none or flip)")


def make_model_file(members: list[dict], mean, std, tta: str, threshold: float, threshold_method: str,
                    threshold_source: str, metrics: dict, config: dict) -> dict:
    from . import __version__
    # No creation time in the file: the same run (uninterrupted, or killed and resumed) must give a
    # byte-identical model file; provenance is the clearface version, the config and the metrics.
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "clearface_version": __version__,
        "members": members,  # [{"model": name, "model_kwargs": {...}, "state_dict": {...}}]
        "preprocess": {"size": 64, "mean": [float(v) for v in mean], "std": [float(v) for v in std],
                       "input": "RGB, CHW, uint8 scaled to [0, 1], then (x - mean) / std",
                       **_step_record(config)},
        "tta": tta,
        "classes": CLASSES,
        "positive_class": 1,
        "score": "probability of class 1: sigmoid of the logit, averaged over TTA views and members",
        "threshold": float(threshold),
        "threshold_method": threshold_method,
        "threshold_source": threshold_source,
        "metrics": metrics,
        "config": config,
    }


def _step_record(config) -> dict:
    """``step`` (the training setting ``preprocess``; old configs: ``resize``) and the face framing."""
    from .preprocess import step_record
    cfg = config if isinstance(config, dict) else {}
    return step_record(cfg.get("preprocess") or ("resize" if cfg.get("resize") else "crop"))


def halve_weights(blob: dict) -> dict:
    """Store floating-point weights as float16: half the file size for packaging.

    Loading casts them back to float32 (``load_state_dict`` copies into the float32 parameters),
    so inference still computes in float32; only the stored weights are rounded (~1e-3 relative).
    """
    import torch
    members = []
    for spec in blob["members"]:
        sd = {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in spec["state_dict"].items()}
        members.append(dict(spec, state_dict=sd))
    return dict(blob, members=members, weights_dtype="float16")


def _canonical(value):
    """``value`` rebuilt with fresh containers and every string interned.

    Pickle writes a back-reference when it meets the same object twice, so equal values that share
    objects differently (a config read back from YAML on resume vs one built in memory) would give
    different bytes. Rebuilt this way, a model file's bytes depend only on its values.
    """
    if isinstance(value, dict):
        return {_canonical(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_canonical(v) for v in value)
    if type(value) is str:
        return sys.intern(value)
    return value


def save_model_file(blob: dict, path) -> None:
    import torch
    with atomic_path(path) as tmp:
        torch.save(_canonical({k: v for k, v in blob.items() if k != "path"}), tmp)
