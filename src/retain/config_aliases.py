"""Hugging Face TrainingArguments / LLaMA-Factory key names accepted as aliases of retain's keys.

People arrive with a ``learning_rate: 2e-5`` and a ``num_train_epochs: 3`` in their fingers (and
in their YAML files). Those names are accepted wherever a run config is read (a YAML file, a dict
from Python, ``key=value`` overrides), at the top level as those tools write them or inside
``train``/``eval``, and are rewritten to the one canonical key before validation, so the resolved
``config.yaml`` only ever holds canonical keys. Giving an alias and its canonical key in the same
source is refused: which of the two values was meant cannot be guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from retain.errors import ConfigError

#: alias -> canonical dotted key.
KEY_ALIASES: dict[str, str] = {
    "learning_rate": "train.lr",
    "num_train_epochs": "train.epochs",
    "per_device_train_batch_size": "train.batch_size",
    "gradient_accumulation_steps": "train.grad_accum",
    "lr_scheduler_type": "train.scheduler",
    "warmup_ratio": "train.warmup_ratio",
    "warmup_steps": "train.warmup_steps",
    "weight_decay": "train.weight_decay",
    "max_grad_norm": "train.max_grad_norm",
    "per_device_eval_batch_size": "eval.batch_size",
    "report_to": "train.report_to",
    "logging_steps": "train.logging_steps",
}

#: Scheduler names of transformers that mean one of ours (our "constant" already warms up).
SCHEDULER_VALUES: dict[str, str] = {"constant_with_warmup": "constant"}

_SECTIONS = ("train", "eval")


def _alias_places(alias: str) -> list[tuple[str, ...]]:
    """Where an alias may be written: top level, or inside the section of its canonical key."""
    section, key = KEY_ALIASES[alias].split(".")
    return [(alias,)] if key == alias else [(alias,), (section, alias)]


def _translate_value(canonical: str, value: Any) -> Any:
    if canonical == "train.scheduler" and isinstance(value, str):
        return SCHEDULER_VALUES.get(value, value)
    return value


def canonical_key(key: str) -> str:
    """The canonical dotted key of an override key (``learning_rate`` -> ``train.lr``)."""
    parts = key.split(".")
    if len(parts) == 1 and parts[0] in KEY_ALIASES:
        return KEY_ALIASES[parts[0]]
    if len(parts) == 2 and parts[0] in _SECTIONS and parts[1] in KEY_ALIASES:
        canonical = KEY_ALIASES[parts[1]]
        if canonical.split(".")[0] == parts[0]:
            return canonical
    return key


def canonical_override(item: str) -> str:
    """``learning_rate=1e-4`` -> ``train.lr=1e-4`` (any other override unchanged)."""
    if "=" not in item:
        return item
    key, text = item.split("=", 1)
    canonical = canonical_key(key.strip())
    if canonical == "train.scheduler":
        text = SCHEDULER_VALUES.get(text.strip(), text)
    return f"{canonical}={text}"


def check_override_aliases(overrides: list[str]) -> None:
    """Refuse an override list that sets one key twice, once under an alias and once canonically."""
    seen: dict[str, str] = {}
    for item in overrides:
        if "=" not in item:
            continue
        key = item.split("=", 1)[0].strip()
        canonical = canonical_key(key)
        earlier = seen.get(canonical)
        if earlier is not None and earlier != key:
            raise ConfigError(f"overrides: {earlier} and {key} both set {canonical}; keep one")
        seen[canonical] = key


def normalise_aliases(data: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """A copy of a raw config mapping with every alias moved to its canonical key.

    ``source`` names the file (or 'config') in the error for an alias given beside its canonical key.
    """
    result: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for alias, canonical in KEY_ALIASES.items():
        section, key = canonical.split(".")
        for place in _alias_places(alias):
            holder = result if len(place) == 1 else result.get(place[0])
            if not isinstance(holder, dict) or place[-1] not in holder:
                continue
            target = result.get(section)
            if target is None:
                target = result[section] = {}
            if not isinstance(target, dict):
                raise ConfigError(f"{source}: {section}: expected a mapping, got {target!r}")
            written = ".".join(place)
            if key in target:
                raise ConfigError(
                    f"{source}: {written} (alias of {canonical}) and {canonical} are both given; keep one"
                )
            target[key] = _translate_value(canonical, holder.pop(place[-1]))
    return result
