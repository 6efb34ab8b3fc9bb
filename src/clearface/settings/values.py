"""Checking values: type, range and finiteness of one setting; the model and its arguments."""

from __future__ import annotations

import dataclasses
import math

from ..errors import ClearfaceError


# ---------------------------------------------------------------------------- checking one value

def _check_rule(value, where):
    """A threshold rule that ``clearface.calibration`` knows (min_hter, eer, far_at:<x>, ...)."""
    from ..calibration import check_rule
    if not isinstance(value, str):
        raise ClearfaceError(f"{where}: {value!r} is not a threshold rule (min_hter, eer, far_at:<x>, frr_at:<x>)")
    try:
        return check_rule(value)
    except ClearfaceError as exc:
        raise ClearfaceError(f"{where}: {exc}") from None


def _check_number(value, meta, where, whole: bool):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        if whole and isinstance(value, float) and value.is_integer() and math.isfinite(value):
            value = int(value)
        else:
            kind = "a whole number" if whole else "a number"
            raise ClearfaceError(f"{where}: must be {kind}, got {repr(value)}")
    if not math.isfinite(value):
        raise ClearfaceError(f"{where}: must be finite, got {value!r}")
    lo, hi = meta["lo"], meta["hi"]
    too_low = lo is not None and (value <= lo if meta["lo_open"] else value < lo)
    too_high = hi is not None and (value >= hi if meta["hi_open"] else value > hi)
    if too_low or too_high:
        left = "(" if meta["lo_open"] else "["
        right = ")" if meta["hi_open"] else "]"
        span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise ClearfaceError(f"{where}: {value!r} is out of range {span}")
    return value


# kinds whose only check is the value's type: kind -> (test, what the error says it must be)
_PLAIN_KINDS = {
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "dict": (lambda v: isinstance(v, dict), "a mapping of keyword arguments"),
}


def check_value(f: dataclasses.Field, value, where: str):
    meta, kind = f.metadata, f.metadata["kind"]
    if value is None:
        if meta["nullable"]:
            return None
        raise ClearfaceError(f"{where}: needs a value (null is not allowed)")
    if kind in _PLAIN_KINDS:
        is_kind, need = _PLAIN_KINDS[kind]
        if not is_kind(value):
            raise ClearfaceError(f"{where}: must be {need}, got {value!r}")
        return value
    if kind == "int":
        return _check_number(value, meta, where, whole=True)
    if kind == "float":
        return float(_check_number(value, meta, where, whole=False))
    if kind == "count":  # an image count, or a fraction below 1
        value = _check_number(value, dict(meta, lo=0), where, whole=False)
        if value >= 1 and not float(value).is_integer():
            raise ClearfaceError(f"{where}: {value!r} is neither a whole number of images nor a fraction < 1")
        return int(value) if value >= 1 or value == 0 else float(value)
    if kind == "str":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # e.g. a folder called 2024 given on the command line
        if not isinstance(value, str) or not value:
            raise ClearfaceError(f"{where}: must be text, got {value!r}")
        if meta["choices"] and value not in meta["choices"]:
            raise ClearfaceError(f"{where}: {value!r} is not one of {', '.join(meta['choices'])}")
        return value
    if kind == "rule":
        return _check_rule(value, where)
    if kind == "devices":
        if isinstance(value, str) and value:
            return value
        return _check_number(value, dict(meta, lo=1), where, whole=True)
    if kind == "range":
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
                       for v in value) or value[0] > value[1]):
            raise ClearfaceError(f"{where}: must be [lo, hi] with 0 < lo <= hi, got {value!r}")
        return [float(v) for v in value]
    if kind == "sizes":
        if (not isinstance(value, (list, tuple)) or not value
                or any(isinstance(v, bool) or not isinstance(v, int) or not 16 <= v <= 1024 for v in value)):
            raise ClearfaceError(f"{where}: must be a list of whole sizes in [16, 1024], e.g. [64,64,96], "
                                 f"got {value!r}")
        return [int(v) for v in value]
    raise AssertionError(kind)  # pragma: no cover


def check_model(cfg: dict) -> None:
    """The model exists, takes these arguments, and builds with them (on the meta device: no memory)."""
    import inspect

    from ..models import get_model_entry, list_models  # imports torch: only when a run is really being set up
    if cfg["model"] not in list_models():
        raise ClearfaceError(f"model: {cfg['model']!r} is not a registry model; known: {', '.join(list_models())}")
    params = inspect.signature(get_model_entry(cfg["model"]).builder).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(cfg["model_kwargs"]) - set(params))
        if unknown:
            raise ClearfaceError(f"model_kwargs.{unknown[0]}: model {cfg['model']!r} takes no such argument; "
                                 f"it takes {', '.join(params) or 'none'}")
    if cfg.get("train_sizes") and "input_size" not in params:
        raise ClearfaceError(f"train_sizes: model {cfg['model']!r} has no input_size to change per epoch")
    _check_model_builds(cfg, params)


def _check_model_builds(cfg: dict, params) -> None:
    """Build the model on the meta device (no memory, no weights), so bad arguments fail before any work."""
    import torch

    from ..models import get_model
    kwargs = dict(cfg["model_kwargs"])
    if "pretrained" in params:  # the weights file is checked when training starts; here only the shape
        kwargs["pretrained"] = False
    if "weights" in params:
        kwargs["weights"] = None
    try:
        with torch.device("meta"):
            get_model(cfg["model"], **kwargs)
        return
    except ClearfaceError:
        raise
    except Exception:  # noqa: BLE001 (some layers may not build on meta: confirm on the CPU)
        pass
    try:
        get_model(cfg["model"], **kwargs)
    except ClearfaceError:
        raise
    except Exception as exc:  # noqa: BLE001 (any builder failure is a bad setting)
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ClearfaceError(f"model_kwargs: model {cfg['model']!r} cannot be built with {cfg['model_kwargs']} "
                             f"({type(exc).__name__}: {first})") from None
