"""A tiny model registry in the style of torchvision's ``models/_api.py``.

Adding a model is one decorated builder in its own module (imported in ``models/__init__``).
Every builder returns an ``nn.Module`` mapping a normalised float batch ``(N, 3, 64, 64)`` to
one logit per image, shape ``(N,)``: larger means "class 1, clean face".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..errors import ClearfaceError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable
    description: str
    # Normalisation the model expects on its 0..1 input; saved in every model file.
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    tags: tuple = field(default_factory=tuple)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str | None = None, *, mean=IMAGENET_MEAN, std=IMAGENET_STD, tags=()):
    def wrap(fn: Callable) -> Callable:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelEntry(key, fn, doc[0] if doc else "", tuple(mean), tuple(std), tuple(tags))
        return fn

    return wrap


def get_model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ClearfaceError(f"unknown model {name!r}; known models: {known}") from None


def get_model(name: str, **kwargs):
    entry = get_model_entry(name)
    try:
        return entry.builder(**kwargs)
    except TypeError as exc:
        raise ClearfaceError(f"bad arguments for model {name!r}: {exc}") from None


def list_models() -> list[str]:
    return sorted(_REGISTRY)
