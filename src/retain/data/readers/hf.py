"""The ``hf`` format: a Hugging Face dataset by hub name, saved folder or local json/jsonl/csv file."""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from retain.errors import DataError
from retain.data.files import check_regular_file, check_utf8
from retain.data.readers.records import (
    ReadResult,
    _check_fields,
    _examples_from_records,
    _field_text,
    _require_records,
    _templated,
    load_records,
)
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
        raise DataError(f"{path}: no config {config!r} (saved configs: {', '.join(found)})")
    return folder


#: Local files read with a ``datasets`` builder (the file is the split).
_BUILDERS = {".csv": "csv", ".parquet": "parquet", ".json": "json", ".jsonl": "json"}
#: Of those, the text formats: checked for UTF-8, emptiness and (CSV) records before loading.
_TEXT_SUFFIXES = (".csv", ".json", ".jsonl")


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No ``datasets`` progress bars ("Generating train split"), log lines ("Failed to read
    file ...") or warnings while a dataset is read: a bad file gets retain's one error line,
    with nothing printed before it. Scoped: the library's settings are restored afterwards."""
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    level = datasets.logging.get_verbosity()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # also silences datasets' own notice when an env var pins the bars
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity(logging.CRITICAL + 1)
        try:
            yield
        finally:
            datasets.logging.set_verbosity(level)
            if bars_were_on:
                datasets.enable_progress_bars()


def _looks_local(location: str) -> bool:
    """A path the user meant as a local file (a Hub name has no data-file suffix)."""
    return (
        Path(location).suffix.lower() in _BUILDERS
        or Path(location).is_absolute()
        or location.startswith(("./", "../", "~"))
    )


def _check_text_file(path: Path) -> Optional[list[str]]:
    """What ``datasets`` reports as "An error occurred while generating the dataset" (or not at
    all: it stores bad UTF-8 and fails later, while the rows are read), said with the file's name.
    Returns a CSV file's header."""
    check_utf8(path)
    with open(path, "rb") as handle:
        first = handle.readline()
        while first and not first.strip():
            first = handle.readline()
        if not first:
            raise DataError(f"{path}: the file is empty (no records)")
        if path.suffix.lower() != ".csv":
            return None
        text = first.decode("utf-8").lstrip("\ufeff").strip()
        rest = handle.readline()
        while rest and not rest.strip():
            rest = handle.readline()
        if not rest:
            raise DataError(f"{path}: has a header ({text[:80]}) but no records")
    header = next(csv.reader([text]))
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise DataError(f"{path}: the header names column {twice[0]!r} twice ({text[:80]})")
    return header


def _csv_features(header: Optional[list[str]]) -> Any:
    """Every CSV column as text: a CSV holds text, and an answer column of digits ("4") must stay
    the string a model learns to write, not become an integer."""
    import datasets

    if not header:
        return None
    return datasets.Features({name: datasets.Value("string") for name in header})


def _diagnose_json(path: Path) -> Optional[DataError]:
    """The precise message (line, column, top-level shape) for a JSON file ``datasets`` refused."""
    try:
        _require_records(path, load_records(path))
    except DataError as err:
        return err
    return None


def _load_local_file(path: Path) -> Any:
    import datasets

    check_regular_file(path)
    suffix = path.suffix.lower()
    header = _check_text_file(path) if suffix in _TEXT_SUFFIXES else None
    kind = _BUILDERS.get(suffix, "json")
    options = {"features": _csv_features(header)} if kind == "csv" and header else {}
    try:
        with quiet_datasets():
            return datasets.load_dataset(kind, data_files=str(path), split="train", **options)
    except Exception as exc:  # noqa: BLE001 - any loader failure is the user's data to fix
        precise = _diagnose_json(path) if kind == "json" else None
        if precise is not None:
            raise precise from None
        if "corresponds to no data" in str(exc):
            raise DataError(f"{path}: no records (the task would be empty)") from None
        raise DataError(f"{path}: cannot load the Hugging Face dataset ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    """The exception and, for datasets' generic wrapper, the error it wraps."""
    cause = exc.__cause__ or exc.__context__
    text = f"{type(exc).__name__}: {exc}"
    if cause is not None and type(exc).__name__ == "DatasetGenerationError":
        text += f"; {type(cause).__name__}: {cause}"
    return text


def _load_hf(location: str, split: Optional[str], config: Optional[str] = None) -> Any:
    """Load a Dataset; a single file or a saved single Dataset *is* the split (name ignored).

    ``config`` is the dataset's config / subset (``sst2`` of ``glue``): passed to ``load_dataset``
    for a Hub name or a folder in the Hub's layout (a README.md listing ``configs``), or the
    sub-folder of a folder of saved datasets.
    """
    import datasets

    path = Path(location)
    if os.path.lexists(path) and not path.is_dir():
        check_regular_file(path)  # a named pipe, a socket, a broken link: named, never opened
    elif not path.exists() and _looks_local(location):
        raise DataError(f"{location}: file not found")
    if config is not None and path.is_file():
        raise DataError(f"{location}: a single file has no configs (hf_config: {config!r})")
    if config is not None and _is_saved_dataset(path):
        raise DataError(f"{location}: a single saved dataset has no configs (hf_config: {config!r})")
    if config is not None and path.is_dir() and any(_is_saved_dataset(p) for p in path.iterdir()):
        path = _saved_config(path, config)
        location, config = str(path), None
    if path.is_file():
        return _load_local_file(path)
    try:
        with quiet_datasets():
            if _is_saved_dataset(path):
                loaded = datasets.load_from_disk(str(path))
            else:
                loaded = datasets.load_dataset(location, config)
    except Exception as exc:  # noqa: BLE001 - any loader failure is the user's data to fix
        raise DataError(f"{location}: cannot load the Hugging Face dataset ({_reason(exc)})") from None
    if isinstance(loaded, datasets.Dataset):
        return loaded
    if split not in loaded:
        raise DataError(f"{location}: no split {split!r} (splits: {', '.join(loaded)})")
    return loaded[split]


def _label_names(dataset: Any, column: str) -> Optional[Callable[[int], str]]:
    """ClassLabel columns hold integers; their names are the real targets."""
    feature = dataset.features.get(column)
    return feature.int2str if hasattr(feature, "int2str") else None


#: The columns each record shape reads (the first: the prompt, which a template replaces).
_SHAPE_FIELDS = {"alpaca": ("instruction", "output"), "prompt": ("prompt", "answer"), "text": ("text",)}
_SHAPE_OPTIONAL = {"alpaca": ("input", "id"), "prompt": ("id",), "text": ("id",)}


def _check_columns(columns: set[str], shape: str, fields: Mapping[str, str], templated: bool) -> None:
    """Every column the shape reads exists, and every column ``fields`` names: a missing column is
    one message naming it and the mapping, not a "missing field" on record 0."""
    needed = list(_SHAPE_FIELDS[shape][1:] if templated and shape != "text" else _SHAPE_FIELDS[shape])
    needed += [name for name in _SHAPE_OPTIONAL[shape] if name in fields]
    shown = ", ".join(sorted(columns))
    used = {fields.get(c, c) for c in _SHAPE_FIELDS[shape] + _SHAPE_OPTIONAL[shape]}
    for canonical in needed:
        column = fields.get(canonical, canonical)
        if column in columns:
            continue
        if canonical in fields:
            raise DataError(
                f"missing column {column!r} (mapped from {canonical!r} by fields.{canonical}); the columns are {shown}"
            )
        free = sorted(columns - used)
        example = f", e.g. fields: {{{canonical}: {free[0]}}}" if free else ""
        raise DataError(f"missing column {canonical!r} (the columns are {shown}; name yours with fields.{canonical}{example})")


def _hf_rows(dataset: Any, fields: Mapping[str, str], templated: bool = False) -> tuple[list[dict[str, Any]], str]:
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
    _check_columns(columns, shape, fields, templated)
    target = {"alpaca": name("output"), "prompt": name("answer"), "text": name("text")}[shape]
    to_name = _label_names(dataset, target)
    try:
        rows = [dict(row) for row in dataset]
    except UnicodeDecodeError as err:  # pyarrow stores bad UTF-8 as is and fails on reading it
        raise DataError(f"holds text that is not UTF-8 ({err})") from None
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
        rows, shape = _hf_rows(dataset, fields, templated=template is not None)
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
