"""The ``trace`` format: a TRACE task folder (train.json, eval/test/dev.json of prompt/answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from retain.errors import DataError
from retain.data.files import check_folder, exists
from retain.data.readers.records import ReadResult, _Where, _check_fields, _examples_from_records, _field_text, _templated, load_records
from retain.data.templates import PromptTemplate


_TRACE_FIELDS = ("prompt", "answer", "id")


def _trace_file(folder: Path, split: str) -> Path:
    """``train`` -> train.json; any other split: <split>.json, else eval.json, test.json, dev.json."""
    if split == "train":
        return folder / "train.json"
    candidates = list(dict.fromkeys([f"{split}.json", "eval.json", "test.json", "dev.json"]))
    for name in candidates:
        if exists(folder / name):  # a pipe or folder under that name is reported, not skipped
            return folder / name
    raise DataError(f"{folder}: no evaluation file (looked for {', '.join(candidates)})")


def _prompt_answer(fields: Mapping[str, str]) -> Callable[[Mapping[str, Any], _Where], tuple[str, str]]:
    def make(record: Mapping[str, Any], where: _Where) -> tuple[str, str]:
        return _field_text(record, "prompt", fields, where), _field_text(record, "answer", fields, where)

    return make


def read_trace(
    folder: str | Path, split: str, fields: Optional[Mapping[str, str]] = None,
    template: Optional[PromptTemplate] = None,
) -> ReadResult:
    """Read one split of a TRACE style task folder (records of prompt / answer; ``template``
    builds the prompt from the record's fields instead)."""
    folder = check_folder(folder)
    fields = _check_fields(fields, _TRACE_FIELDS, "trace")
    path = _trace_file(folder, split)
    stem = f"{folder.name}/{path.stem}"
    records = load_records(path)
    make = _templated(_prompt_answer(fields), template, fields, "answer")
    return _examples_from_records(records, str(path), stem, make, fields.get("id", "id"))


# ---------------------------------------------------------------------------------------------
# text: raw text for continual pre-training.
