"""The ``superni`` format: one Super-NaturalInstructions task file.

A task file is one JSON object: ``Definition`` (a list of strings, or one string), ``Positive
Examples`` (objects with ``input`` and ``output``) and ``Instances`` (objects with ``id``, ``input``
and ``output``, a list of acceptable answers). Each instance becomes one example whose prompt is
the definition, the first :data:`POSITIVE_EXAMPLES` positive examples and the instance's input
(the benchmark's "definition + 2 positive examples" encoding); its target is the first answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from retain.data.files import read_text
from retain.data.readers.records import ReadResult, _examples_from_records, _json_error, _Where
from retain.errors import DataError

#: Positive examples shown before each instance (SuperNI's standard "Def + 2 Pos." setting).
POSITIVE_EXAMPLES = 2

_SUPERNI_FIELDS = ("id",)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: must be a string, got {type(value).__name__} {value!r:.60}")
    return value


def _definition(task: Mapping[str, Any], path: Path) -> str:
    if "Definition" not in task:
        raise DataError(f"{path}: missing field 'Definition'")
    value = task["Definition"]
    parts = value if isinstance(value, list) else [value]
    return " ".join(_text(part, f"{path}: field 'Definition'").strip() for part in parts)


def _demonstrations(task: Mapping[str, Any], path: Path) -> str:
    examples = task.get("Positive Examples") or []
    if not isinstance(examples, list):
        raise DataError(f"{path}: field 'Positive Examples' must be a list of objects with input and output")
    shown = []
    for i, example in enumerate(examples[:POSITIVE_EXAMPLES]):
        where = f"{path} Positive Examples[{i}]"
        if not isinstance(example, Mapping) or "input" not in example or "output" not in example:
            raise DataError(f"{where}: expected an object with input and output")
        shown.append(
            f"Positive Example {i + 1} -\nInput: {_text(example['input'], where + '.input').strip()}\n"
            f"Output: {_text(example['output'], where + '.output').strip()}\n\n"
        )
    return "".join(shown)


def _answers(record: Mapping[str, Any], where: _Where) -> str:
    if "output" not in record:
        raise DataError(f"{where}: missing field 'output'")
    outputs = record["output"]
    outputs = [outputs] if isinstance(outputs, str) else outputs
    if not isinstance(outputs, Sequence) or not outputs or not all(isinstance(o, str) for o in outputs):
        raise DataError(f"{where}: field 'output' must be a non-empty list of strings, got {record['output']!r:.60}")
    return outputs[0]


def read_superni(path: str | Path, fields: Mapping[str, str] | None = None) -> ReadResult:
    """Read the instances of one SuperNI task file as examples (keys: the instances' ids)."""
    path = Path(path)
    try:
        task = json.loads(read_text(path).lstrip("\ufeff"))
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None
    if not isinstance(task, Mapping):
        raise DataError(f"{path}: expected one task object (Definition, Positive Examples, Instances)")
    header = f"Definition: {_definition(task, path)}\n\n{_demonstrations(task, path)}"
    instances = task.get("Instances")
    if not isinstance(instances, list):
        raise DataError(f"{path}: missing field 'Instances' (a list of objects with id, input, output)")

    def make(record: Mapping[str, Any], where: _Where) -> tuple[str, str]:
        if "input" not in record:
            raise DataError(f"{where}: missing field 'input'")
        given = _text(record["input"], f"{where}: field 'input'").strip()
        return f"{header}Now complete the following example -\nInput: {given}\nOutput:", _answers(record, where)

    return _examples_from_records(instances, f"{path} Instances", path.stem, make, (fields or {}).get("id", "id"))


__all__ = ["POSITIVE_EXAMPLES", "read_superni"]
