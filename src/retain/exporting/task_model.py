"""The exportable model a run keeps after a task: ``models/task-NN/`` in the run folder.

Full fine-tuning keeps ``save_pretrained`` weights; a LoRA run keeps the PEFT adapter(s) with their
``adapter_config.json`` and, in ``base/``, the base model's config (and, for a built-in model that
no name can load, its weights: LoRA never changes them). The tokenizer goes beside either, and
``retain_model.json`` says what the folder is (kind, adapters, the task it follows), which
``retain export`` reads. Each folder is written next to its place and renamed in whole.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from retain.errors import os_errors_named
from retain.reporting.atomic import atomic_dir

MODELS_DIR = "models"
META_FILE = "retain_model.json"
BASE_DIR = "base"
FORMAT = 1


def task_model_dir(run_dir: Path, after_phase: int) -> Path:
    """Where the model after the ``after_phase``-th phase (1-based) is kept."""
    return run_dir / MODELS_DIR / f"task-{after_phase:02d}"


@dataclass
class TaskModelInfo:
    """What ``retain_model.json`` records about one kept model."""

    kind: str
    lora: bool
    after_phase: int
    phases: int
    phase_name: str
    adapters: list[str]
    base_weights: bool  # base/ holds the base weights (else: load the base by base_name)
    base_name: Optional[str]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **self.__dict__}

    @classmethod
    def read(cls, folder: Path) -> "TaskModelInfo":
        data = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """transformers draws a bar for writing and loading weights; a run's log stays free of them."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def peft_adapters(model: Any) -> list[str]:
    """The PEFT adapters of ``model`` that take part in its forward pass ([] without PEFT), in
    the order they were made: those active on its LoRA layers (O-LoRA makes every task's adapter
    at set-up; a later task's is no part of the model until its task starts)."""
    from peft import PeftModel

    from retain.methods.olora import lora_layers

    if not isinstance(model, PeftModel):
        return []
    active = {name for layer in lora_layers(model) for name in layer.active_adapters}
    return [name for name in model.peft_config if name in active] or list(model.peft_config)


def base_state_of(full_state: dict[str, Any]) -> dict[str, Any]:
    """The base model's weights from a PEFT model's full state dict: LoRA tensors left out and
    the wrapper's prefixes removed (what ``unload()`` would leave, without copying the model)."""
    base: dict[str, Any] = {}
    for key, tensor in full_state.items():
        if ".lora_" in key:
            continue
        base[key.replace("base_model.model.", "", 1).replace(".base_layer.", ".")] = tensor
    return base


def save_task_model(
    folder: Path, model: Any, tokenizer: Any, kind: str, name_or_path: str,
    after_phase: int, phases: int, phase_name: str, full_state: Optional[dict[str, Any]] = None,
) -> Path:
    """Write the exportable model of ``model`` (the unwrapped one) to ``folder``, atomically.

    ``full_state``: the model's gathered full state dict when its parameters are sharded over
    processes (FSDP), written instead of the local shards.
    """
    adapters = peft_adapters(model)
    builtin = name_or_path.startswith("builtin:")
    info = TaskModelInfo(
        kind=kind, lora=bool(adapters), after_phase=after_phase, phases=phases, phase_name=phase_name,
        adapters=adapters, base_weights=bool(adapters) and builtin,
        base_name=None if builtin or not adapters else name_or_path,
    )
    with quiet_hf_progress(), atomic_dir(folder) as tmp, os_errors_named(folder):
        options: dict[str, Any] = {"state_dict": full_state} if full_state is not None else {}
        if adapters:
            options["selected_adapters"] = adapters
        model.save_pretrained(str(tmp), **options)
        if adapters:
            base = model.get_base_model()
            if info.base_weights and full_state is not None:
                base.save_pretrained(str(tmp / BASE_DIR), state_dict=base_state_of(full_state))
            elif info.base_weights:
                # A copy without the LoRA layers: the base weights exactly as the run started.
                copy.deepcopy(model).unload().save_pretrained(str(tmp / BASE_DIR))
            else:
                base.config.save_pretrained(str(tmp / BASE_DIR))
        tokenizer.save_pretrained(str(tmp))
        (tmp / META_FILE).write_text(json.dumps(info.to_dict(), indent=2), encoding="utf-8")
    return folder
