"""Importing this module registers every method that ships with retain.

Every module of the ``retain.methods`` package is imported, so a new method only needs its own
module with a ``@register_method`` class.
"""

from __future__ import annotations

import importlib
import pkgutil

import retain.methods as _package

_INFRASTRUCTURE = {"base", "builtin", "registry"}

for _module in sorted(pkgutil.iter_modules(_package.__path__), key=lambda m: m.name):
    if _module.name not in _INFRASTRUCTURE and not _module.name.startswith("_"):
        importlib.import_module(f"retain.methods.{_module.name}")
