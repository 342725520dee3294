"""User code named by import path (``package.module:ClassName``), and the gate that keeps a run
folder from making retain import code on its own.

Metrics (a task's ``metric``) and methods (an entry of ``methods``) may name a class by import
path. Importing is running code, so an import path that comes from a run folder (``--resume``,
``report``, ``compare``, ``export``: the folder may be someone else's) is imported only when the
user names it again: inside :func:`importing_only` any other import path is refused.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable, Iterator
from typing import Optional

from retain.errors import ConfigError

#: the import paths that may be imported now (None: any, for a config the user wrote) and where
#: the refused ones come from (see :func:`importing_only`)
_importable: Optional[frozenset[str]] = None
_refused_source = ""


def is_import_path(text: object) -> bool:
    """Whether a metric or method name is an import path rather than a registered name."""
    return isinstance(text, str) and ":" in text


@contextlib.contextmanager
def importing_only(allowed: Iterable[str], source: str) -> Iterator[None]:
    """Within: only the import paths in ``allowed`` are imported; any other one is a ConfigError
    that names ``source`` (what the path was read from) and how to trust it."""
    global _importable, _refused_source
    saved = _importable, _refused_source
    _importable = frozenset(allowed) | (_importable or frozenset())
    _refused_source = source
    try:
        yield
    finally:
        _importable, _refused_source = saved


def check_importable(spec: str) -> None:
    """Refuse ``spec`` inside :func:`importing_only` unless it was allowed."""
    if _importable is not None and spec not in _importable:
        raise ConfigError(
            f"{spec}: an import path read from {_refused_source}; code named by a run folder is never "
            f"imported: give --allow-import {spec} to trust it"
        )


def import_object(spec: str) -> object:
    """The object ``package.module:Name`` (``Name`` may be dotted) names; one-line ConfigErrors
    for a malformed path, a module that fails to import (named, with its error) and a missing name.
    The gate is the caller's (:func:`check_importable`)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{spec!r}: an import path is 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's module to fix
        raise ConfigError(f"{spec}: cannot import module {module_name!r} ({type(exc).__name__}: {exc})") from None
    obj: object = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{spec}: module {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    return obj


def import_paths_in(data: object) -> list[str]:
    """Every import path in a config mapping: each ``metric`` (nested lists and mappings included)
    and each entry of ``methods``; what a caller that wrote the config itself passes as
    ``allow_imports`` when it resumes the run."""
    if isinstance(data, dict):
        found = [v for k, v in data.items() if k == "metric" and is_import_path(v)]
        methods = data.get("methods")
        for entry in methods if isinstance(methods, list) else [methods]:
            name = entry.get("name") if isinstance(entry, dict) else entry
            if is_import_path(name):
                found.append(name)
        return found + [p for k, v in data.items() if k != "methods" for p in import_paths_in(v)]
    if isinstance(data, list):
        return [p for v in data for p in import_paths_in(v)]
    return []
