"""Deprecated: the settings moved to :mod:`clearface.settings`; this name stays for old imports."""

from .settings import DEFAULTS, dump, load_recipe, parse_overrides, resolve  # noqa: F401

__all__ = ["DEFAULTS", "dump", "load_recipe", "parse_overrides", "resolve"]
