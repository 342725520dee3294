"""The method registry, methods by import path, and the start-up checks of a method list.

A method list entry names a registered method (``seekr``) or a :class:`Method` subclass by import
path (``my_pkg.methods:MyMethod``), which is imported, not registered: from a config the user
gives at once, from a run folder's config only when allowed (``--allow-import``; see
:mod:`retain.import_paths`, the gate metrics share). Shipped methods are imported lazily, each
module on its own (:mod:`retain.methods.builtin`), so one that fails to import breaks only the
runs that use it.
"""

from __future__ import annotations

from typing import Any

from retain.config import MethodSpec, build_dataclass
from retain.errors import ConfigError, MethodError
from retain.import_paths import check_importable, import_object, is_import_path
from retain.methods.base import (
    CARRIES_KNOWLEDGE,
    FIXED_PARAMETERS,
    GROWS_PARAMETERS,
    OWNS_BATCH_SCHEDULE,
    OWNS_PHASES,
    RESETS_MODEL,
    Method,
)

METHODS: dict[str, type[Method]] = {}

#: capabilities at most one method of a run may declare, and what they decide
EXCLUSIVE: dict[str, str] = {
    OWNS_BATCH_SCHEDULE: "how a task's batches are formed",
    OWNS_PHASES: "what a training phase is",
}

#: (capability of a, capability of b, why a and b cannot be combined)
INCOMPATIBLE: list[tuple[str, str, str]] = [
    (RESETS_MODEL, OWNS_PHASES, "{b} trains one model on all tasks at once, {a} one model per task; run them separately"),
    (RESETS_MODEL, CARRIES_KNOWLEDGE, "{b} carries knowledge from earlier tasks, while {a} starts every task from the initial weights"),
    (FIXED_PARAMETERS, GROWS_PARAMETERS, "{b} adds new parameters every task, while {a} tracks parameters fixed when the run starts"),
]


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its ``name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in METHODS:
        raise TypeError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def available_methods() -> dict[str, type[Method]]:
    """Every registered method; a shipped module that fails to import is left out (see
    :func:`broken_methods`), and its methods are refused only by the runs that name them."""
    from retain.methods import builtin  # noqa: PLC0415

    builtin.import_all()
    return dict(METHODS)


def broken_methods() -> dict[str, str]:
    """Shipped module -> why it failed to import, for the modules that did."""
    from retain.methods import builtin  # noqa: PLC0415

    return builtin.import_all()


def method_class(name: str, where: str = "methods") -> type[Method]:
    """The class a method list entry names: a registered name or an import path.

    One-line errors, prefixed with ``where``: an unknown name (with the registered ones), a shipped
    module that fails to import (named, with its error), and for an import path: one from a run
    folder that was not allowed, no such module, no such class, not a Method subclass, no name.
    """
    if is_import_path(name):
        return _import_method(name, where)
    if name not in METHODS:
        from retain.methods import builtin  # noqa: PLC0415

        failure = builtin.import_module_of(name)
        if failure:
            raise MethodError(f"{where}: method {name!r} cannot be loaded: {failure}")
    if name not in METHODS:
        raise MethodError(
            f"{where}: unknown method {name!r} (registered: {', '.join(sorted(available_methods()))}; "
            "or an import path 'package.module:ClassName')"
        )
    return METHODS[name]


def _import_method(spec: str, where: str) -> type[Method]:
    try:
        check_importable(spec)
        obj = import_object(spec)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, Method)):
        raise ConfigError(f"{where}: {spec} is not a method: expected a subclass of retain.methods.base.Method, got {obj!r}")
    if not obj.name:
        raise ConfigError(f"{where}: {spec} has no name: give the class a name = '...' (it labels the method in logs and messages)")
    return obj


def resolve_compat(cls: type[Method], params: dict[str, Any]) -> dict[str, Any]:
    """A method's parameters with ``compat: official`` expanded into the released code's values.

    Keys given beside ``compat: official`` win over the values it sets: ``{compat: official,
    logit_positions: shifted}`` is the official mode with one deviation switched back, the
    ablation that measures that deviation alone. ``compat: retain`` (the default) changes nothing.
    """
    if params.get("compat") != "official" or not cls.official_values:
        return dict(params)  # a bad value or a method without the key is refused by build_dataclass
    return {**cls.official_values, **params}


def instantiate(specs: list[MethodSpec]) -> list[Method]:
    """Build methods from specs; unknown names and bad parameters name the key."""
    built: list[Method] = []
    for index, spec in enumerate(specs):
        cls = method_class(spec.name, f"methods[{index}]")
        params = build_dataclass(cls.params_class, resolve_compat(cls, spec.params), f"methods[{index}].{cls.name}")
        built.append(cls(params))
    return built


#: Accelerate's data-parallel modes: one DDP wrapper over whole replicas, whatever the device.
DATA_PARALLEL = ("multi_gpu", "multi_cpu", "multi_xpu", "multi_npu", "multi_mlu", "multi_hpu")


def supports_mode(method: Method | type[Method], distributed: str) -> bool:
    """Whether ``method`` (an instance or its class) runs under Accelerate's ``distributed`` type
    (lower case).

    The data-parallel modes are one mode on different devices: a method that declares any of
    them (``multi_gpu`` by convention) runs under all of them, so CPU (gloo) runs can test it.
    """
    declared = set(method.distributed)
    if declared & set(DATA_PARALLEL):
        declared |= set(DATA_PARALLEL)
    if "deepspeed" in declared:  # a declaration without a stage: the stage every method may claim
        declared.add("zero2")
    return distributed in declared


def _undeclared(method: Method, distributed: str) -> str:
    """Why a mode the method neither declares nor gives a reason for is refused, and how to declare it."""
    declared = set(method.distributed)
    said = "single-process runs only (the default)" if declared <= {"no"} else f"{', '.join(method.distributed)} only"
    mode = "multi_gpu" if distributed in DATA_PARALLEL else distributed  # one declaration for every device
    return (
        f"it declares {said}; once it is correct under {distributed}, declare it on the class: "
        f"distributed = {tuple(dict.fromkeys((*method.distributed, mode)))!r} (modes: retain.methods.base.DISTRIBUTED_MODES)"
    )


def check_combination(methods: list[Method], kind: str, lora: bool, distributed: str = "no") -> None:
    """Reject impossible method lists with a message that says why (by capability, never by name)."""
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise MethodError(f"methods: {names} lists a method twice")
    full = [m.name for m in methods if m.needs_lora is False]
    adapters = [m.name for m in methods if m.needs_lora is True]
    if full and adapters:
        raise MethodError(
            f"methods: {full[0]} trains all weights but {adapters[0]} trains LoRA adapters; they cannot be combined"
        )
    for method in methods:
        if kind not in method.model_kinds:
            raise MethodError(
                f"methods: {method.name} does not support {kind} models "
                f"(supported: {', '.join(method.model_kinds)})"
            )
        if method.needs_lora is True and not lora:
            raise MethodError(f"methods: {method.name} trains LoRA adapters; set model.lora.enabled=true")
        if method.needs_lora is False and lora:
            raise MethodError(
                f"methods: {method.name} is full fine-tuning; with model.lora.enabled=true use seqlora"
            )
        if not supports_mode(method, distributed):
            reason = method.distributed_refusals.get(distributed) or _undeclared(method, distributed)
            raise MethodError(f"methods: {method.name} does not support distributed mode {distributed}: {reason}")
    for first, second, why in INCOMPATIBLE:
        for a in (m for m in methods if m.declares(first)):
            for b in (m for m in methods if m.declares(second) and m is not a):
                raise MethodError(f"methods: {a.name} and {b.name} cannot be combined: {why.format(a=a.name, b=b.name)}")
    for capability, what in EXCLUSIVE.items():
        owners = [m.name for m in methods if m.declares(capability)]
        if len(owners) > 1:
            raise MethodError(f"methods: {' and '.join(owners)} both decide {what}; keep one")


def method_table() -> list[tuple[str, str, Any]]:
    """(name, summary, params class) for `retain list`."""
    return [(name, cls.summary, cls.params_class) for name, cls in sorted(available_methods().items())]
