"""Training configuration: built-in defaults < YAML recipe < ``--key value`` overrides.

Kept as plain nested dicts so the resolved config can be written to ``config.yaml``, stored in
checkpoints and model files, and read back without any of this module.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .errors import ClearfaceError

DEFAULTS: dict = {
    "model": "cfnet",
    "model_kwargs": {},
    "epochs": 30,
    "batch_size": 128,
    "lr": 3.0e-3,
    "weight_decay": 0.05,
    "schedule": "onecycle",          # onecycle | cosine | constant
    "warmup_epochs": 1.0,            # cosine only
    "imbalance": "pos_weight",       # pos_weight | balanced_sampler | undersample | oversample_minority | focal | soft_hter | none
    "focal_gamma": 2.0,
    "soft_hter_temperature": 1.0,
    "label_smoothing": 0.0,
    "augment": {},                   # see clearface.data.augment.AugmentConfig
    "tta": "flip",                   # none | flip: scores averaged over the image and its mirror
    "threshold_method": "min_hter",  # min_hter | eer
    "val_fraction": 0.1,
    "holdout": 0,                    # images (or fraction) kept out of training and calibration
    "holdout_seed": 12345,
    "track_holdout": False,          # score the held-out part each epoch for a time-to-quality curve (report only)
    "folds": 1,                      # K > 1: K models, one per fold, ensembled; tau on out-of-fold scores
    "seed": 0,
    "split_seed": None,              # seed of the train/val split (default: seed); fix it to ensemble runs of other seeds
    "early_stopping_patience": 8,
    "max_minutes": None,             # wall-clock training budget (Lightning max_time); the schedule still spans `epochs`
    "stop_after": None,              # end this invocation after N epochs (resume later with --resume)
    "pseudo_data": None,             # unlabelled zip/folder whose confident teacher calls join the training part
    "pseudo_labels": None,           # CSV name,label of those calls (`clearface pseudolabel`)
    "limit_images": None,            # use only the first N images (smoke runs, tests)
    "resize": False,
    "cache_dir": None,
    "num_threads": None,
    "channels_last": True,
    "eval_batch_size": 512,
    "accelerator": "cpu",
    "devices": 1,
    "num_nodes": 1,
    "strategy": "auto",
    "precision": "32-true",
    "log_every_n_steps": 50,
    "progress_bar": True,
}


def _merge(base: dict, extra: dict, where: str, strict_keys: bool = True) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if strict_keys and key not in base:
            raise ClearfaceError(f"{where}: unknown setting {key!r}; known: {', '.join(sorted(base))}")
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _merge(out[key], value, where, strict_keys=False)
        else:
            out[key] = value
    return out


def load_recipe(path) -> dict:
    p = Path(path)
    if not p.exists():
        raise ClearfaceError(f"{p}: no such recipe file")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ClearfaceError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ClearfaceError(f"{p}: a recipe must be a mapping of settings")
    return data


def parse_overrides(tokens: list[str]) -> dict:
    """``['--epochs', '3', '--augment.flip', 'false']`` -> nested dict with YAML-typed values."""
    out: dict = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise ClearfaceError(f"unexpected argument {tok!r}; overrides look like --key value")
        key = tok[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise ClearfaceError(f"--{key} needs a value")
            raw = tokens[i + 1]
            i += 2
        key = key.replace("-", "_")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def resolve(recipe: str | None = None, overrides: dict | None = None) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    if recipe:
        cfg = _merge(cfg, load_recipe(recipe), str(recipe))
    if overrides:
        cfg = _merge(cfg, overrides, "command line")
    _validate(cfg)
    return cfg


_CHOICES = {
    "schedule": ("onecycle", "cosine", "constant"),
    "imbalance": ("pos_weight", "balanced_sampler", "undersample", "oversample_minority", "focal", "soft_hter", "none"),
    "tta": ("none", "flip"),
    "threshold_method": ("min_hter", "eer"),
}


def _validate(cfg: dict) -> None:
    for key, choices in _CHOICES.items():
        if cfg[key] not in choices:
            raise ClearfaceError(f"{key}: {cfg[key]!r} is not one of {', '.join(choices)}")
    for key in ("epochs", "batch_size", "folds"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ClearfaceError(f"{key} must be a positive whole number, got {cfg[key]!r}")
    for key in ("lr", "weight_decay"):
        if not isinstance(cfg[key], (int, float)) or cfg[key] < 0:
            raise ClearfaceError(f"{key} must be a non-negative number, got {cfg[key]!r}")


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
