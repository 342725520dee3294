"""The grid of a sweep as run configs, and what each run folder already holds.

A run's folder name is derived from its labels only (``<setting>-<methods>-o<order>-s<seed>``,
made of letters, digits and ``_ . + = -``), so the same sweep file always finds the same folders. A folder is
*finished* (reused as is), *partial* (resumed by the engine), *new*, or holds a different
configuration: that is an error naming the folder and the first keys that differ, never a
silent overwrite.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from retain.config import RunConfig, apply_overrides, make_config
from retain.errors import ConfigError, RetainError
from retain.reporting.labels import differing_keys, flatten_config, format_value
from retain.reporting.run_folder import CONFIG_FILE, LOG_FILE, METRICS_FILE, RunFolder
from retain.sweeps.spec import SweepSpec, errors_naming

RUNS_DIR = "runs"

NEW, FINISHED, PARTIAL = "new", "finished", "partial"


@dataclass
class PlannedRun:
    """One cell of the grid."""

    name: str  # the run folder's name (also the run config's name)
    setting: str
    method: str  # the methods entry's label
    order: Optional[int]
    seed: int
    config: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return Path(self.config["output_dir"]) / self.name

    def describe(self) -> str:
        parts = [self.method] + ([f"setting {self.setting}"] if self.setting else [])
        parts += ([f"order {self.order}"] if self.order is not None else []) + [f"seed {self.seed}"]
        return ", ".join(parts)


_NOT_PLAIN = re.compile(r"[^A-Za-z0-9_.+=-]+")
_MAX_PART = 60


def plain_part(label: str) -> str:
    """A label as part of a folder name: letters, digits and _ . + = - only, at most 60 of them.

    'replay(ratio=0.02)' -> 'replay_ratio=0.02', 'migu + replay' -> 'migu+replay'. A long label is
    cut and given a short hash of the whole, so it stays distinct.
    """
    text = _NOT_PLAIN.sub("_", label.replace(" + ", "+")).strip("._-+=") or "run"
    if len(text) > _MAX_PART:
        text = f"{text[:_MAX_PART - 9]}-{hashlib.sha256(label.encode('utf-8')).hexdigest()[:8]}"
    return text


def run_name(setting: str, method: str, order: Optional[int], seed: int) -> str:
    """'<setting>-<methods>-o<order>-s<seed>' from plain parts (no setting / order: left out)."""
    parts = [plain_part(setting)] if setting else []
    parts.append(plain_part(method))
    if order is not None:
        parts.append(f"o{order}")
    parts.append(f"s{seed}")
    return "-".join(parts)


def plan_runs(spec: SweepSpec) -> list[PlannedRun]:
    """Every run of the grid (settings, then methods, orders, seeds), each config validated."""
    with errors_naming(spec.source):
        return _plan_runs(spec)


def _plan_runs(spec: SweepSpec) -> list[PlannedRun]:
    runs: list[PlannedRun] = []
    names: dict[str, PlannedRun] = {}
    kinds: dict[tuple[str, Optional[str]], str] = {}
    for setting in spec.settings:
        for entry in spec.methods:
            for order in spec.orders:
                for seed in spec.seeds_for(order):
                    name = run_name(setting.label, entry.label, order, seed)
                    where = f"run {name} ({', '.join(filter(None, [entry.label, setting.label]))})"
                    data = apply_overrides(copy.deepcopy(spec.base), setting.overrides + entry.overrides)
                    data["methods"] = copy.deepcopy(entry.methods)
                    data["seed"] = seed
                    if order is not None:
                        data.setdefault("stream", {})["order"] = order
                    data["name"] = name
                    data["output_dir"] = str(spec.folder / RUNS_DIR)
                    try:
                        resolved = make_config(data)
                        _check_methods(resolved, kinds)
                    except RetainError as err:
                        raise ConfigError(f"{where}: {err}") from None
                    if order is not None:
                        _check_order(resolved.stream.benchmark, order)
                    planned = PlannedRun(name, setting.label, entry.label, order, seed, data)
                    if name in names:
                        raise ConfigError(
                            f"{where} and {names[name].describe()} get the same folder name {name!r}; "
                            "give the method entries or settings labels that differ in letters or digits"
                        )
                    names[name] = planned
                    runs.append(planned)
    return runs


def _check_methods(config: RunConfig, kinds: dict[tuple[str, Optional[str]], str]) -> None:
    """The checks the engine makes when a run starts (parameters, method combination, model kind),
    made for every run before the first one trains, so a bad cell never stops a grid half-way.

    ``kinds`` memoises the model kind per (model, declared kind): reading it opens the model's config.
    """
    from retain.methods.registry import check_combination, instantiate  # noqa: PLC0415  (imports the methods)
    from retain.models.loading import _resolve_kind  # noqa: PLC0415  (a config read, no weights)

    methods = instantiate(config.method_specs())
    lora = config.model.lora.enabled or any(m.needs_lora is True for m in methods)
    key = (config.model.name_or_path, config.model.kind)
    if key not in kinds:
        kinds[key] = _resolve_kind(config.model)[0]
    check_combination(methods, kinds[key], lora)


def _check_order(benchmark: str, order: int) -> None:
    """An order the benchmark does not have would run some other stream (or the same one again)."""
    from retain.data.benchmarks import BENCHMARK_ORDERS  # noqa: PLC0415

    known = BENCHMARK_ORDERS.get(benchmark)
    if known is None:
        raise ConfigError(f"orders: stream.benchmark {benchmark!r} has no orders; remove 'orders' from the sweep")
    if order not in known:
        raise ConfigError(f"orders: {order} is not an order of {benchmark} (orders: {', '.join(map(str, known))})")


def _comparable(config: RunConfig) -> dict[str, Any]:
    data = config.to_dict()
    data.pop("name", None)
    data.pop("output_dir", None)
    return json.loads(json.dumps(data, default=str))


def config_differences(planned: dict[str, Any], saved: dict[str, Any]) -> list[str]:
    """'key: saved -> planned' for every key that differs once both are resolved.

    The engine records what it resolved (model.kind from the model's config, LoRA switched on
    for methods that need it); a planned value left to the engine matches what it recorded.
    """
    want = _comparable(make_config(planned))
    try:
        have = _comparable(make_config(saved))
    except RetainError as err:
        return [f"its config.yaml is no longer a valid config ({err})"]
    if want["model"]["kind"] is None:
        want["model"]["kind"] = have["model"]["kind"]
    if not want["model"]["lora"]["enabled"]:
        want["model"]["lora"]["enabled"] = have["model"]["lora"]["enabled"]
    flat_want, flat_have = flatten_config(want), flatten_config(have)
    return [
        f"{key}: {format_value(flat_have.get(key))} in the folder, {format_value(flat_want.get(key))} in the sweep"
        for key in differing_keys([want, have])
    ]


def run_state(run: PlannedRun) -> tuple[str, str]:
    """(NEW | FINISHED | PARTIAL, a few words of detail); a ConfigError for a foreign folder."""
    folder = RunFolder(run.run_dir)
    if not folder.path.exists():
        return NEW, ""
    contents = {p.name for p in folder.path.iterdir()}
    saved = folder.read_config()
    if saved is None:
        # the run failed before it wrote its config (only its log, or hidden marker/lock files): start again
        if all(name == LOG_FILE or name.startswith(".") for name in contents):
            return NEW, "restarted"
        raise ConfigError(
            f"{folder.path}: holds files but no {CONFIG_FILE}, so it is not a run of this sweep; "
            "move it away or rename the sweep"
        )
    differences = config_differences(run.config, saved)
    if differences:
        shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
        raise ConfigError(
            f"{folder.path}: this run folder holds another configuration than the sweep's run "
            f"{run.name} ({shown}); move the folder away or rename the sweep"
        )
    if not folder.has_matrix():
        return PARTIAL, "no task finished yet"
    matrix = folder.read_matrix()
    done = f"{matrix.tasks_trained}/{matrix.num_tasks} tasks"
    if matrix.tasks_trained == matrix.num_tasks and METRICS_FILE in contents:
        return FINISHED, done
    return PARTIAL, done
