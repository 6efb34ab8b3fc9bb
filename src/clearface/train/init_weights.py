"""``init_from``: fine-tuning starts from a model file's weights instead of ImageNet's.

The danger is a quiet leak: a model that trained on some of this run's validation or held-out
images would make τ and the held-out figure optimistic. Its stored settings rebuild the split it
trained with (the same settings and pixel hashes give the same parts), so every image it trained
on must be a training image of this run; otherwise one line, before any training.
"""

from __future__ import annotations

import logging

import numpy as np

from ..data.split import TRAIN, split_from_config
from ..errors import ClearfaceError

log = logging.getLogger("clearface")

SPLIT_KEYS = ("val_fraction", "holdout", "holdout_seed", "seed")
# model_kwargs a fine-tuning run may change: what is trained and how, not what the network computes
TRAINING_KWARGS = ("pretrained", "weights", "frozen_blocks", "dropout")


def _trained_on(path, config: dict, hashes: np.ndarray, y: np.ndarray, limited: bool) -> np.ndarray:
    """Which of this data's images the init model's own split put in its training part (``limited``: this
    run reads only the first images of its data)."""
    missing = [k for k in SPLIT_KEYS if k not in config]
    if missing:
        raise ClearfaceError(f"{path}: no stored split settings ({missing[0]}), so the images it trained on are "
                             "unknown; --init-split-check false only if it never saw this data")
    limit = config.get("limit_images")
    if (limit is None and limited) or (limit or 0) > len(y):
        raise ClearfaceError(f"{path}: its split was made on {limit or 'all the'} images, this run reads "
                             f"{len(y)}; its split can only be rebuilt from as many (--limit-images)")
    limit = limit or len(y)
    seen = np.zeros(len(y), bool)
    try:
        seen[:limit] = split_from_config(config, hashes[:limit], y[:limit]) == TRAIN
    except ClearfaceError as exc:
        raise ClearfaceError(f"{path}: its stored split settings do not fit this data ({exc}); "
                             "--init-split-check false only if it never saw this data") from None
    return seen


def init_state(cfg: dict, hashes: np.ndarray, y: np.ndarray, parts: np.ndarray) -> tuple[dict, dict] | None:
    """``(state_dict, record)``: the weights ``cfg['init_from']`` starts training from (checked to fit the
    configured model and to have trained on no validation or held-out image of ``parts``) and what they
    came from (path, sha256: a packaged name alone would not say which file); None when not fine-tuning."""
    if not cfg.get("init_from"):
        return None
    from ..modelfile import load_model_file, model_file_path
    from ..models import get_model
    from ..outputs import file_sha256

    path = model_file_path(cfg["init_from"])
    blob = load_model_file(path)
    if len(blob["members"]) != 1:
        raise ClearfaceError(f"{path}: init_from takes one model; this file merges {len(blob['members'])}")
    member = blob["members"][0]
    if member["model"] != cfg["model"]:
        raise ClearfaceError(f"{path}: holds a {member['model']!r} model, this run trains {cfg['model']!r} "
                             f"(--model {member['model']})")
    theirs = {k: v for k, v in (member.get("model_kwargs") or {}).items() if k not in TRAINING_KWARGS}
    ours = {k: v for k, v in cfg["model_kwargs"].items() if k not in TRAINING_KWARGS}
    if theirs != ours:  # e.g. a 128 px model quietly fine-tuned at the default 96 px
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise ClearfaceError(f"{path}: its model_kwargs.{differ[0]} is {theirs.get(differ[0])!r}, this run's "
                             f"{ours.get(differ[0])!r}; fine-tune the network it is (its model_kwargs: "
                             f"{member.get('model_kwargs')})")
    if cfg["folds"] > 1:
        raise ClearfaceError("init_from with folds > 1: the one starting model would have seen every fold's "
                             "validation images")
    if cfg["init_split_check"]:
        stored = blob.get("config") or {}
        leaked = _trained_on(path, stored, hashes, y, cfg.get("limit_images") is not None) & (parts != TRAIN)
        if leaked.any():
            theirs = ", ".join(f"{k} {stored.get(k)}" for k in SPLIT_KEYS + ("split_seed", "limit_images"))
            raise ClearfaceError(f"{path}: its stored split trained on {int(leaked.sum())} of this run's validation "
                                 f"or held-out images, which would then score it; use its split settings ({theirs}) "
                                 "or --init-split-check false for data it never saw")
    # this run's network, built as the engines build a member: the file's build_kwargs (pretrained=False,
    # weights=None) keep ImageNet weights from being looked for, since the file's replace them
    kwargs = dict(cfg["model_kwargs"], **(member.get("build_kwargs") or {}))
    try:  # build once here, so a misfit is one line before training starts, not a traceback inside it
        get_model(cfg["model"], **kwargs).load_state_dict(member["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ClearfaceError(f"{path}: its weights do not fit {cfg['model']} with model_kwargs "
                             f"{cfg['model_kwargs']}: {first[1].strip() if len(first) > 1 else first[0]}") from None
    hter = (blob.get("metrics") or {}).get("test", {}).get("hter")
    record = {"path": str(path), "sha256": file_sha256(path)}
    log.info("init_from: %s (sha256 %s, %s weights; its held-out HTER as stored: %s)", path, record["sha256"][:16],
             blob.get("weights_dtype") or "float32", "n/a" if hter is None else f"{hter:.4f}")
    return member["state_dict"], record
