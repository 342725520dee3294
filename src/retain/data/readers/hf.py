"""The ``hf`` format: a Hugging Face dataset by hub name, saved folder or local json/jsonl/csv file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from retain.errors import DataError
from retain.data.readers.records import ReadResult, _check_fields, _examples_from_records, _field_text
from retain.data.readers.alpaca import _alpaca_pair
from retain.data.readers.trace import _prompt_answer


_HF_FIELDS = ("instruction", "input", "output", "prompt", "answer", "text", "id")


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).is_file() for name in ("dataset_dict.json", "state.json", "dataset_info.json")
    )


def _load_hf(location: str, split: Optional[str]) -> Any:
    """Load a Dataset; a single file or a saved single Dataset *is* the split (name ignored)."""
    import datasets

    path = Path(location)
    try:
        if path.is_file():
            kind = {".csv": "csv", ".parquet": "parquet"}.get(path.suffix.lower(), "json")
            return datasets.load_dataset(kind, data_files=str(path), split="train")
        if _is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(location)
    except Exception as exc:  # noqa: BLE001 - any loader failure is the user's data to fix
        reason = f"{type(exc).__name__}: {exc}"
        raise DataError(f"{location}: cannot load the Hugging Face dataset ({reason})") from None
    if isinstance(loaded, datasets.Dataset):
        return loaded
    if split not in loaded:
        raise DataError(f"{location}: no split {split!r} (splits: {', '.join(loaded)})")
    return loaded[split]


def _label_names(dataset: Any, column: str) -> Optional[Callable[[int], str]]:
    """ClassLabel columns hold integers; their names are the real targets."""
    feature = dataset.features.get(column)
    return feature.int2str if hasattr(feature, "int2str") else None


def _hf_rows(dataset: Any, fields: Mapping[str, str]) -> tuple[list[dict[str, Any]], str]:
    """Rows with ClassLabel ids turned into names, and which record shape they have."""
    columns = set(dataset.column_names)
    name = lambda canonical: fields.get(canonical, canonical)  # noqa: E731
    if name("output") in columns:
        shape = "alpaca"
    elif name("answer") in columns:
        shape = "prompt"
    elif name("text") in columns:
        shape = "text"
    else:
        raise DataError(
            f"columns {', '.join(sorted(columns))} hold none of output / answer / text "
            "(map yours with fields, e.g. {output: label})"
        )
    target = {"alpaca": name("output"), "prompt": name("answer"), "text": name("text")}[shape]
    to_name = _label_names(dataset, target)
    rows = [dict(row) for row in dataset]
    if to_name is not None:
        for row in rows:
            if isinstance(row.get(target), int):
                row[target] = to_name(row[target])
    return rows, shape


def read_hf(
    name_or_path: str, split: Optional[str] = None, fields: Optional[Mapping[str, str]] = None
) -> ReadResult:
    """Read a Hugging Face dataset split with instruction/input/output, prompt/answer or text.

    A saved dataset folder is opened with ``load_from_disk``, a local .json/.jsonl/.csv file with
    the matching ``load_dataset`` builder (the file is the split), anything else by hub name.
    """
    fields = _check_fields(fields, _HF_FIELDS, "hf")
    dataset = _load_hf(name_or_path, split)
    shown = f"{name_or_path}[{split}]" if split and not Path(name_or_path).is_file() else name_or_path
    try:
        rows, shape = _hf_rows(dataset, fields)
    except DataError as exc:
        raise DataError(f"{shown}: {exc}") from None
    stem = Path(name_or_path).stem + (f"/{split}" if split else "")
    make = {
        "alpaca": _alpaca_pair(fields),
        "prompt": _prompt_answer(fields),
        "text": lambda record, where: ("", _field_text(record, "text", fields, where)),
    }[shape]
    result = _examples_from_records(rows, shown, stem, make, fields.get("id", "id"))
    result.raw_text = shape == "text"
    return result


# ---------------------------------------------------------------------------------------------
# The registry.
