"""Layering: built-in defaults < YAML recipe < command-line overrides, into the plain dict of config.yaml."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import yaml

from ..errors import ClearfaceError
from .fields import DEFAULTS, Settings
from .values import check_model, check_value


# ---------------------------------------------------------------------------- layering

_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
# nested sections, laid over key by key: name -> their dataclass
_SECTIONS = {name: type(value) for name, value in vars(Settings()).items() if dataclasses.is_dataclass(value)}


def _apply(cfg: dict, layer: dict, where: str, replace_sections: bool) -> dict:
    """Lay ``layer`` over ``cfg``. ``where`` names the layer in errors: a recipe file, or "" for the command line."""
    def at(key: str) -> str:  # "configs/x.yaml: epochs" or "--epochs"
        return f"{where}: {key}" if where else "--" + key.replace("_", "-")
    out = copy.deepcopy(cfg)
    layer = dict(layer)
    if "resize" in layer:  # deprecated spelling of preprocess: resize
        resize = layer.pop("resize")
        if not isinstance(resize, bool):
            raise ClearfaceError(f"{at('resize')}: must be true or false, got {resize!r}")
        if resize and "preprocess" not in layer:
            layer["preprocess"] = "resize"
    if "model" in layer and layer["model"] != out.get("model"):
        out["model_kwargs"] = {}  # model arguments belong to the model they were written for
    for key, value in layer.items():
        if key not in _FIELDS:
            raise ClearfaceError(f"{where or 'command line'}: unknown setting {key!r}; known: {', '.join(sorted(_FIELDS))}")
        f = _FIELDS[key]
        if f.metadata["kind"] in ("augment", "section"):
            out[key] = _apply_section(key, out.get(key), value, where, at, replace_sections)
        elif key == "model_kwargs" and not replace_sections and isinstance(value, dict):
            out["model_kwargs"] = {**(out.get("model_kwargs") or {}), **check_value(f, value, at(key))}
        else:
            out[key] = check_value(f, value, at(key))
    out["resize"] = out["preprocess"] == "resize"
    return out


def _apply_section(name: str, current: dict | None, value, where: str, at, replace_sections: bool) -> dict:
    """A nested section (``augment``, ``gan``, ``distill``) laid over ``current``; a recipe's section is complete
    (unset keys take the dataclass's neutral values)."""
    cls = _SECTIONS[name]
    fields_ = {f.name: f for f in dataclasses.fields(cls)}
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ClearfaceError(f"{at(name)}: must be a mapping, got {value!r}")
    out = dict(dataclasses.asdict(cls()) if replace_sections or current is None else current)
    for k, v in value.items():
        if k not in fields_:
            raise ClearfaceError(f"{where or 'command line'}: unknown setting '{name}.{k}'; known: "
                                 f"{', '.join(sorted(fields_))}")
        out[k] = check_value(fields_[k], v, at(f"{name}.{k}"))
    return out


def load_recipe(path) -> dict:
    """A YAML recipe as a mapping; a missing file, a folder, a device or bad YAML is one line."""
    from ..outputs import check_input
    check_input(path, "recipe", must_exist=True)  # a folder, FIFO or device is one line, not a hang
    p = Path(path)
    size = p.stat().st_size
    if size > 1 << 20:
        raise ClearfaceError(f"{p}: {size} bytes is too large for a recipe")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ClearfaceError(f"{p}: not a text file (not UTF-8)") from None
    except yaml.YAMLError as exc:
        raise ClearfaceError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise ClearfaceError(f"{p}: cannot read the recipe ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise ClearfaceError(f"{p}: a recipe must be a mapping of settings, got {type(data).__name__}")
    return data


def parse_value(raw: str):
    """A command-line value, read as YAML (``3`` -> 3, ``false`` -> False, ``[1, 2]`` -> list)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def set_dotted(out: dict, key: str, value) -> None:
    """``out['augment']['flip'] = value`` for ``key = 'augment.flip'``; dashes read as underscores."""
    parts = key.replace("-", "_").split(".")
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ClearfaceError(f"--{key}: {part} is not a section")
    node[parts[-1]] = value


def parse_overrides(tokens: list[str]) -> dict:
    """``['--epochs', '3', '--augment.flip', 'false']`` -> nested dict with YAML-typed values."""
    out: dict = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise ClearfaceError(f"unexpected argument {tok!r}; settings look like --key value")
        key = tok[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise ClearfaceError(f"--{key} needs a value")
            raw = tokens[i + 1]
            i += 2
        set_dotted(out, key, parse_value(raw))
    return out


def resolve(recipe: str | None = None, overrides: dict | None = None) -> dict:
    """Default recipe < YAML ``recipe`` < ``overrides``, checked; a plain nested dict."""
    cfg = copy.deepcopy(DEFAULTS)
    if recipe:
        cfg = _apply(cfg, load_recipe(recipe), str(recipe), replace_sections=True)
    if overrides:
        cfg = _apply(cfg, overrides, "", replace_sections=False)
    check_model(cfg)
    return cfg


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
