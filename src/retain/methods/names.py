"""The names of the shipped methods, read from their source without importing them.

Importing a method imports torch (half a minute on a cold start), and a misspelt method name is a
config mistake that should be reported in a second. Every module and package of ``retain.methods``
is parsed for classes decorated with ``@register_method`` whose ``name`` is a string literal, the
way every shipped method declares itself; ``tests/test_methods_shared.py`` checks that this finds
exactly the registered methods.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any, Iterable

from retain.errors import MethodError
from retain.import_paths import is_import_path

_PACKAGE = Path(__file__).resolve().parent
_INFRASTRUCTURE = {"base", "builtin", "registry", "common", "names"}


def _sources() -> Iterable[Path]:
    for path in sorted(_PACKAGE.iterdir()):
        if path.name.startswith("_") or path.stem in _INFRASTRUCTURE:
            continue
        if path.suffix == ".py":
            yield path
        elif path.is_dir() and (path / "__init__.py").is_file():
            yield from sorted(p for p in path.rglob("*.py"))


def _class_constants(tree: ast.AST) -> Iterable[dict[str, str]]:
    """The string constants (``name``, ``summary``) of every ``@register_method`` class."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        decorators = {d.id if isinstance(d, ast.Name) else getattr(d, "attr", None) for d in node.decorator_list}
        if "register_method" not in decorators:
            continue
        constants: dict[str, str] = {}
        for statement in node.body:
            targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
            value = getattr(statement, "value", None)
            for target in targets:
                if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    constants[target.id] = value.value
        if "name" in constants:
            yield constants


def _registered_names(tree: ast.AST) -> Iterable[str]:
    for constants in _class_constants(tree):
        yield constants["name"]


def shipped_method_summaries() -> dict[str, str]:
    """Shipped method name -> its one-line ``summary`` (read from source, like the names)."""
    summaries: dict[str, str] = {}
    for path in _sources():
        for constants in _class_constants(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            summaries[constants["name"]] = constants.get("summary", "")
    return summaries


def known_method_names() -> set[str]:
    """Shipped names plus any registered by user code (the registry is only read if imported)."""
    registry = sys.modules.get("retain.methods.registry")
    return shipped_method_names() | set(getattr(registry, "METHODS", {}))


def check_method_names(specs: Iterable[Any]) -> None:
    """The registry's unknown-method error, raised before torch is imported (a method named by
    import path is checked by importing it: :func:`retain.engine.preflight.check_method_imports`)."""
    known = known_method_names()
    for index, spec in enumerate(specs):
        if not is_import_path(spec.name) and spec.name not in known:
            raise MethodError(f"methods[{index}]: unknown method {spec.name!r} (registered: {', '.join(sorted(known))})")


def shipped_method_names() -> set[str]:
    """Names of the methods that ship with retain (no import of any method module)."""
    return set(shipped_method_modules())


def shipped_method_modules() -> dict[str, str]:
    """Shipped method name -> the module that registers it (``retain.methods.kif.method``), so
    that a run imports only the modules of its own methods (:mod:`retain.methods.builtin`)."""
    modules: dict[str, str] = {}
    for path in _sources():
        module = ".".join(("retain", "methods", *path.relative_to(_PACKAGE).with_suffix("").parts))
        for name in _registered_names(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            modules[name] = module.removesuffix(".__init__")
    return modules
