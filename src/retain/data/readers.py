"""Format readers: turn files, folders and datasets into :class:`Example` lists.

Every reader returns a :class:`ReadResult` (the examples plus the number of records it left out,
each reported), and every unusable file or record raises a :class:`DataError` whose message names
the file, the record index and id, and the field at fault: a user with a broken file of 10 000
records must be able to fix it without a debugger.

The label helpers (:func:`infer_labels`, :func:`filter_unknown_labels`) live here too, because
they decide what a reader's output means for scoring: real data holds records whose label is in
no option list, and those must be counted and reported, never scored and never a crash.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from retain.data.types import Example
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


def _read_text_file(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None


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
    text = _read_text_file(path).lstrip("\ufeff")  # json.loads rejects a byte-order mark
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

_ALPACA_FIELDS = ("instruction", "input", "output", "id")


def _alpaca_pair(fields: Mapping[str, str]) -> Callable[[Mapping[str, Any], _Where], tuple[str, str]]:
    def make(record: Mapping[str, Any], where: _Where) -> tuple[str, str]:
        instruction = _field_text(record, "instruction", fields, where)
        given = _field_text(record, "input", fields, where, required=False)
        # Plain concatenation: benchmark records already end with "\n" / "Answer:" where needed.
        return instruction + given, _field_text(record, "output", fields, where)

    return make


def read_alpaca(path: str | Path, fields: Optional[Mapping[str, str]] = None) -> ReadResult:
    """Read a JSON list / JSON Lines file of instruction, input (optional), output records.

    ``fields`` renames the canonical keys (instruction, input, output, id) to the file's names.
    The key of a record is its id, else ``<file stem>:<index>``.
    """
    path = Path(path)
    fields = _check_fields(fields, _ALPACA_FIELDS, "alpaca")
    records = load_records(path)
    return _examples_from_records(
        records, str(path), path.stem, _alpaca_pair(fields), fields.get("id", "id")
    )


# ---------------------------------------------------------------------------------------------
# olora: <root>/<Type>/<Dataset>/{train,dev,test}.json + labels.json + an instruction.

_OLORA_FIELDS = ("sentence", "label", "id")


def _olora_labels(folder: Path) -> Optional[list[str]]:
    path = folder / "labels.json"
    if not path.is_file():
        return None
    try:
        labels = json.loads(_read_text_file(path))
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{path}: expected a non-empty JSON list of label strings")
    return labels


def _olora_instruction_file(folder: Path) -> Optional[str]:
    text_file, json_file = folder / "instruction.txt", folder / "instructions.json"
    if text_file.is_file():
        return _read_text_file(text_file)
    if not json_file.is_file():
        return None
    try:
        value = json.loads(_read_text_file(json_file))
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
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: task folder not found")
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

_TRACE_FIELDS = ("prompt", "answer", "id")


def _trace_file(folder: Path, split: str) -> Path:
    """``train`` -> train.json; any other split: <split>.json, else eval.json, test.json, dev.json."""
    if split == "train":
        return folder / "train.json"
    candidates = list(dict.fromkeys([f"{split}.json", "eval.json", "test.json", "dev.json"]))
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: no evaluation file (looked for {', '.join(candidates)})")


def _prompt_answer(fields: Mapping[str, str]) -> Callable[[Mapping[str, Any], _Where], tuple[str, str]]:
    def make(record: Mapping[str, Any], where: _Where) -> tuple[str, str]:
        return _field_text(record, "prompt", fields, where), _field_text(record, "answer", fields, where)

    return make


def read_trace(folder: str | Path, split: str, fields: Optional[Mapping[str, str]] = None) -> ReadResult:
    """Read one split of a TRACE style task folder (records of prompt / answer)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: task folder not found")
    fields = _check_fields(fields, _TRACE_FIELDS, "trace")
    path = _trace_file(folder, split)
    stem = f"{folder.name}/{path.stem}"
    records = load_records(path)
    return _examples_from_records(records, str(path), stem, _prompt_answer(fields), fields.get("id", "id"))


# ---------------------------------------------------------------------------------------------
# text: raw text for continual pre-training.

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
        documents = [doc for doc in _paragraphs(_read_text_file(path)) if doc]
        kept = [Example("", doc, f"{path.stem}:{i}") for i, doc in enumerate(documents)]
        _require_records(path, kept)
        result = ReadResult(kept, source=str(path))  # blank runs are separators, not skipped docs
    result.raw_text = True
    return result


# ---------------------------------------------------------------------------------------------
# hf: a Hugging Face dataset (hub name, saved dataset folder, or a local json/jsonl/csv file).

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


@dataclass(frozen=True)
class Reader:
    """A format: its one-line description (for `retain list`) and how to read a source's part.

    ``read(source, part, eval_split, key)`` reads ``part`` ("train" or "eval") of a
    :class:`retain.config.DataSourceConfig`; ``key`` is the config path used in error messages.
    """

    description: str
    read: Callable[[Any, str, str, str], ReadResult]
    fields: tuple[str, ...]
    raw_text: bool = False


def _file_of(source: Any, part: str, key: str) -> str:
    """alpaca / text: ``train`` names the train file; ``eval`` (else ``path``) the eval file."""
    value = source.train if part == "train" else (source.eval or source.path)
    if not value:
        wanted = "train" if part == "train" else "eval"
        raise ConfigError(f"{key}.{wanted}: required for format {source.format} (a file path)")
    return value


def _folder_of(source: Any, key: str) -> str:
    if not source.path:
        raise ConfigError(f"{key}.path: required for format {source.format} (the task folder)")
    return source.path


def _split_of(source: Any, part: str, eval_split: str) -> str:
    """olora / trace: ``train`` / ``eval`` may rename the split files (e.g. eval: test)."""
    if part == "train":
        return source.train or "train"
    return source.eval or eval_split


def _read_alpaca_source(source: Any, part: str, eval_split: str, key: str) -> ReadResult:
    return read_alpaca(_file_of(source, part, key), source.fields)


def _read_olora_source(source: Any, part: str, eval_split: str, key: str) -> ReadResult:
    return read_olora(_folder_of(source, key), _split_of(source, part, eval_split), fields=source.fields)


def _read_trace_source(source: Any, part: str, eval_split: str, key: str) -> ReadResult:
    return read_trace(_folder_of(source, key), _split_of(source, part, eval_split), source.fields)


def _read_hf_source(source: Any, part: str, eval_split: str, key: str) -> ReadResult:
    """``train`` / ``eval`` may point at their own dataset or file; else ``path`` with the split."""
    own = source.train if part == "train" else source.eval
    location = own or source.path
    if not location:
        raise ConfigError(f"{key}.path: required for format hf (a dataset name or local path)")
    split = source.hf_train_split if part == "train" else source.hf_eval_split
    return read_hf(location, split, source.fields)


def _read_text_source(source: Any, part: str, eval_split: str, key: str) -> ReadResult:
    return read_text(_file_of(source, part, key), source.fields)


FORMATS: dict[str, Reader] = {
    "alpaca": Reader(
        "JSON list or JSON Lines of instruction/input/output records (train, eval: files)",
        _read_alpaca_source,
        _ALPACA_FIELDS,
    ),
    "olora": Reader(
        "O-LoRA task folder: {train,dev,test}.json of sentence/label, labels.json (path: folder)",
        _read_olora_source,
        _OLORA_FIELDS,
    ),
    "trace": Reader(
        "TRACE task folder: train.json and eval/test/dev.json of prompt/answer (path: folder)",
        _read_trace_source,
        _TRACE_FIELDS,
    ),
    "hf": Reader(
        "Hugging Face dataset: hub name, saved folder or local json/jsonl/csv (path, hf_*_split)",
        _read_hf_source,
        _HF_FIELDS,
    ),
    "text": Reader(
        "raw text for continual pre-training: .txt paragraphs or JSON/JSONL with text (perplexity)",
        _read_text_source,
        _TEXT_FIELDS,
        raw_text=True,
    ),
}


def read_source(source: Any, part: str, eval_split: str = "dev", key: str = "source") -> ReadResult:
    """Read ``part`` ("train" or "eval") of a DataSourceConfig with its format's reader."""
    if source.format not in FORMATS:
        raise ConfigError(f"{key}.format: {source.format!r} is not one of {', '.join(FORMATS)}")
    reader = FORMATS[source.format]
    unknown = sorted(set(source.fields or {}) - set(reader.fields))
    if unknown:
        raise ConfigError(
            f"{key}.fields: unknown key(s) {', '.join(unknown)} for format {source.format} "
            f"(known: {', '.join(reader.fields)})"
        )
    return FORMATS[source.format].read(source, part, eval_split, key)


# ---------------------------------------------------------------------------------------------
# Label sets.

_OPTION_LINE = re.compile(r"Option:\s*([^\n]*)")


def parse_option_list(text: str) -> Optional[list[str]]:
    """The labels of an ``Option: a, b, c.`` line, split on commas only.

    Never on " or ": "Science or Technology" is one label.
    """
    match = _OPTION_LINE.search(text)
    if not match:
        return None
    body = match.group(1).strip().rstrip(".").strip()
    options = [part.strip() for part in body.split(",") if part.strip()]
    return options or None


def _distinct(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _common_option_list(option_lists: Iterable[Optional[Sequence[str]]]) -> Optional[list[str]]:
    """The one option list every prompt shares (as a set), or None when absent or inconsistent."""
    found: Optional[list[str]] = None
    for options in option_lists:
        if not options:
            return None
        if found is None:
            found = list(options)
        elif set(options) != set(found):
            return None
    return found


def infer_labels(
    train: Sequence[Example], option_lists: Optional[Iterable[Optional[Sequence[str]]]] = None
) -> Optional[list[str]]:
    """The label set of a classification-style task, or None for free text.

    The distinct train targets (in order of first appearance) are the labels when there are at
    most :data:`MAX_LABELS` of them and they repeat (distinct <= len / 2). The ``Option:`` lists of
    the prompts (parsed from ``train`` when ``option_lists`` is None) are only a cross-check: a
    mismatch is logged, and a small train set that fails the repeat test still gets labels when
    all its targets are in the prompts' shared option list.
    """
    if not train:
        return None
    targets = _distinct(ex.target for ex in train)
    if option_lists is None:
        option_lists = (parse_option_list(ex.prompt) for ex in train)
    options = _common_option_list(option_lists)
    looks_like_labels = len(targets) <= MAX_LABELS and len(targets) <= len(train) / 2
    if looks_like_labels:
        if options is not None and set(options) != set(targets):
            logger.warning(
                "train labels %s differ from the instruction's option list %s; using the train labels",
                targets,
                options,
            )
        return targets
    if options is not None and set(targets) <= set(options):
        return options
    return None


def filter_unknown_labels(
    task_name: str, file: str | Path, examples: Sequence[Example], labels: Optional[Sequence[str]]
) -> tuple[list[Example], int]:
    """Drop records whose target is outside ``labels``; one DataWarning per file says which.

    Such records can never be predicted by a label-set scorer, so scoring them would silently
    lower accuracy; the caller adds the count to ``Task.skipped_records``.
    """
    if labels is None:
        return list(examples), 0
    allowed = set(labels)
    kept = [ex for ex in examples if ex.target in allowed]
    dropped = [ex for ex in examples if ex.target not in allowed]
    if dropped:
        shown = ", ".join(f"{ex.key} (output {ex.target!r})" for ex in dropped[:_SHOWN_IN_WARNING])
        more = f" and {len(dropped) - _SHOWN_IN_WARNING} more" if len(dropped) > _SHOWN_IN_WARNING else ""
        warnings.warn(
            f"{file}: {_records(len(dropped))} of task {task_name!r} with an output outside the "
            f"label set ({', '.join(labels)}) left out of scoring: {shown}{more}",
            DataWarning,
            stacklevel=2,
        )
    return kept, len(dropped)


__all__ = [
    "FORMATS",
    "MAX_LABELS",
    "DataWarning",
    "ReadResult",
    "Reader",
    "filter_unknown_labels",
    "infer_labels",
    "load_records",
    "parse_option_list",
    "read_alpaca",
    "read_hf",
    "read_olora",
    "read_source",
    "read_text",
    "read_trace",
]
