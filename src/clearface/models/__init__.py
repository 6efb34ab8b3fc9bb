"""Model registry: ``get_model(name, **kwargs)``, ``list_models()``, ``register_model``.

Each model lives in its own module; importing it here registers it.
"""

from ._api import IMAGENET_MEAN, IMAGENET_STD, get_model, get_model_entry, list_models, register_model
from . import cfnet  # noqa: F401  (registers)
from . import capsnet, facenet_seed, mobilenet, resnet50_seed, vit  # noqa: F401  (register)

__all__ = ["get_model", "get_model_entry", "list_models", "register_model", "IMAGENET_MEAN", "IMAGENET_STD"]
