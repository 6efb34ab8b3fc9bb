"""Training settings: a typed dataclass whose defaults ARE the default recipe (``configs/mobilenet_v2_96.yaml``).

Layers, later wins: built-in defaults < YAML recipe (``--config``) < ``--key value`` overrides.

- A recipe's ``model_kwargs:`` and ``augment:`` sections are complete: they replace the defaults' (unset
  augment keys take the neutral values of :class:`AugmentSettings`), so every recipe means what it says.
  A layer that changes ``model`` without giving ``model_kwargs`` starts from no model arguments.
- Command-line overrides merge into what is there: ``--augment.erase 0.2``, ``--model-kwargs.width 24``.
- Every value is checked (type, range, finite); an unknown key or a bad value is one line naming it.

:func:`resolve` returns a plain nested dict, so the result is written to ``config.yaml``, stored in
checkpoints and model files, and read back as plain YAML (old run folders still resume).
``resize`` is the deprecated spelling of ``preprocess: resize``; it is kept in the dict, derived.
"""

from .fields import DEFAULTS, PREPROCESS_STEPS, AugmentSettings, Settings, setting_fields
from .layers import dump, load_recipe, parse_overrides, parse_value, resolve, set_dotted

__all__ = ["AugmentSettings", "DEFAULTS", "PREPROCESS_STEPS", "Settings", "dump", "load_recipe", "parse_overrides",
           "parse_value", "resolve", "set_dotted", "setting_fields"]
