"""The ``olora`` format: an O-LoRA task folder ({train,dev,test}.json of sentence/label, labels.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

from retain.errors import DataError
from retain.data.files import check_folder, exists, read_text
from retain.data.readers.records import ReadResult, _Where, _check_fields, _examples_from_records, _field_text, _json_error, load_records


_OLORA_FIELDS = ("sentence", "label", "id")


def _olora_labels(folder: Path) -> Optional[list[str]]:
    path = folder / "labels.json"
    if not exists(path):
        return None
    try:
        labels = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{path}: expected a non-empty JSON list of label strings")
    return labels


def _olora_instruction_file(folder: Path) -> Optional[str]:
    text_file, json_file = folder / "instruction.txt", folder / "instructions.json"
    if exists(text_file):
        return read_text(text_file)
    if not exists(json_file):
        return None
    try:
        value = json.loads(read_text(json_file))
    except json.JSONDecodeError as exc:
        raise _json_error(json_file, exc) from None
    if isinstance(value, dict) and isinstance(value.get("instruction"), str):
        return value["instruction"]
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    raise DataError(f"{json_file}: expected {{\"instruction\": \"...\"}} or a list of instruction strings")


def _olora_instruction(folder: Path, instruction: Optional[str], labels: Optional[list[str]]) -> str:
    """The instruction: passed in, else the task folder's file, else the option-list default."""
    text = instruction if instruction is not None else _olora_instruction_file(folder)
    if text is None:
        if labels is None:
            raise DataError(
                f"{folder}: no labels.json, instruction.txt or instructions.json "
                "(the default instruction lists the labels)"
            )
        text = f"Choose one from the option. Option: {', '.join(labels)}\n"
    return text if not text or text.endswith("\n") else text + "\n"


def read_olora(
    folder: str | Path,
    split: str,
    instruction: Optional[str] = None,
    fields: Optional[Mapping[str, str]] = None,
) -> ReadResult:
    """Read one split (``train`` / ``dev`` / ``test``) of an O-LoRA style task folder.

    prompt = instruction + "Input: " + sentence + "\\nAnswer:", target = label; the folder's
    labels.json is returned as the task's declared label set.
    """
    folder = check_folder(folder)
    fields = _check_fields(fields, _OLORA_FIELDS, "olora")
    labels = _olora_labels(folder)
    prefix = _olora_instruction(folder, instruction, labels)
    path = folder / f"{split}.json"

    def make(record: Mapping[str, Any], where: _Where) -> tuple[str, str]:
        sentence = _field_text(record, "sentence", fields, where)
        return f"{prefix}Input: {sentence}\nAnswer:", _field_text(record, "label", fields, where)

    result = _examples_from_records(
        load_records(path), str(path), f"{folder.name}/{split}", make, fields.get("id", "id")
    )
    result.labels = labels
    return result


# ---------------------------------------------------------------------------------------------
# trace: a task folder with train.json and eval.json / test.json / dev.json of prompt/answer.
