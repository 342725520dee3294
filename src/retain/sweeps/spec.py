"""The sweep file: a base run config and the axes of the grid (methods x orders x seeds x settings).

::

    name: sweep-demo               # the sweep folder is <output_dir>/<name>
    output_dir: runs
    base: demo.yaml                # required: a run config path (relative to this file) or a mapping
    overrides: {train.epochs: 2}   # applied to the base: {dotted.key: value} or ["key=value", ...]
    methods:                       # one entry per compared method list
      - seqft                      #   a method name,
      - [migu, {name: replay, ratio: 0.02}]   # a method list as in a run config,
      - {label: replay-2%, methods: [{name: replay, ratio: 0.02}]}   # or a list with a label
      - {label: kif, methods: [kif], overrides: {train.lr: 2.0e-3}}   # and its own overrides
    orders: [1, 2, 3]              # stream.order values (omit: the base's order)
    seeds: [42, 1, 2]              # omit: the base's seed; or per order: {1: [42, 1, 2], 2: [42], 3: [42]}
    settings:                      # optional extra axis, e.g. label spaces or learning rates
      - {label: task, overrides: {eval.label_space: task}}
      - {label: union, overrides: {eval.label_space: union}}

Every key is checked here, before any run starts, and a mistake names the file and key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union


from retain.config import (
    apply_overrides,
    build_dataclass,
    load_config_dict,
    option,
    parse_method_list,
    safe_load_yaml,
)
from retain.data.files import file_problem
from retain.errors import ConfigError
from retain.reporting.labels import method_label


@dataclass
class SweepFile:
    """The keys of a sweep file, as written (see the module docstring)."""

    name: str = option("Sweep name; the sweep folder is <output_dir>/<name>.", "sweep")
    output_dir: str = option("Parent folder of the sweep folder.", "runs")
    base: Any = option("Base run config (required): a YAML path (relative to the sweep file) or a mapping.", None)
    overrides: Any = option("Overrides of the base: {dotted.key: value} or ['key=value', ...].", None)
    methods: list[Any] = option(
        "Compared method lists: a name, a list, or {label, methods, overrides}.", factory=list
    )
    orders: list[Optional[int]] = option("stream.order values; empty = the base's order.", factory=list)
    seeds: Any = option("Seeds (a list, or a mapping order -> list); empty = the base's seed.", factory=list)
    settings: list[Any] = option("Extra grid axis: {label, overrides} entries.", factory=list)


@dataclass
class MethodsEntry:
    """One compared method list; ``overrides`` are its own settings (LoRA methods often want another
    learning rate than full fine-tuning), applied after the base and the setting's."""

    label: str
    methods: list[Any]
    overrides: list[str] = field(default_factory=list)


@dataclass
class SettingEntry:
    label: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class SweepSpec:
    """A validated sweep: the base config (overrides applied) and the grid's axes."""

    name: str
    output_dir: str
    base: dict[str, Any]
    methods: list[MethodsEntry]
    orders: list[Optional[int]]
    seeds: list[int]  # every seed of the sweep, in first-seen order
    settings: list[SettingEntry]  # one entry with label "" when the file has none
    source: Optional[Path] = None
    #: seeds per order when they differ (papers: several seeds on one order, one on the others)
    seeds_by_order: dict[Optional[int], list[int]] = field(default_factory=dict)

    def seeds_for(self, order: Optional[int]) -> list[int]:
        return self.seeds_by_order.get(order, self.seeds)

    @property
    def folder(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        """The sweep as resolved (written to the sweep folder as sweep.yaml)."""
        data: dict[str, Any] = {
            "name": self.name,
            "output_dir": self.output_dir,
            "base": self.base,
            "methods": [
                {"label": m.label, "methods": m.methods, **({"overrides": m.overrides} if m.overrides else {})}
                for m in self.methods
            ],
            "orders": self.orders,
            "seeds": self.seeds_by_order if self.seeds_by_order else self.seeds,
        }
        if any(s.label for s in self.settings):
            data["settings"] = [{"label": s.label, "overrides": s.overrides} for s in self.settings]
        return data


def as_override_list(value: Any, where: str) -> list[str]:
    """{dotted.key: value} or ['key=value', ...] as override strings (values written as JSON)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{key}={json.dumps(item)}" for key, item in value.items()]
    if isinstance(value, list) and all(isinstance(item, str) and "=" in item for item in value):
        return list(value)
    raise ConfigError(f"{where}: expected a mapping of dotted keys to values or a list of 'key=value' strings, got {value!r}")


def _methods_entry(entry: Any, index: int) -> MethodsEntry:
    where = f"methods[{index}]"
    label: Optional[str] = None
    overrides: list[str] = []
    if isinstance(entry, dict) and "methods" in entry:
        unknown = sorted(set(entry) - {"label", "methods", "overrides"})
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r} (an entry with 'methods' takes: label, methods, overrides)"
            )
        label, methods = entry.get("label"), entry["methods"]
        overrides = as_override_list(entry.get("overrides"), f"{where}.overrides")
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise ConfigError(f"{where}.label: expected a non-empty string, got {label!r}")
    else:
        methods = entry
    methods = [methods] if isinstance(methods, (str, dict)) else methods
    if not isinstance(methods, list):
        raise ConfigError(f"{where}: expected a method name, a method list or {{label, methods}}, got {entry!r}")
    try:
        parse_method_list(methods)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return MethodsEntry(label or method_label(methods), methods, overrides)


def _setting_entry(entry: Any, index: int) -> SettingEntry:
    where = f"settings[{index}]"
    if not isinstance(entry, dict) or set(entry) - {"label", "overrides"} or not entry.get("label"):
        raise ConfigError(f"{where}: expected {{label: <name>, overrides: {{dotted.key: value}}}}, got {entry!r}")
    if not isinstance(entry["label"], str):
        raise ConfigError(f"{where}.label: expected a string, got {entry['label']!r}")
    return SettingEntry(entry["label"], as_override_list(entry.get("overrides"), f"{where}.overrides"))


def _unique(labels: list[str], what: str) -> None:
    seen = set()
    for label in labels:
        if label in seen:
            raise ConfigError(f"{what}: label {label!r} is used twice; give the entries distinct labels")
        seen.add(label)


def _base_config(value: Any, folder: Path, given: bool) -> dict[str, Any]:
    """The base run config. It is required: a sweep without one would silently run the built-in
    defaults (a demo stream on a tiny model) and tabulate them as if they were the experiment.
    An explicit mapping, even ``{}``, is taken as written."""
    if not given or value is None:
        raise ConfigError(
            "base: required: the run config every run of the grid builds on, a YAML path "
            "(relative to the sweep file) or an inline mapping (base: {} for the built-in defaults)"
        )
    if isinstance(value, dict):
        return json.loads(json.dumps(value))
    if isinstance(value, str) and value.strip():
        path = Path(value) if Path(value).is_absolute() else folder / value
        problem = file_problem(path, "config file")
        if problem is not None and os.path.lexists(path):  # (a missing one: the run config's own message)
            raise ConfigError(f"base: {path}: {problem}")
        return load_config_dict(path)
    raise ConfigError(f"base: expected a config path or a mapping, got {value!r}")


def build_spec(data: dict[str, Any], folder: Path, source: Optional[Path] = None) -> SweepSpec:
    """Validate a sweep mapping; relative paths (base) are read from ``folder``."""
    raw: SweepFile = build_dataclass(SweepFile, data)
    base = apply_overrides(_base_config(raw.base, folder, "base" in data), as_override_list(raw.overrides, "overrides"))
    if not raw.methods:
        raise ConfigError("methods: list at least one method entry (e.g. [seqft])")
    methods = [_methods_entry(entry, i) for i, entry in enumerate(raw.methods)]
    _unique([m.label for m in methods], "methods")
    settings = [_setting_entry(entry, i) for i, entry in enumerate(raw.settings)] or [SettingEntry("")]
    _unique([s.label for s in settings], "settings")
    orders = list(raw.orders) or [(base.get("stream") or {}).get("order")]
    seeds_by_order = _seeds_by_order(raw.seeds, orders)
    seeds = list(dict.fromkeys(s for values in seeds_by_order.values() for s in values)) if seeds_by_order else (
        list(raw.seeds) or [base.get("seed", 42)]
    )
    for key, values in (("orders", orders), ("seeds", seeds)):
        if len(set(values)) != len(values):
            raise ConfigError(f"{key}: {values} lists a value twice")
    if not raw.name or Path(raw.name).name != raw.name or raw.name in (".", ".."):
        raise ConfigError(f"name: {raw.name!r} must be a plain folder name")
    return SweepSpec(raw.name, raw.output_dir, base, methods, orders, seeds, settings, source, seeds_by_order)


def _seeds_by_order(value: Any, orders: list[Optional[int]]) -> dict[Optional[int], list[int]]:
    """{} for a plain seed list; for a mapping, every order's seeds (each order listed exactly once)."""
    if not isinstance(value, dict):
        if not isinstance(value, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
            raise ConfigError(f"seeds: expected a list of integers or a mapping order -> list, got {value!r}")
        return {}
    if set(value) != set(orders):
        raise ConfigError(
            f"seeds: a per-order mapping must list exactly the sweep's orders {orders}, got {sorted(value, key=str)}"
        )
    result: dict[Optional[int], list[int]] = {}
    for order in orders:
        seeds = value[order]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(f"seeds.{order}: expected a non-empty list of integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds.{order}: {seeds} lists a value twice")
        result[order] = list(seeds)
    return result


def load_spec(source: Union[str, Path, dict[str, Any], SweepSpec]) -> SweepSpec:
    """A SweepSpec from a YAML path, a mapping (paths relative to the working folder) or itself."""
    if isinstance(source, SweepSpec):
        return source
    if isinstance(source, dict):
        return build_spec(source, Path.cwd())
    path = Path(source)
    problem = file_problem(path, "sweep file")  # a folder or a named pipe is named, never opened
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the sweep file as UTF-8") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    data = safe_load_yaml(text, str(path))  # the run config's loader: safe, alias expansion capped
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (name, base, methods, orders, seeds, ...)")
    with errors_naming(path):
        return build_spec(data, path.parent, path)


@contextmanager
def errors_naming(source: Optional[Path]) -> Iterator[None]:
    """Prefix a ConfigError raised inside with the sweep file's path (when there is one)."""
    try:
        yield
    except ConfigError as err:
        if source is None or str(err).startswith(str(source)):
            raise
        raise ConfigError(f"{source}: {err}") from None
