"""Checkpoints at task boundaries: weights in safetensors, the rest in one state file.

The checkpoint folder is written next to its final place and swapped in with a rename, so a crash
or ``kill -9`` at any moment leaves either the previous complete checkpoint or the new one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

from retain.reporting.atomic import atomic_dir

CHECKPOINT_DIR = "checkpoint"


def persistent_tensors(model: torch.nn.Module, lora: bool) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint must hold: all of them, or under LoRA only what can change.

    Tied tensors (one storage under several names) are saved once.
    """
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=False).items():
        if lora and not ("lora_" in name or "modules_to_save" in name or name in trainable):
            continue
        pointer = tensor.data_ptr()
        if pointer in seen and tensor.numel() > 0:
            continue
        seen.add(pointer)
        tensors[name] = tensor.detach().to("cpu").clone().contiguous()
    return tensors


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    lora: bool,
    state: dict[str, Any],
    method_states: list[dict[str, Any]],
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Any = None,
) -> None:
    target = run_dir / CHECKPOINT_DIR
    with atomic_dir(target) as tmp:
        save_file(persistent_tensors(model, lora), str(tmp / "model.safetensors"))
        torch.save(method_states, tmp / "methods.pt")
        if optimizer is not None:
            torch.save(
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None},
                tmp / "optimizer.pt",
            )
        (tmp / "state.json").write_text(json.dumps(state, indent=2))


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / CHECKPOINT_DIR / "state.json").is_file()


def load_state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / CHECKPOINT_DIR / "state.json").read_text())


def load_method_states(run_dir: Path) -> list[dict[str, Any]]:
    return torch.load(run_dir / CHECKPOINT_DIR / "methods.pt", weights_only=False)


def load_model_weights(run_dir: Path, model: torch.nn.Module) -> None:
    tensors = load_file(str(run_dir / CHECKPOINT_DIR / "model.safetensors"))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected:
        raise RuntimeError(f"checkpoint has tensors the model lacks: {unexpected[:5]}")


def load_optimizer(run_dir: Path, optimizer: torch.optim.Optimizer, scheduler: Any = None) -> bool:
    path = run_dir / CHECKPOINT_DIR / "optimizer.pt"
    if not path.is_file():
        return False
    saved = torch.load(path, weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved.get("scheduler") is not None:
        scheduler.load_state_dict(saved["scheduler"])
    return True
