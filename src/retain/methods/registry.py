"""The method registry and the start-up checks of a method list."""

from __future__ import annotations

from typing import Any

from retain.config import MethodSpec, build_dataclass
from retain.errors import MethodError
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


def _load_builtin_methods() -> None:
    import retain.methods.builtin  # noqa: F401  (registers every shipped method)


def available_methods() -> dict[str, type[Method]]:
    _load_builtin_methods()
    return dict(METHODS)


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
    methods = available_methods()
    built: list[Method] = []
    for index, spec in enumerate(specs):
        if spec.name not in methods:
            raise MethodError(
                f"methods[{index}]: unknown method {spec.name!r} "
                f"(registered: {', '.join(sorted(methods))})"
            )
        cls = methods[spec.name]
        params = build_dataclass(cls.params_class, resolve_compat(cls, spec.params), f"methods[{index}].{spec.name}")
        built.append(cls(params))
    return built


#: Accelerate's data-parallel modes: one DDP wrapper over whole replicas, whatever the device.
DATA_PARALLEL = ("multi_gpu", "multi_cpu", "multi_xpu", "multi_npu", "multi_mlu", "multi_hpu")


def supports_mode(method: Method, distributed: str) -> bool:
    """Whether ``method`` runs under Accelerate's ``distributed`` type (lower case).

    The data-parallel modes are one mode on different devices: a method that declares any of
    them (``multi_gpu`` by convention) runs under all of them, so CPU (gloo) runs can test it.
    """
    declared = set(method.distributed)
    if declared & set(DATA_PARALLEL):
        declared |= set(DATA_PARALLEL)
    if "deepspeed" in declared:  # a declaration without a stage: the stage every method may claim
        declared.add("zero2")
    return distributed in declared


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
            reason = method.distributed_refusals.get(distributed)
            raise MethodError(
                f"methods: {method.name} does not support distributed mode {distributed}"
                + (f": {reason}" if reason else "")
            )
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
