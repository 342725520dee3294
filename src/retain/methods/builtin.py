"""The methods that ship with retain, imported lazily: a run imports only its own methods' modules.

Which module registers which name is read from source (:func:`retain.methods.names.shipped_method_modules`),
so a new method only needs its own module or folder with a ``@register_method`` class. A module
that fails to import is held here with its error, per module: a run that names one of its
methods is refused with the module and the error; every other run goes on without it.
"""

from __future__ import annotations

import importlib

from retain.methods.names import shipped_method_modules

#: module -> why it failed to import ("ImportError: ..."); not retried, so a module that
#: registered a class before failing never registers it twice
FAILED: dict[str, str] = {}


def import_module_of(name: str) -> str:
    """Import the shipped module that registers method ``name``; '' when it imported (or ``name``
    is not shipped), otherwise what failed, naming the module."""
    module = shipped_method_modules().get(name)
    if module is None:
        return ""
    return _import(module)


def import_all() -> dict[str, str]:
    """Import every shipped method's module; module -> error for the ones that failed."""
    for module in sorted(set(shipped_method_modules().values())):
        _import(module)
    return dict(FAILED)


def _import(module: str) -> str:
    if module not in FAILED:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - held, and shown to the run that needs it
            FAILED[module] = f"{type(exc).__name__}: {exc}"
    return f"module {module} failed to import ({FAILED[module]})" if module in FAILED else ""
