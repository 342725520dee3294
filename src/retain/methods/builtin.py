"""Importing this module registers every method that ships with retain.

Every module and package of ``retain.methods`` (``common/`` apart: components, not methods) is
imported, so a new method only needs its own module or folder with a ``@register_method`` class.
"""

from __future__ import annotations

import importlib
import pkgutil

import retain.methods as _package

_INFRASTRUCTURE = {"base", "builtin", "registry", "common"}

for _module in sorted(pkgutil.iter_modules(_package.__path__), key=lambda m: m.name):
    if _module.name not in _INFRASTRUCTURE and not _module.name.startswith("_"):
        importlib.import_module(f"retain.methods.{_module.name}")
