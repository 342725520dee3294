"""Names for method lists and configurations in tables: what differs, and nothing else.

A table row labelled ``replay`` is ambiguous when the runs used ``ratio: 0.02`` and
``ratio: 0.1``; one labelled with every parameter is unreadable. Labels therefore show each
method's parameters that differ from its declared defaults, and a comparison adds the config keys
that differ between its rows.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from retain.config import MethodSpec, build_dataclass, parse_method_list
from retain.errors import RetainError


def _method_classes() -> dict[str, Any]:
    from retain.methods.registry import available_methods  # noqa: PLC0415  (imports every method)

    return available_methods()


def format_value(value: Any) -> str:
    """0.02 -> '0.02', True -> 'true', [1, 2] -> '[1, 2]' (YAML-like, short)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple, Mapping)):
        return json.dumps(value, default=str)
    return str(value)


def _defaults(spec: MethodSpec) -> dict[str, Any]:
    cls = _method_classes().get(spec.name)
    if cls is None or not dataclasses.is_dataclass(cls.params_class):
        return {}
    defaults = {}
    for f in dataclasses.fields(cls.params_class):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            defaults[f.name] = f.default_factory()  # type: ignore[misc]
    return defaults


def non_default_params(spec: MethodSpec) -> dict[str, Any]:
    """The parameters of ``spec`` that differ from the method's defaults (all of them if unknown)."""
    defaults = _defaults(spec)
    return {k: v for k, v in spec.params.items() if k not in defaults or defaults[k] != v}


def method_label(methods: Any) -> str:
    """'migu + replay(ratio=0.02)' for a run config's method list."""
    try:
        specs = parse_method_list(methods if methods is not None else [])
    except RetainError:
        return str(methods)
    parts = []
    for spec in specs:
        params = non_default_params(spec)
        inner = ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
        parts.append(f"{spec.name}({inner})" if inner else spec.name)
    return " + ".join(parts)


def canonical_methods(methods: Any) -> list[Any]:
    """The method list with every parameter spelled out (defaults filled in), so that
    ``{name: replay}`` and ``{name: replay, ratio: <default>}`` compare equal."""
    try:
        specs = parse_method_list(methods if methods is not None else [])
    except RetainError:
        return [methods]
    classes = _method_classes()
    canonical: list[Any] = []
    for spec in specs:
        cls = classes.get(spec.name)
        try:
            params = dataclasses.asdict(build_dataclass(cls.params_class, dict(spec.params))) if cls else dict(spec.params)
        except (RetainError, TypeError):
            params = dict(spec.params)
        canonical.append({"name": spec.name, **params})
    return canonical


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1e-3}} -> {'train.lr': 1e-3}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def differing_keys(configs: Sequence[Mapping[str, Any]], ignore: Sequence[str] = ()) -> list[str]:
    """Dotted keys whose values are not the same in every config (missing counts as different)."""
    flats = [flatten_config(c) for c in configs]
    keys: list[str] = []
    for flat in flats:
        keys += [k for k in flat if k not in keys]
    missing = object()
    return [
        k for k in keys
        if k not in ignore and not k.startswith(tuple(f"{i}." for i in ignore))
        and len({json.dumps(f.get(k, missing), sort_keys=True, default=str) for f in flats}) > 1
    ]
