"""The format registry: which reader reads a DataSourceConfig, and with which field names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from retain.errors import ConfigError
from retain.data.readers.records import ReadResult
from retain.data.readers.alpaca import _ALPACA_FIELDS, read_alpaca
from retain.data.readers.olora import _OLORA_FIELDS, read_olora
from retain.data.readers.trace import _TRACE_FIELDS, read_trace
from retain.data.readers.text import _TEXT_FIELDS, read_text
from retain.data.readers.hf import _HF_FIELDS, read_hf
from retain.data.readers.superni import _SUPERNI_FIELDS, read_superni
from retain.data.templates import PromptTemplate


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
    #: whether ``template`` (a prompt format string over the record's fields) applies
    templates: bool = False


def _template(source: Any, key: str) -> Optional[PromptTemplate]:
    return PromptTemplate(source.template, f"{key}.template") if source.template else None


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
    return read_alpaca(_file_of(source, part, key), source.fields, _template(source, key))


def _read_olora_source(source: Any, part: str, eval_split: str, key: str) -> ReadResult:
    return read_olora(_folder_of(source, key), _split_of(source, part, eval_split), fields=source.fields)


def _read_trace_source(source: Any, part: str, eval_split: str, key: str) -> ReadResult:
    return read_trace(_folder_of(source, key), _split_of(source, part, eval_split), source.fields, _template(source, key))


def _read_hf_source(source: Any, part: str, eval_split: str, key: str) -> ReadResult:
    """``train`` / ``eval`` may point at their own dataset or file; else ``path`` with the split."""
    own = source.train if part == "train" else source.eval
    location = own or source.path
    if not location:
        raise ConfigError(f"{key}.path: required for format hf (a dataset name or local path)")
    split = source.hf_train_split if part == "train" else source.hf_eval_split
    return read_hf(location, split, source.fields, source.hf_config, _template(source, key))


def _read_superni_source(source: Any, part: str, eval_split: str, key: str) -> ReadResult:
    return read_superni(_file_of(source, part, key), source.fields)


def _read_text_source(source: Any, part: str, eval_split: str, key: str) -> ReadResult:
    return read_text(_file_of(source, part, key), source.fields)


FORMATS: dict[str, Reader] = {
    "alpaca": Reader(
        "JSON list or JSON Lines of instruction/input/output records (train, eval: files)",
        _read_alpaca_source,
        _ALPACA_FIELDS,
        templates=True,
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
        templates=True,
    ),
    "hf": Reader(
        "Hugging Face dataset: hub name, Hub-layout or saved folder, local json/jsonl/csv (path, hf_config, hf_*_split)",
        _read_hf_source,
        _HF_FIELDS,
        templates=True,
    ),
    "superni": Reader(
        "Super-NaturalInstructions task file: Definition, Positive Examples, Instances (train, eval: files)",
        _read_superni_source,
        _SUPERNI_FIELDS,
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
    if source.template and not reader.templates:
        with_templates = ", ".join(name for name, r in FORMATS.items() if r.templates)
        raise ConfigError(f"{key}.template: format {source.format} builds its own prompts (templates: {with_templates})")
    if getattr(source, "hf_config", None) and source.format != "hf":
        raise ConfigError(f"{key}.hf_config: only for format hf (got format {source.format})")
    return reader.read(source, part, eval_split, key)
