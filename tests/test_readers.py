"""Format readers: valid inputs, every error message, label inference and unknown-label filtering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retain.config import DataSourceConfig
from retain.data.labels import filter_unknown_labels, infer_labels, parse_option_list
from retain.data.readers import (
    FORMATS,
    DataWarning,
    load_records,
    read_alpaca,
    read_hf,
    read_olora,
    read_source,
    read_text,
    read_trace,
)
from retain.data.types import Example
from retain.errors import ConfigError, DataError

INSTRUCTION = "Topic? Option: World, Science or Technology.\n"
RECORDS = [
    {"id": "t_0", "instruction": INSTRUCTION, "input": "Mars rover\nAnswer:", "output": "Science or Technology"},
    {"id": "t_1", "instruction": INSTRUCTION, "input": "Elections\nAnswer:", "output": "World"},
]


def write_json(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# alpaca


def test_alpaca_json_list(tmp_path: Path) -> None:
    result = read_alpaca(write_json(tmp_path / "train" / "agnews.json", RECORDS))
    assert result.skipped == 0
    first = result.examples[0]
    assert first.prompt == "Topic? Option: World, Science or Technology.\nMars rover\nAnswer:"
    assert first.target == "Science or Technology"
    assert [ex.key for ex in result.examples] == ["t_0", "t_1"]


def test_alpaca_jsonl_without_ids_and_input(tmp_path: Path) -> None:
    records = [
        {"instruction": "Say hi.", "output": "hi"},
        {"instruction": "Say yo.", "input": None, "output": "yo"},
    ]
    result = read_alpaca(write_jsonl(tmp_path / "greet.json", records))  # JSONL despite the suffix
    assert [(ex.prompt, ex.target, ex.key) for ex in result.examples] == [
        ("Say hi.", "hi", "greet:0"),
        ("Say yo.", "yo", "greet:1"),
    ]


def test_alpaca_field_remapping(tmp_path: Path) -> None:
    records = [{"uid": 7, "question": "Q: 2+2?", "context": " A:", "answer": "4"}]
    fields = {"instruction": "question", "input": "context", "output": "answer", "id": "uid"}
    result = read_alpaca(write_jsonl(tmp_path / "math.jsonl", records), fields)
    assert result.examples == [Example("Q: 2+2? A:", "4", "7")]


def test_alpaca_unknown_field_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fields: unknown key"):
        read_alpaca(write_json(tmp_path / "a.json", RECORDS), {"question": "q"})


def test_missing_field_names_file_record_and_field(tmp_path: Path) -> None:
    records = RECORDS + [{"id": "t_2", "instruction": "x", "input": "y"}]
    path = write_json(tmp_path / "train" / "agnews.json", records)
    with pytest.raises(DataError) as info:
        read_alpaca(path)
    message = str(info.value)
    assert "train/agnews.json record 2 (id t_2): missing field 'output'" in message


def test_missing_remapped_field_names_both_names(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.json", [{"instruction": "x"}])
    with pytest.raises(DataError, match=r"record 0: missing field 'answer' \(mapped from 'output'\)"):
        read_alpaca(path, {"output": "answer"})


def test_invalid_json_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"instruction": "x", "output": "y"},\n  {"instruction": oops}\n]')
    with pytest.raises(DataError, match=r"broken\.json: not valid JSON \(line 3, column 19"):
        read_alpaca(path)


def test_invalid_json_lines_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"instruction": "x", "output": "y"}\n\n{"instruction": "x", "output": }\n')
    with pytest.raises(DataError, match=r"broken\.jsonl: not valid JSON \(line 3, column"):
        read_alpaca(path)


@pytest.mark.parametrize(
    "content, kind",
    [
        ('{"records": []}', "an object"),
        ('{\n  "instruction": "x"\n}', "an object"),
        ('"text"', "a str"),
        ("3", "a int"),
    ],
)
def test_top_level_not_a_list(tmp_path: Path, content: str, kind: str) -> None:
    path = tmp_path / "odd.json"
    path.write_text(content)
    with pytest.raises(DataError, match=f"odd.json: the top level is {kind}; expected a list"):
        load_records(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.json: file not found"):
        read_alpaca(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "content, message", [("", "the file is empty"), ("  \n", "the file is empty"), ("[]", "no records")]
)
def test_empty_file_or_list(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "empty.json"
    path.write_text(content)
    with pytest.raises(DataError, match=f"empty.json: {message}"):
        read_alpaca(path)


def test_record_not_an_object(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.json", [RECORDS[0], ["x", "y"]])
    with pytest.raises(DataError, match="a.json record 1: expected an object"):
        read_alpaca(path)


def test_non_string_field(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.json", [{"id": "r0", "instruction": "x", "output": 3}])
    with pytest.raises(DataError, match=r"a.json record 0 \(id r0\): field 'output' must be a string, got int"):
        read_alpaca(path)


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.json", [RECORDS[0], RECORDS[0]])
    with pytest.raises(DataError, match=r"record 1 \(id t_0\): duplicate id \(first used by record 0\)"):
        read_alpaca(path)


def test_empty_targets_are_skipped_and_counted(tmp_path: Path) -> None:
    records = RECORDS + [{"id": "blank", "instruction": "x", "output": "  "}]
    with pytest.warns(DataWarning, match="1 record with an empty target left out: blank"):
        result = read_alpaca(write_json(tmp_path / "a.json", records))
    assert result.skipped == 1 and len(result.examples) == 2


# ---------------------------------------------------------------------------------------------
# olora / trace / text / hf


def make_olora_task(root: Path, labels: list[str] | None = ("positive", "negative")) -> Path:
    folder = root / "SC" / "imdb"
    rows = [{"sentence": f"review {i}", "label": ("positive", "negative")[i % 2]} for i in range(4)]
    for split in ("train", "dev", "test"):
        write_json(folder / f"{split}.json", rows)
    if labels:
        write_json(folder / "labels.json", list(labels))
    return folder


def test_olora_default_instruction(tmp_path: Path) -> None:
    folder = make_olora_task(tmp_path)
    result = read_olora(folder, "train")
    assert result.labels == ["positive", "negative"]
    first = result.examples[0]
    assert first.prompt == "Choose one from the option. Option: positive, negative\nInput: review 0\nAnswer:"
    assert first.target == "positive"
    assert first.key == "imdb/train:0"
    assert read_olora(folder, "test").source.endswith("test.json")


def test_olora_instruction_sources(tmp_path: Path) -> None:
    folder = make_olora_task(tmp_path)
    write_json(folder / "instructions.json", ["What is the sentiment?", "unused"])
    assert read_olora(folder, "dev").examples[0].prompt.startswith("What is the sentiment?\nInput: review 0")
    (folder / "instruction.txt").write_text("Sentiment?\n")
    assert read_olora(folder, "dev").examples[0].prompt.startswith("Sentiment?\nInput:")
    assert read_olora(folder, "dev", instruction="Given: ").examples[0].prompt.startswith("Given: \nInput:")


def test_olora_without_labels_or_instruction(tmp_path: Path) -> None:
    folder = make_olora_task(tmp_path, labels=None)
    with pytest.raises(DataError, match="no labels.json"):
        read_olora(folder, "train")
    assert read_olora(folder, "train", instruction="Classify.").labels is None


def test_olora_missing_label_field(tmp_path: Path) -> None:
    folder = make_olora_task(tmp_path)
    write_json(folder / "dev.json", [{"sentence": "x"}])
    with pytest.raises(DataError, match="dev.json record 0: missing field 'label'"):
        read_olora(folder, "dev")


def test_trace_layout(tmp_path: Path) -> None:
    folder = tmp_path / "TRACE" / "ScienceQA"
    write_json(folder / "train.json", [{"prompt": "Q1?", "answer": "A"}, {"prompt": "Q2?", "answer": "B"}])
    write_json(folder / "eval.json", [{"prompt": "Q3?", "answer": "C"}])
    train = read_trace(folder, "train")
    assert [(ex.prompt, ex.target, ex.key) for ex in train.examples] == [
        ("Q1?", "A", "ScienceQA/train:0"),
        ("Q2?", "B", "ScienceQA/train:1"),
    ]
    assert read_trace(folder, "dev").source.endswith("eval.json")
    write_json(folder / "test.json", [{"prompt": "Q4?", "answer": "D"}])
    assert read_trace(folder, "test").examples[0].target == "D"
    with pytest.raises(DataError, match="missing field 'answer'"):
        write_json(folder / "train.json", [{"prompt": "Q"}])
        read_trace(folder, "train")


def test_trace_without_eval_file(tmp_path: Path) -> None:
    folder = tmp_path / "task"
    write_json(folder / "train.json", [{"prompt": "Q", "answer": "A"}])
    with pytest.raises(DataError, match="no evaluation file"):
        read_trace(folder, "dev")


def test_text_paragraphs_and_jsonl(tmp_path: Path) -> None:
    txt = tmp_path / "corpus.txt"
    txt.write_text("First doc\nline two.\n\n\n  \nSecond doc.\n")
    result = read_text(txt)
    assert result.raw_text
    assert [(ex.prompt, ex.target, ex.key) for ex in result.examples] == [
        ("", "First doc\nline two.", "corpus:0"),
        ("", "Second doc.", "corpus:1"),
    ]
    jsonl = write_jsonl(tmp_path / "docs.jsonl", [{"text": "a b c"}, {"text": "d e"}])
    assert [ex.target for ex in read_text(jsonl).examples] == ["a b c", "d e"]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"body": "x"}])
    with pytest.raises(DataError, match="bad.jsonl record 0: missing field 'text'"):
        read_text(bad)


def test_hf_saved_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict(
        {"question": ["2+2?", "3+3?"], "answer": ["4", "6"], "id": ["q0", "q1"]}
    ).save_to_disk(str(folder))
    result = read_hf(str(folder), "validation", {"prompt": "question"})
    got = [(ex.prompt, ex.target, ex.key) for ex in result.examples]
    assert got == [("2+2?", "4", "q0"), ("3+3?", "6", "q1")]
    assert not result.raw_text


def test_hf_saved_dataset_dict_split_and_class_labels(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"instruction": datasets.Value("string"), "output": datasets.ClassLabel(names=["no", "yes"])}
    )
    train = datasets.Dataset.from_dict({"instruction": ["a?", "b?"], "output": [1, 0]}, features=features)
    folder = tmp_path / "dict"
    datasets.DatasetDict({"train": train}).save_to_disk(str(folder))
    assert [ex.target for ex in read_hf(str(folder), "train").examples] == ["yes", "no"]
    with pytest.raises(DataError, match="no split 'validation' \\(splits: train\\)"):
        read_hf(str(folder), "validation")


def test_hf_local_jsonl_and_text(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    path = write_jsonl(tmp_path / "qa.jsonl", [{"instruction": "Hi ", "input": "there", "output": "hello"}])
    result = read_hf(str(path), "train")
    assert [(ex.prompt, ex.target) for ex in result.examples] == [("Hi there", "hello")]
    docs = write_jsonl(tmp_path / "docs.jsonl", [{"text": "some words"}])
    assert read_hf(str(docs)).raw_text
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"question": "x"}])
    with pytest.raises(DataError, match="odd.jsonl: columns question hold none of output / answer / text"):
        read_hf(str(odd))


def test_hf_csv_columns_a_template_replaces_are_not_required(tmp_path: Path) -> None:
    """The column check asks for the prompt column only when no template builds the prompt."""
    pytest.importorskip("datasets")
    from retain.data.templates import PromptTemplate

    path = tmp_path / "qa.csv"
    path.write_text("question,answer\n2+2?,4\n3+3?,6\n", encoding="utf-8")
    with pytest.raises(DataError, match="qa.csv: missing column 'prompt' .*fields.prompt, e.g. fields: {prompt: question}"):
        read_hf(str(path))
    result = read_hf(str(path), template=PromptTemplate("Q: {question}\nA:", "template"))
    assert [(ex.prompt, ex.target) for ex in result.examples] == [("Q: 2+2?\nA:", "4"), ("Q: 3+3?\nA:", "6")]
    assert [ex.prompt for ex in read_hf(str(path), fields={"prompt": "question"}).examples] == ["2+2?", "3+3?"]


def test_hf_reading_leaves_the_datasets_settings_as_they_were(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from retain.data.readers.hf import quiet_datasets

    bars, level = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    with quiet_datasets():
        assert not datasets.is_progress_bar_enabled()
    read_hf(str(write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "a", "answer": "b"}])))
    assert (datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()) == (bars, level)


def test_read_source_dispatch_and_errors(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.json", RECORDS)
    source = DataSourceConfig(name="a", format="alpaca", train=str(path), eval=str(path))
    assert len(read_source(source, "train").examples) == 2
    with pytest.raises(ConfigError, match=r"stream.tasks\[0\].train: required for format alpaca"):
        read_source(DataSourceConfig(name="a", eval=str(path)), "train", key="stream.tasks[0]")
    with pytest.raises(ConfigError, match=r"x.format: 'csv' is not one of alpaca"):
        read_source(DataSourceConfig(format="csv"), "train", key="x")
    with pytest.raises(ConfigError, match=r"x.fields: unknown key\(s\) sentence for format alpaca"):
        read_source(DataSourceConfig(train=str(path), fields={"sentence": "s"}), "train", key="x")
    folder = make_olora_task(tmp_path)
    olora = DataSourceConfig(name="imdb", format="olora", path=str(folder))
    assert read_source(olora, "eval", eval_split="test").source.endswith("test.json")
    assert set(FORMATS) == {"alpaca", "olora", "trace", "hf", "superni", "text"}
    assert all(reader.description for reader in FORMATS.values())


# ---------------------------------------------------------------------------------------------
# labels


def test_parse_option_list_keeps_or_inside_labels() -> None:
    text = "Topic? Choose one from the option. Option: World, Sports, Business, Science or Technology.\nText: x"
    assert parse_option_list(text) == ["World", "Sports", "Business", "Science or Technology"]
    assert parse_option_list("no options here") is None


def test_infer_labels_on_label_like_targets() -> None:
    prompt = "Option: World, Sports, Science or Technology.\n"
    targets = ["Sports", "World", "Science or Technology", "World", "Sports", "World"]
    train = [Example(prompt, t, str(i)) for i, t in enumerate(targets)]
    assert infer_labels(train) == ["Sports", "World", "Science or Technology"]


def test_infer_labels_on_free_text() -> None:
    train = [Example("Summarise:", f"summary number {i}", str(i)) for i in range(20)]
    assert infer_labels(train) is None
    many = [Example("", f"class {i % 60}", str(i)) for i in range(600)]
    assert infer_labels(many) is None  # more than 50 distinct targets
    assert infer_labels([]) is None


def test_infer_labels_uses_option_list_for_tiny_train() -> None:
    prompt = "Option: good, bad, neutral.\n"
    train = [Example(prompt, "good", "0"), Example(prompt, "bad", "1")]
    assert infer_labels(train) == ["good", "bad", "neutral"]
    assert infer_labels(train, option_lists=[None]) is None


def test_filter_unknown_labels_counts_and_warns_once() -> None:
    targets = ["neutral", "-", "entailment", "-", "-", "-"]
    examples = [Example("p", t, f"MNLI_{i}") for i, t in enumerate(targets)]
    with pytest.warns(DataWarning) as record:
        kept, skipped = filter_unknown_labels("mnli", "dev/mnli.json", examples, ["neutral", "entailment"])
    assert skipped == 4
    assert [ex.target for ex in kept] == ["neutral", "entailment"]
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("dev/mnli.json: 4 records of task 'mnli'")
    assert "MNLI_1 (output '-'), MNLI_3 (output '-'), MNLI_4 (output '-') and 1 more" in message


def test_filter_unknown_labels_without_labels_keeps_all() -> None:
    examples = [Example("p", "anything", "0")]
    assert filter_unknown_labels("t", "f.json", examples, None) == (examples, 0)
