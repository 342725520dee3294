"""What every reader shares: loading JSON / JSON Lines files and turning records into examples.

Every unusable file or record raises a :class:`DataError` whose message names the file, the record
index and id, and the field at fault; records left out are counted and reported.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from retain.data.files import read_text
from retain.data.types import Example
from retain.data.templates import PromptTemplate
from retain.errors import ConfigError, DataError



logger = logging.getLogger("retain.data")

#: A label set larger than this is treated as free text (metric rouge_l), not as classes.
MAX_LABELS = 50

#: How many offending records a warning spells out before it only counts.
_SHOWN_IN_WARNING = 3


class DataWarning(UserWarning):
    """Records were left out while reading (counted in ``Task.skipped_records``)."""


@dataclass
class ReadResult:
    """What a reader produced from one file / split.

    ``labels`` is a label set the source itself declares (the ``olora`` layout's labels.json);
    ``raw_text`` marks continual pre-training text; ``source`` is the file the records came from,
    so that later messages (unknown labels, empty tasks) can name it.
    """

    examples: list[Example]
    skipped: int = 0
    labels: Optional[list[str]] = None
    raw_text: bool = False
    source: str = ""


# ---------------------------------------------------------------------------------------------
# Loading JSON / JSON Lines with messages that point at the broken spot.


def _json_error(path: Path, exc: json.JSONDecodeError, line_offset: int = 0) -> DataError:
    return DataError(
        f"{path}: not valid JSON (line {exc.lineno + line_offset}, column {exc.colno}: {exc.msg})"
    )


def _parse_json_lines(path: Path, text: str) -> list[Any]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise _json_error(path, exc, line_offset=number - 1) from None
    return records


def _not_a_list(path: Path, value: Any) -> DataError:
    kind = "an object" if isinstance(value, dict) else f"a {type(value).__name__}"
    return DataError(f"{path}: the top level is {kind}; expected a list of records (or JSON Lines)")


def load_records(path: str | Path) -> list[Any]:
    """Load a JSON list or a JSON Lines file, told apart by content (a leading ``[`` is JSON).

    Content rather than the suffix decides because ``.json`` files holding JSON Lines are common.
    Raises DataError for a missing, empty or invalid file and for a top level that is not a list.
    """
    path = Path(path)
    text = read_text(path).lstrip("\ufeff")  # json.loads rejects a byte-order mark
    stripped = text.lstrip()
    if not stripped:
        raise DataError(f"{path}: the file is empty (no records)")
    if stripped.startswith("{"):
        try:
            records = _parse_json_lines(path, text)
        except DataError:
            value = _try_json(text)
            if value is not None:  # one pretty-printed object: valid JSON, wrong shape
                raise _not_a_list(path, value) from None
            raise
        if len(records) == 1 and path.suffix.lower() != ".jsonl":
            # A .json holding one object (e.g. {"data": [...]}) is far likelier than one-line JSONL.
            raise DataError(f"{_not_a_list(path, records[0])}; name a one-record JSON Lines file *.jsonl")
        return records
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None
    if not isinstance(value, list):
        raise _not_a_list(path, value)
    return value


def _try_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _require_records(path: Path | str, records: Sequence[Any]) -> None:
    if not records:
        raise DataError(f"{path}: no records (the task would be empty)")


# ---------------------------------------------------------------------------------------------
# Record fields.


@dataclass(frozen=True)
class _Where:
    """A record's position, for messages: ``train/agnews.json record 17 (id agnews_17)``."""

    file: str
    index: int
    record_id: Optional[str] = None

    def __str__(self) -> str:
        ident = f" (id {self.record_id})" if self.record_id is not None else ""
        return f"{self.file} record {self.index}{ident}"


def _as_object(record: Any, where: _Where) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: expected an object with named fields, got {type(record).__name__}")
    return record


def _record_id(record: Mapping[str, Any], id_field: str, where: _Where) -> Optional[str]:
    value = record.get(id_field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: field '{id_field}' must be a string or integer, got {value!r}")
    return str(value)


def _field_text(
    record: Mapping[str, Any],
    canonical: str,
    fields: Mapping[str, str],
    where: _Where,
    required: bool = True,
) -> str:
    """The string value of ``canonical`` (looked up under its mapped name).

    An optional field may be absent or null (read as ""); a present value must be a string, since
    numbers or lists silently turned into text would train the model on something else.
    """
    name = fields.get(canonical, canonical)
    shown = f"'{name}'" if name == canonical else f"'{name}' (mapped from '{canonical}')"
    if name not in record or (record[name] is None and not required):
        if required:
            raise DataError(f"{where}: missing field {shown}")
        return ""
    value = record[name]
    if not isinstance(value, str):
        kind = type(value).__name__
        raise DataError(f"{where}: field {shown} must be a string, got {kind} {value!r:.60}")
    return value


def _check_fields(
    fields: Optional[Mapping[str, str]], known: Iterable[str], reader: str
) -> dict[str, str]:
    fields = dict(fields or {})
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ConfigError(
            f"fields: unknown key(s) {', '.join(unknown)} for format {reader} "
            f"(known: {', '.join(known)})"
        )
    return fields


class _KeyTracker:
    """Rejects duplicate ids in a file: keys identify examples for replay and stored signals."""

    def __init__(self) -> None:
        self.first_seen: dict[str, int] = {}

    def add(self, key: str, where: _Where) -> None:
        if key in self.first_seen:
            raise DataError(f"{where}: duplicate id (first used by record {self.first_seen[key]})")
        self.first_seen[key] = where.index


def _warn_skipped_empty(file: str, keys: list[str]) -> None:
    if keys:
        shown = ", ".join(keys[:_SHOWN_IN_WARNING]) + (", ..." if len(keys) > _SHOWN_IN_WARNING else "")
        warnings.warn(
            f"{file}: {_records(len(keys))} with an empty target left out: {shown}",
            DataWarning,
            stacklevel=3,
        )


def _records(count: int) -> str:
    return f"{count} record" if count == 1 else f"{count} records"


def _templated(
    make: Callable[[Mapping[str, Any], _Where], tuple[str, str]],
    template: Optional["PromptTemplate"],
    fields: Mapping[str, str],
    target: str,
) -> Callable[[Mapping[str, Any], _Where], tuple[str, str]]:
    """``make`` with the prompt built by ``template`` from the record (the target read as before)."""
    if template is None:
        return make

    def templated(record: Mapping[str, Any], where: _Where) -> tuple[str, str]:
        return template.render(record, where), _field_text(record, target, fields, where)

    return templated


def _examples_from_records(
    records: Sequence[Any],
    file: str,
    stem: str,
    make: Callable[[Mapping[str, Any], _Where], tuple[str, str]],
    id_field: Optional[str] = "id",
) -> ReadResult:
    """Shared loop: validate each record, build (prompt, target), key it, drop empty targets."""
    _require_records(file, records)
    examples: list[Example] = []
    empty: list[str] = []
    keys = _KeyTracker()
    for index, raw in enumerate(records):
        where = _Where(file, index)
        record = _as_object(raw, where)
        record_id = _record_id(record, id_field, where) if id_field else None
        where = _Where(file, index, record_id)
        prompt, target = make(record, where)
        key = record_id if record_id is not None else f"{stem}:{index}"
        keys.add(key, where)
        if not target.strip():
            empty.append(key)
            continue
        examples.append(Example(prompt=prompt, target=target, key=key))
    _warn_skipped_empty(file, empty)
    return ReadResult(examples, skipped=len(empty), source=file)


# ---------------------------------------------------------------------------------------------
# alpaca: instruction / input / output records.
