"""Checkpoints at task boundaries: tensors in safetensors, everything else in JSON, all checksummed.

Nothing in a checkpoint is ever unpickled: a run folder may come from someone else, and a pickle
runs code when it is loaded. Method and optimizer states (nested dicts, lists and tuples of
tensors, numbers, strings and None) are split by a small codec into a JSON tree and a flat set of
tensors. ``state.json`` is written last and records the sha256 of every other file plus its own,
so an edited or damaged checkpoint is refused on resume instead of giving silently wrong rows.

The checkpoint folder is written next to its final place and swapped in with renames, so a crash
or ``kill -9`` at any moment leaves the previous complete checkpoint, the new one, or (during the
swap itself) a complete copy under a temp name that :func:`recover_checkpoint` puts back.

torch is imported inside the functions that need it, so that verification and recovery can run
before the (slow) torch import.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from retain.errors import RetainError, os_errors_named
from retain.reporting.atomic import atomic_dir

if TYPE_CHECKING:
    import torch

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
FORMAT = 2  # 1: pickled methods.pt / optimizer.pt (never loaded); 2: safetensors + JSON, checksummed
_TEMP_PREFIXES = (f".{CHECKPOINT_DIR}.tmp-", f".{CHECKPOINT_DIR}.old-")
_HOW_TO_GO_ON = "the run cannot continue from it; restore the file or start again with --overwrite"


class CheckpointError(RetainError):
    """A checkpoint file is missing, damaged or edited; the message names the file."""


# -- the state codec ---------------------------------------------------------------------------


def encode_state(obj: Any) -> tuple[Any, dict[str, "torch.Tensor"]]:
    """Split ``obj`` into a JSON-able tree and the tensors it references (by generated key).

    Tuples, dicts with non-string keys, non-finite floats and tensors become small tagged
    objects (``{"__tuple__": [...]}`` ...), so :func:`decode_state` gives back the same types.
    Anything else (an arbitrary object) is a bug in a method's ``state_dict`` and raises TypeError.
    """
    import torch

    tensors: dict[str, torch.Tensor] = {}

    def enc(value: Any, where: str) -> Any:
        if isinstance(value, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = value.detach().to("cpu").contiguous().clone()
            return {"__tensor__": key, "device": value.device.type}
        if value is None or isinstance(value, (bool, str, int)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, tuple):
            return {"__tuple__": [enc(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [enc(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: enc(v, f"{where}.{k}") for k, v in value.items()}
            return {"__items__": [[enc(k, where), enc(v, f"{where}[{k!r}]")] for k, v in value.items()]}
        if hasattr(value, "item") and getattr(value, "shape", None) == ():  # a numpy scalar
            return enc(value.item(), where)
        raise TypeError(f"checkpoint state {where}: cannot save a {type(value).__name__} (tensors, numbers, strings, lists, tuples, dicts only)")

    return enc(obj, "state"), tensors


def decode_state(tree: Any, tensors: dict[str, "torch.Tensor"]) -> Any:
    """Inverse of :func:`encode_state`; tensors go back to the device type they were saved from
    when it is available (as ``torch.load`` did), else to the CPU."""
    import torch

    def dec(value: Any) -> Any:
        if isinstance(value, list):
            return [dec(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "__tensor__" in value:
            tensor = tensors[value["__tensor__"]]
            if value.get("device") == "cuda" and torch.cuda.is_available():
                tensor = tensor.to("cuda")
            return tensor
        if "__float__" in value:
            return float(value["__float__"])
        if "__tuple__" in value:
            return tuple(dec(v) for v in value["__tuple__"])
        if "__items__" in value:
            return {_hashable(dec(k)): dec(v) for k, v in value["__items__"]}
        return {k: dec(v) for k, v in value.items()}

    return dec(tree)


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, (list, tuple)) else key


# -- checksums ---------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_digest(state: dict[str, Any]) -> str:
    body = {k: v for k, v in state.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


# -- writing -----------------------------------------------------------------------------------


def persistent_tensors(
    model: "torch.nn.Module", lora: bool, state_dict: Optional[dict[str, "torch.Tensor"]] = None
) -> dict[str, "torch.Tensor"]:
    """The tensors a checkpoint must hold: all of them, or under LoRA only what can change.

    ``state_dict``: the model's full state dict when the caller gathered it (through Accelerate,
    whose gathering is what a sharded model needs); else the bare model's own. Tied tensors (one
    storage under several names) are saved once.
    """
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    tensors: dict[str, Any] = {}
    seen: set[int] = set()
    source = state_dict if state_dict is not None else model.state_dict(keep_vars=False)
    for name, tensor in source.items():
        if lora and not ("lora_" in name or "modules_to_save" in name or name in trainable):
            continue
        pointer = tensor.data_ptr()
        if pointer in seen and tensor.numel() > 0:
            continue
        seen.add(pointer)
        tensors[name] = tensor.detach().to("cpu").clone().contiguous()
    return tensors


def _save_tensors(tensors: dict[str, Any], path: Path) -> None:
    """``save_file`` whose I/O failures (a full disk ...) surface as an OSError naming the file."""
    from safetensors.torch import save_file

    with os_errors_named(path):
        save_file(tensors, str(path))


def _save_tree(folder: Path, stem: str, obj: Any, files: dict[str, str]) -> None:
    """``stem.json`` (the tree) + ``stem.safetensors`` (its tensors), checksums into ``files``."""
    tree, tensors = encode_state(obj)
    _save_tensors(tensors, folder / f"{stem}.safetensors")
    (folder / f"{stem}.json").write_text(json.dumps(tree), encoding="utf-8")
    for name in (f"{stem}.safetensors", f"{stem}.json"):
        _fsync(folder / name)
        files[name] = sha256_file(folder / name)


def save_checkpoint(
    run_dir: Path,
    model: "torch.nn.Module",
    lora: bool,
    state: dict[str, Any],
    method_states: list[dict[str, Any]],
    optimizer: Optional["torch.optim.Optimizer"] = None,
    scheduler: Any = None,
    state_dict: Optional[dict[str, "torch.Tensor"]] = None,
) -> None:
    """Write a complete checkpoint beside ``run_dir/checkpoint`` and swap it in."""
    target = run_dir / CHECKPOINT_DIR
    with atomic_dir(target) as tmp:
        files: dict[str, str] = {}
        _save_tensors(persistent_tensors(model, lora, state_dict), tmp / "model.safetensors")
        _fsync(tmp / "model.safetensors")
        files["model.safetensors"] = sha256_file(tmp / "model.safetensors")
        _save_tree(tmp, "methods", method_states, files)
        if optimizer is not None:
            saved = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None}
            _save_tree(tmp, "optimizer", saved, files)
        record = {"format": FORMAT, **state, "files": files}
        record["sha256"] = _state_digest(record)
        # Written last: a temp folder without state.json is an incomplete write, never resumed.
        (tmp / STATE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        _fsync(tmp / STATE_FILE)
    remove_stale_temps(run_dir)


# -- reading and verifying ---------------------------------------------------------------------


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / CHECKPOINT_DIR / STATE_FILE).is_file()


def verify_checkpoint(folder: Path) -> dict[str, Any]:
    """The progress record of the checkpoint in ``folder`` after checking every file's sha256.

    Raises CheckpointError naming the file that is missing, damaged or edited.
    """
    path = folder / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; {_HOW_TO_GO_ON}")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: damaged ({err}); {_HOW_TO_GO_ON}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: damaged (not a JSON object); {_HOW_TO_GO_ON}")
    if state.get("format") != FORMAT:
        raise CheckpointError(
            f"{folder}: written by an older retain that pickled method and optimizer states, which are "
            "never loaded (a pickle can run code); start the run again with --overwrite"
        )
    if state.get("sha256") != _state_digest(state):
        raise CheckpointError(f"{path}: checksum mismatch (edited or damaged); {_HOW_TO_GO_ON}")
    files = state.get("files")
    if not isinstance(files, dict) or "model.safetensors" not in files or "methods.json" not in files:
        raise CheckpointError(f"{path}: no checksums for the checkpoint files; {_HOW_TO_GO_ON}")
    for name, expected in files.items():
        file = folder / name
        if Path(name).name != name or not file.is_file():
            raise CheckpointError(f"{file}: missing; {_HOW_TO_GO_ON}")
        if sha256_file(file) != expected:
            raise CheckpointError(f"{file}: checksum mismatch (damaged or edited); {_HOW_TO_GO_ON}")
    return state


@dataclass
class Checkpoint:
    """A verified checkpoint: its progress record and loaders for its parts."""

    folder: Path
    state: dict[str, Any]

    def _tree(self, stem: str) -> Any:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(self.folder / f"{stem}.safetensors"))
            tree = json.loads((self.folder / f"{stem}.json").read_text(encoding="utf-8"))
            return decode_state(tree, tensors)
        except (OSError, SafetensorError, json.JSONDecodeError, KeyError) as err:
            raise CheckpointError(f"{self.folder / stem}.*: cannot be read ({err}); {_HOW_TO_GO_ON}") from None

    def method_states(self) -> list[dict[str, Any]]:
        return self._tree("methods")

    def load_model_weights(self, model: "torch.nn.Module") -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.folder / "model.safetensors"
        try:
            tensors = load_file(str(path))
        except (OSError, SafetensorError) as err:
            raise CheckpointError(f"{path}: cannot be read ({err}); {_HOW_TO_GO_ON}") from None
        try:
            _, unexpected = model.load_state_dict(tensors, strict=False)
        except RuntimeError as err:  # shape mismatch: the folder holds another model's weights
            raise CheckpointError(f"{path}: does not fit the configured model ({str(err).splitlines()[0]})") from None
        if unexpected:
            raise CheckpointError(f"{path}: has tensors the model lacks: {unexpected[:5]}")

    def load_optimizer(self, optimizer: "torch.optim.Optimizer", scheduler: Any = None) -> bool:
        if "optimizer.json" not in self.state["files"]:
            return False
        saved = self._tree("optimizer")
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler") is not None:
            scheduler.load_state_dict(saved["scheduler"])
        return True


def open_checkpoint(run_dir: Path) -> Checkpoint:
    """The run's checkpoint, verified (CheckpointError names what is wrong)."""
    folder = run_dir / CHECKPOINT_DIR
    return Checkpoint(folder, verify_checkpoint(folder))


def load_method_states(run_dir: Path) -> list[dict[str, Any]]:
    """The method states of the run's verified checkpoint (what a resume restores)."""
    return open_checkpoint(run_dir).method_states()


# -- crash leftovers ---------------------------------------------------------------------------


def _temp_folders(run_dir: Path) -> list[Path]:
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if p.name.startswith(_TEMP_PREFIXES) and p.is_dir())


def recover_checkpoint(run_dir: Path) -> Optional[str]:
    """After a crash during the swap, put the newest complete copy back as ``checkpoint/``.

    A crash between renaming the old checkpoint aside and renaming the new one in leaves no
    ``checkpoint/`` but complete copies under temp names. Returns a line for the log, or None.
    """
    if has_checkpoint(run_dir):
        return None
    best: Optional[tuple[int, Path]] = None
    for candidate in _temp_folders(run_dir):
        try:
            state = verify_checkpoint(candidate)
        except CheckpointError:
            continue
        completed = int(state.get("completed_phases", -1))
        if best is None or completed > best[0]:
            best = (completed, candidate)
    if best is None:
        return None
    target = run_dir / CHECKPOINT_DIR
    if target.exists():  # an empty or partial folder in the way
        shutil.rmtree(target)
    os.rename(best[1], target)
    return f"recovered the checkpoint after {best[0]} phases from {best[1].name} (a crash during a checkpoint swap)"


def remove_stale_temps(run_dir: Path) -> list[str]:
    """Remove what a crash left half-done: temp and old checkpoint copies (each a full model) and
    the hidden temp files of atomic writes (``.matrix.json.abc123.tmp``). Returns their names."""
    removed = []
    for folder in _temp_folders(run_dir):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    for parent in (run_dir, run_dir / "predictions"):
        if not parent.is_dir():
            continue
        for file in parent.iterdir():
            if file.name.startswith(".") and file.name.endswith(".tmp") and file.is_file():
                file.unlink(missing_ok=True)
                removed.append(file.name)
    return removed
