"""The ``text`` format: raw text for continual pre-training (.txt paragraphs or JSON/JSONL text)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Optional

from retain.data.files import read_text as read_file_text
from retain.data.types import Example
from retain.data.readers.records import ReadResult, _Where, _check_fields, _examples_from_records, _field_text, _require_records, load_records


_TEXT_FIELDS = ("text", "id")


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n[ \t]*\n", text)]


def read_text(path: str | Path, fields: Optional[Mapping[str, str]] = None) -> ReadResult:
    """Read raw documents: a .txt file (blank-line separated) or JSON / JSON Lines with ``text``.

    Examples have an empty prompt (the loss covers the whole document); empty documents are left
    out and counted.
    """
    path = Path(path)
    fields = _check_fields(fields, _TEXT_FIELDS, "text")
    if path.suffix.lower() in (".json", ".jsonl"):
        def make(record: Mapping[str, Any], where: _Where) -> tuple[str, str]:
            return "", _field_text(record, "text", fields, where)

        records = load_records(path)
        result = _examples_from_records(records, str(path), path.stem, make, fields.get("id", "id"))
    else:
        documents = [doc for doc in _paragraphs(read_file_text(path)) if doc]
        kept = [Example("", doc, f"{path.stem}:{i}") for i, doc in enumerate(documents)]
        _require_records(path, kept)
        result = ReadResult(kept, source=str(path))  # blank runs are separators, not skipped docs
    result.raw_text = True
    return result


# ---------------------------------------------------------------------------------------------
# hf: a Hugging Face dataset (hub name, saved dataset folder, or a local json/jsonl/csv file).
