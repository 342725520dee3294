"""``retain export RUN_DIR OUT``: a run's kept model as a folder plain transformers or PEFT loads.

Full fine-tuning: ``AutoModelFor*.from_pretrained(OUT)``. LoRA: ``PeftModel.from_pretrained(base,
OUT)`` with the base from ``OUT/base`` (a built-in model) or its Hub name / path (configured by
``OUT/base/config.json``), or with ``merge=True`` a plain model with the adapter(s) merged in (PEFT's
``merge_and_unload``). The tokenizer is saved beside either.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from retain.errors import RetainError
from retain.exporting.task_model import (
    BASE_DIR,
    META_FILE,
    MODELS_DIR,
    TaskModelInfo,
    quiet_hf_progress,
    task_model_dir,
)
from retain.reporting.guard import LOCK_FILE, RunLock

#: A temp folder of an export that left no writer behind (no pid, no lock) counts as abandoned
#: once nothing in it has changed for this long.
STALE_AFTER_S = 3600.0

#: transformers' auto class per model kind (the same table the loader uses).
_AUTO_CLASS_NAMES = {
    "causal": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "classifier": "AutoModelForSequenceClassification",
}


@dataclass
class ExportResult:
    """What :func:`export_run` wrote."""

    out: Path
    after_phase: int
    phase_name: str
    #: "model" (save_pretrained weights, loadable by AutoModelFor*) or "adapter" (PEFT)
    form: str
    auto_class: str
    #: temp folders that killed exports to ``out`` had left beside it, removed first
    removed_leftovers: list[Path] = field(default_factory=list)


def _kept_models(run_dir: Path) -> dict[int, TaskModelInfo]:
    kept = {}
    folder = run_dir / MODELS_DIR
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.name.startswith("task-") and (path / META_FILE).is_file():
                try:
                    info = TaskModelInfo.read(path)
                except (OSError, ValueError, KeyError, TypeError) as err:
                    raise RetainError(f"{path / META_FILE}: cannot be read ({err})") from None
                kept[info.after_phase] = info
    return kept


def _completed_phases(run_dir: Path) -> Optional[int]:
    from retain.engine.checkpoint import CHECKPOINT_DIR, STATE_FILE

    try:
        return int(json.loads((run_dir / CHECKPOINT_DIR / STATE_FILE).read_text(encoding="utf-8"))["completed_phases"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _finished(run_dir: Path) -> bool:
    """Every task trained, by the run's matrix (False when it cannot be read)."""
    from retain.reporting.run_folder import RunFolder

    try:
        folder = RunFolder(run_dir)
        if not folder.has_matrix():
            return False
        matrix = folder.read_matrix()
        return matrix.tasks_trained == matrix.num_tasks
    except (OSError, ValueError, KeyError, TypeError, RetainError):
        return False


def _saved_config(run_dir: Path) -> Optional[dict[str, Any]]:
    from retain.reporting.run_folder import RunFolder

    return RunFolder(run_dir).read_config()


def choose_task_model(run_dir: Path, after_task: Optional[int]) -> Path:
    """The kept model folder to export; a RetainError says why there is none."""
    from retain.reporting.guard import is_run_folder

    if run_dir.exists() and not run_dir.is_dir():
        raise RetainError(f"{run_dir}: is a file, not a run folder")
    if not run_dir.is_dir():
        raise RetainError(f"{run_dir}: no such run folder")
    if not is_run_folder(run_dir):
        raise RetainError(f"{run_dir}: not a retain run folder (no .retain-run marker)")
    kept = _kept_models(run_dir)
    total = next(iter(kept.values())).phases if kept else None
    if total is None or total not in kept:
        if total is None and "output" not in (_saved_config(run_dir) or {"output": None}):
            raise RetainError(
                f"{run_dir}: holds no exportable model (no models/ folder: the run was made by a retain "
                "that did not keep one); run it again to export it"
            )
        if total is None and _finished(run_dir):
            raise RetainError(
                f"{run_dir}: the run is finished but holds no kept model ({run_dir / MODELS_DIR} is missing or "
                "empty: removed?); run it again to export it"
            )
        done = _completed_phases(run_dir)
        progress = f" ({done} of {total} tasks done)" if done is not None and total else ""
        raise RetainError(
            f"{run_dir}: the run is unfinished{progress}; finish it with `retain run --resume {run_dir}`, then export"
        )
    wanted = total if after_task is None else after_task
    if not 1 <= wanted <= total:
        raise RetainError(f"--after-task {wanted}: the run has tasks 1 to {total}")
    if wanted not in kept:
        shown = ", ".join(str(n) for n in sorted(kept))
        raise RetainError(
            f"--after-task {wanted}: {run_dir} kept no model after task {wanted} (kept: {shown}); only the last "
            "task's model is kept unless the run sets output.keep_task_models: true"
        )
    return task_model_dir(run_dir, wanted)


def _check_out(out: Path) -> None:
    if out.is_symlink() and not out.exists():
        raise RetainError(f"{out}: is a symbolic link to {os.readlink(out)}, which does not exist; choose another output folder")
    if out.exists() and not out.is_dir():
        raise RetainError(f"{out}: exists and is a file, not a folder; choose another output folder")
    if out.exists() and any(out.iterdir()):
        raise RetainError(f"{out}: exists and is not an empty folder; choose another output folder")
    if out.parent.exists() and not out.parent.is_dir():
        raise RetainError(f"{out.parent}: is a file, not a folder; choose another output folder")


# -- the export's temp folder and its leftovers ------------------------------------------------------
#
# An export writes ``.<out name>.tmp-<pid>-<12 hex>`` beside ``out`` and renames it into place, so a
# reader never sees half a model. While it writes, it holds the run folders' flock on a lock file in
# it. A kill -9 leaves the folder; the next export to ``out`` removes such a folder when its writer
# is gone: its pid is dead, or the lock is free (the pid was reused by another process). Folders of
# the older ``.<out name>.tmp-<8 chars>`` pattern (no pid) go once nothing in them changed for
# STALE_AFTER_S. Nothing else is touched: no other name, and never a folder whose writer may live.


def _temp_name(out: Path) -> str:
    return f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:
        return False
    return True


def _newest_change(folder: Path) -> float:
    newest = folder.lstat().st_mtime
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            newest = max(newest, path.lstat().st_mtime)
    return newest


def _abandoned(folder: Path, pid: Optional[int]) -> bool:
    if pid is not None and not _pid_alive(pid):
        return True
    if pid is not None and (folder / LOCK_FILE).is_file():
        try:
            RunLock(folder).acquire().release()
        except RetainError:
            return False  # its writer holds it: a live export
        return True
    return time.time() - _newest_change(folder) > STALE_AFTER_S


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove the temp folders that killed exports to ``out`` left beside it; returns them."""
    parent = out.parent
    if not parent.is_dir():
        return []
    own = re.compile(rf"\.{re.escape(out.name)}\.tmp-(\d{{1,10}})-[0-9a-f]{{12}}")
    legacy = re.compile(rf"\.{re.escape(out.name)}\.tmp-[a-z0-9_]{{8}}")
    removed = []
    for entry in parent.iterdir():
        match = own.fullmatch(entry.name)
        if match is None and legacy.fullmatch(entry.name) is None:
            continue
        if entry.is_symlink() or not entry.is_dir():
            continue
        pid = int(match.group(1)) if match else None
        try:
            if not _abandoned(entry, pid):
                continue
            shutil.rmtree(entry)
        except OSError:  # gone meanwhile, or not ours to remove: left as it is
            continue
        removed.append(entry)
    return removed


@contextlib.contextmanager
def export_folder(out: Path) -> Iterator[Path]:
    """A locked temp folder beside ``out`` that becomes ``out`` (absent or an empty folder) when
    the block ends; on any exception, or a signal, it is removed and ``out`` is left as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / _temp_name(out)
    tmp.mkdir()
    lock = RunLock(tmp).acquire()
    try:
        yield tmp
        lock.release()
        (tmp / LOCK_FILE).unlink()
        try:
            os.rename(tmp, out)  # replaces an empty folder in one step
        except OSError as err:
            raise RetainError(f"{out}: cannot put the export in place ({err.strerror}); choose another output folder") from None
    except BaseException:
        lock.release()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_run(run_dir: Path | str, out: Path | str, after_task: Optional[int] = None, merge: bool = False) -> ExportResult:
    """Export the model a run kept after task ``after_task`` (None: the last) to ``out``.

    ``merge``: a LoRA run's adapter(s) merged into the base weights, giving a plain model; without
    it a LoRA run exports a PEFT adapter. A run that summed several adapters (O-LoRA) can only be
    exported merged, as PEFT loads one adapter into a forward pass by default.
    """
    run_dir, out = Path(run_dir), Path(out)
    source = choose_task_model(run_dir, after_task)
    info = TaskModelInfo.read(source)
    _check_out(out)
    if merge and not info.lora:
        raise RetainError(f"--merge: {run_dir} trained all weights (no LoRA adapter), so there is nothing to merge; drop --merge")
    if info.lora and not merge and len(info.adapters) > 1:
        raise RetainError(
            f"{run_dir}: the model sums {len(info.adapters)} LoRA adapters ({', '.join(info.adapters)}); a PEFT "
            "adapter folder loads as one, so export it with --merge (a plain model with all of them merged in)"
        )
    auto_class = _AUTO_CLASS_NAMES[info.kind]
    removed = remove_stale_temps(out)
    with export_folder(out) as tmp:
        if info.lora and merge:
            _write_merged(source, info, tmp)
            form = "model"
        else:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            form = "adapter" if info.lora else "model"
        if form == "adapter" and info.base_weights:
            _point_adapter_at_base(tmp, out)
    return ExportResult(out, info.after_phase, info.phase_name, form, auto_class, removed)


def _point_adapter_at_base(tmp: Path, out: Path) -> None:
    """A built-in base has no Hub name: the adapter config names the exported base/ folder, so
    ``AutoPeftModelFor*.from_pretrained(out)`` finds it (written before the folder is put in place)."""
    path = tmp / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(out.parent.resolve() / out.name / BASE_DIR)
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def load_base(source: Path, info: TaskModelInfo) -> Any:
    """The base model of a kept LoRA model, as the run loaded it (weights or name + saved config)."""
    import transformers

    auto = getattr(transformers, _AUTO_CLASS_NAMES[info.kind])
    if info.base_weights:
        return auto.from_pretrained(str(source / BASE_DIR))
    config = transformers.AutoConfig.from_pretrained(str(source / BASE_DIR))
    try:
        return auto.from_pretrained(info.base_name, config=config, ignore_mismatched_sizes=info.kind == "classifier")
    except (OSError, ValueError) as err:
        raise RetainError(f"--merge: cannot load the base model {info.base_name!r} ({err})") from None


def _write_merged(source: Path, info: TaskModelInfo, tmp: Path) -> None:
    from peft import PeftModel
    from transformers import AutoTokenizer

    with quiet_hf_progress():
        model = PeftModel.from_pretrained(load_base(source, info), str(source), adapter_name=info.adapters[0])
        for name in info.adapters[1:]:
            model.load_adapter(str(source / name), adapter_name=name)
        if len(info.adapters) > 1:
            # The run summed all adapters; the LoRA layers take a list of active adapters.
            from retain.methods.olora import lora_layers

            for layer in lora_layers(model):
                layer.set_adapter(list(info.adapters))
        merged = model.merge_and_unload()
        merged.save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(tmp))
    meta = json.loads((source / META_FILE).read_text(encoding="utf-8"))
    meta.update(lora=False, adapters=[], base_weights=False, base_name=None, merged_from=info.adapters)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
