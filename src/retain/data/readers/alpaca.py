"""The ``alpaca`` format: a JSON list or JSON Lines of instruction/input/output records."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from retain.data.readers.records import ReadResult, _Where, _check_fields, _examples_from_records, _field_text, _templated, load_records
from retain.data.templates import PromptTemplate


_ALPACA_FIELDS = ("instruction", "input", "output", "id")


def _alpaca_pair(fields: Mapping[str, str]) -> Callable[[Mapping[str, Any], _Where], tuple[str, str]]:
    def make(record: Mapping[str, Any], where: _Where) -> tuple[str, str]:
        instruction = _field_text(record, "instruction", fields, where)
        given = _field_text(record, "input", fields, where, required=False)
        # Plain concatenation: benchmark records already end with "\n" / "Answer:" where needed.
        return instruction + given, _field_text(record, "output", fields, where)

    return make


def read_alpaca(
    path: str | Path, fields: Optional[Mapping[str, str]] = None, template: Optional[PromptTemplate] = None
) -> ReadResult:
    """Read a JSON list / JSON Lines file of instruction, input (optional), output records.

    ``fields`` renames the canonical keys (instruction, input, output, id) to the file's names.
    The key of a record is its id, else ``<file stem>:<index>``. ``template`` builds the prompt
    from the record's fields instead of instruction + input.
    """
    path = Path(path)
    fields = _check_fields(fields, _ALPACA_FIELDS, "alpaca")
    records = load_records(path)
    return _examples_from_records(
        records, str(path), path.stem, _templated(_alpaca_pair(fields), template, fields, "output"),
        fields.get("id", "id"),
    )


# ---------------------------------------------------------------------------------------------
# olora: <root>/<Type>/<Dataset>/{train,dev,test}.json + labels.json + an instruction.
