"""The ``hf`` format: a Hugging Face dataset by hub name, saved folder or local json/jsonl/csv file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from retain.errors import DataError
from retain.data.readers.records import ReadResult, _check_fields, _examples_from_records, _field_text, _templated
from retain.data.templates import PromptTemplate
from retain.data.readers.alpaca import _alpaca_pair
from retain.data.readers.trace import _prompt_answer


_HF_FIELDS = ("instruction", "input", "output", "prompt", "answer", "text", "id")


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).is_file() for name in ("dataset_dict.json", "state.json", "dataset_info.json")
    )


def _saved_config(path: Path, config: str) -> Path:
    """A saved dataset's config is its sub-folder of that name (``save_to_disk`` keeps none)."""
    folder = path / config
    if not _is_saved_dataset(folder):
        found = sorted(p.name for p in path.iterdir() if _is_saved_dataset(p))
        where = f"saved configs: {', '.join(found)}" if found else "it is a single saved dataset"
        raise DataError(f"{path}: no config {config!r} ({where})")
    return folder


def _load_hf(location: str, split: Optional[str], config: Optional[str] = None) -> Any:
    """Load a Dataset; a single file or a saved single Dataset *is* the split (name ignored).

    ``config`` is the dataset's config / subset (``sst2`` of ``glue``): passed to ``load_dataset``
    for a Hub name or a folder in the Hub's layout (a README.md listing ``configs``), or the
    sub-folder of a folder of saved datasets.
    """
    import datasets

    path = Path(location)
    if config is not None and path.is_file():
        raise DataError(f"{location}: a single file has no configs (hf_config: {config!r})")
    if config is not None and _is_saved_dataset(path):
        raise DataError(f"{location}: a single saved dataset has no configs (hf_config: {config!r})")
    if config is not None and path.is_dir() and any(_is_saved_dataset(p) for p in path.iterdir()):
        path = _saved_config(path, config)
        location, config = str(path), None
    try:
        if path.is_file():
            kind = {".csv": "csv", ".parquet": "parquet"}.get(path.suffix.lower(), "json")
            return datasets.load_dataset(kind, data_files=str(path), split="train")
        if _is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(location, config)
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
    name_or_path: str,
    split: Optional[str] = None,
    fields: Optional[Mapping[str, str]] = None,
    config: Optional[str] = None,
    template: Optional[PromptTemplate] = None,
) -> ReadResult:
    """Read a Hugging Face dataset split with instruction/input/output, prompt/answer or text.

    A saved dataset folder is opened with ``load_from_disk``, a local .json/.jsonl/.csv file with
    the matching ``load_dataset`` builder (the file is the split), anything else by hub name
    (``config``: its config / subset). ``template`` builds prompts from the columns.
    """
    fields = _check_fields(fields, _HF_FIELDS, "hf")
    dataset = _load_hf(name_or_path, split, config)
    named = f"{name_or_path}/{config}" if config else name_or_path
    shown = f"{named}[{split}]" if split and not Path(name_or_path).is_file() else named
    try:
        rows, shape = _hf_rows(dataset, fields)
    except DataError as exc:
        raise DataError(f"{shown}: {exc}") from None
    stem = Path(name_or_path).stem + (f"/{config}" if config else "") + (f"/{split}" if split else "")
    if template is not None and shape == "text":
        raise DataError(f"{shown}: a template builds prompts, but this dataset is raw text (a 'text' column)")
    make = {
        "alpaca": _templated(_alpaca_pair(fields), template, fields, "output"),
        "prompt": _templated(_prompt_answer(fields), template, fields, "answer"),
        "text": lambda record, where: ("", _field_text(record, "text", fields, where)),
    }[shape]
    result = _examples_from_records(rows, shown, stem, make, fields.get("id", "id"))
    result.raw_text = shape == "text"
    return result


# ---------------------------------------------------------------------------------------------
# The registry.
