"""What every command shares: its inputs and outputs checked before any work, and its output (prose on
stderr; with ``--json`` the result as JSON on stdout)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import ClearfaceError
from ..outputs import check_input, check_output, check_output_dir


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
    from ..modelfile import PACKAGED, packaged_model_path
    if model is None or (str(model) in PACKAGED and not Path(model).exists()):
        packaged = packaged_model_path(str(model or "default"))
        return [packaged] if packaged else []
    from ..rundir import RunDir
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
    from ..preprocess import step_arg
    return step_arg(getattr(args, "preprocess", None), getattr(args, "resize", False))
