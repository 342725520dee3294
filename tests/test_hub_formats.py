"""Data in the Hub's layout: dataset configs, SuperNI task files, prompt and chat templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from retain.cli import main
from retain.config import DataSourceConfig, StreamConfig
from retain.data.benchmarks import build_stream
from retain.data.chat import configure_chat_template, render_chat
from retain.data.collate import Encoder
from retain.data.readers import read_hf, read_source, read_superni
from retain.data.templates import PromptTemplate
from retain.data.tokenizer import build_word_tokenizer
from retain.data.types import Example, Task
from retain.errors import ConfigError, DataError
from tests.conftest import tiny_config

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _hub_folder(root: Path) -> Path:
    """A dataset folder in the Hub's layout: README.md metadata names two configs."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: sst2\n  data_files:\n  - split: train\n    path: sst2/train.jsonl\n"
        "  - split: validation\n    path: sst2/validation.jsonl\n"
        "- config_name: cola\n  data_files:\n  - split: train\n    path: cola/train.jsonl\n---\n"
    )
    for config, split, count in (("sst2", "train", 12), ("sst2", "validation", 4), ("cola", "train", 3)):
        (root / config).mkdir(exist_ok=True)
        rows = [{"sentence": f"{config} film {i}", "label": ("good", "bad")[i % 2]} for i in range(count)]
        (root / config / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return root


def _superni_task(path: Path, instances: int = 6) -> Path:
    task = {
        "Definition": ["Answer with the colour of the object."],
        "Positive Examples": [{"input": f"grass {i}", "output": "green", "explanation": "."} for i in range(3)],
        "Instances": [{"id": f"task1_{i}", "input": f"thing {i}", "output": [("red", "blue")[i % 2], "x"]}
                      for i in range(instances)],
    }
    path.write_text(json.dumps(task))
    return path


def test_hf_config_of_a_hub_layout_folder_and_of_saved_datasets(tmp_path: Path) -> None:
    import datasets

    folder = _hub_folder(tmp_path / "glue")
    template = PromptTemplate("Review: {sentence}\nSentiment:")
    result = read_hf(str(folder), "train", {"output": "label"}, config="sst2", template=template)
    assert len(result.examples) == 12 and result.examples[0].prompt == "Review: sst2 film 0\nSentiment:"
    assert result.examples[1].target == "bad"
    assert len(read_hf(str(folder), "train", {"output": "label"}, config="cola", template=template).examples) == 3
    with pytest.raises(DataError, match="cannot load .*'nope'"):
        read_hf(str(folder), "train", {"output": "label"}, config="nope")

    saved = tmp_path / "saved"
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["bad", "good"])})
    data = {"sentence": ["a", "b", "c"], "label": [0, 1, 1]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(data, features=features)}).save_to_disk(str(saved / "sst2"))
    named = read_hf(str(saved), "train", {"output": "label"}, config="sst2", template=PromptTemplate("{sentence} ->"))
    assert [(e.prompt, e.target) for e in named.examples] == [("a ->", "bad"), ("b ->", "good"), ("c ->", "good")]
    with pytest.raises(DataError, match="no config 'cola' \\(saved configs: sst2\\)"):
        read_hf(str(saved), "train", {"output": "label"}, config="cola")


def test_hf_config_from_the_stream_config_names_the_task(tmp_path: Path) -> None:
    folder = _hub_folder(tmp_path / "glue")
    source = {"format": "hf", "path": str(folder), "hf_config": "sst2", "fields": {"output": "label"},
              "template": "Review: {sentence}\nSentiment:"}
    (task,) = build_stream(StreamConfig(benchmark="custom", tasks=[source]), seed=0).tasks
    assert task.name == "sst2" and task.labels == ["good", "bad"] and len(task.eval) == 4
    with pytest.raises(ConfigError, match=r"stream.tasks\[0\].hf_config: only for format hf"):
        build_stream(StreamConfig(benchmark="custom", tasks=[{"train": "x.json", "hf_config": "sst2"}]), seed=0)


def test_superni_task_file(tmp_path: Path) -> None:
    path = _superni_task(tmp_path / "task1_colours.json")
    result = read_superni(path)
    first = result.examples[0]
    assert first.key == "task1_0" and first.target == "red" and len(result.examples) == 6
    assert first.prompt.startswith("Definition: Answer with the colour of the object.\n\nPositive Example 1 -\n")
    assert "Positive Example 2 -" in first.prompt and "Positive Example 3" not in first.prompt
    assert first.prompt.endswith("Now complete the following example -\nInput: thing 0\nOutput:")
    broken = json.loads(path.read_text())
    broken["Instances"][2]["output"] = []
    path.write_text(json.dumps(broken))
    with pytest.raises(DataError, match=r"Instances record 2 \(id task1_2\): field 'output' must be a non-empty list"):
        read_superni(path)
    path.write_text(json.dumps({"Instances": []}))
    with pytest.raises(DataError, match="missing field 'Definition'"):
        read_superni(path)


def test_prompt_template_errors_name_the_key_and_the_record(tmp_path: Path) -> None:
    for bad, message in [("Q: {question", "not a valid format string"), ("Q: {}", "needs a record field name"),
                         ("Q: {q!r}", "plain field name"), ("", "non-empty")]:
        with pytest.raises(ConfigError, match=f"stream.tasks\\[0\\].template: .*{message}"):
            PromptTemplate(bad, "stream.tasks[0].template")
    data = tmp_path / "qa.json"
    data.write_text(json.dumps([{"question": "2+2", "output": "4"}, {"query": "3+3", "output": "6"}]))
    source = DataSourceConfig(train=str(data), template="Q: {question}\nA:")
    with pytest.raises(DataError, match=r"qa.json record 1: template field 'question' is not in the record \(fields: output, query\)"):
        read_source(source, "train")
    with pytest.raises(ConfigError, match=r"source.template: format superni builds its own prompts"):
        read_source(DataSourceConfig(format="superni", train=str(data), template="{x}"), "train")


def test_chat_template_renders_each_causal_prompt(tmp_path: Path) -> None:
    tokenizer = build_word_tokenizer(["<|user|> what colour ? <|assistant|> red"])
    with pytest.raises(ConfigError, match="model.chat_template: the tokenizer has no chat template"):
        configure_chat_template(tokenizer, "tokenizer", "causal")
    with pytest.raises(ConfigError, match="chat templates are for causal models"):
        configure_chat_template(tokenizer, CHAT, "seq2seq")
    with pytest.raises(ConfigError, match="does not render"):
        configure_chat_template(tokenizer, "{% for m in messages %}", "causal")
    assert configure_chat_template(tokenizer, None, "causal") is False
    assert configure_chat_template(tokenizer, CHAT, "causal") and configure_chat_template(tokenizer, "tokenizer", "causal")
    assert render_chat(tokenizer, "what colour ?") == "<|user|> what colour ? <|assistant|>"
    task = Task("t", [], [], labels=None)
    plain = Encoder(tokenizer, "causal", [], 32, 8).encode(Example("what colour ?", "red"), 0, task)
    chat = Encoder(tokenizer, "causal", [], 32, 8, chat=True).encode(Example("what colour ?", "red"), 0, task)
    expected = tokenizer("<|user|> what colour ? <|assistant|>", add_special_tokens=False)["input_ids"]
    assert chat.input_ids[: chat.prompt_length] == expected != plain.input_ids[: plain.prompt_length]
    assert chat.input_ids[chat.prompt_length :] == plain.input_ids[plain.prompt_length :]


def test_hub_config_superni_templates_and_chat_from_the_cli(tmp_path: Path) -> None:
    folder = _hub_folder(tmp_path / "glue")
    config = tiny_config(
        tmp_path,
        stream={"benchmark": "custom", "tasks": [
            {"format": "hf", "path": str(folder), "hf_config": "sst2", "fields": {"output": "label"},
             "template": "Review: {sentence}\nSentiment:"},
            {"format": "superni", "train": str(_superni_task(tmp_path / "task1_colours.json")),
             "eval": str(tmp_path / "task1_colours.json")},
        ]},
    )
    config["model"]["chat_template"] = CHAT
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--quiet"]) == 0
    run_dir = tmp_path / "runs" / "run"
    assert json.loads((run_dir / "matrix.json").read_text())["task_names"] == ["sst2", "task1_colours"]
    predictions = sorted((run_dir / "predictions").rglob("*.json*"))
    assert predictions, "no predictions written"
    config["model"]["chat_template"] = "tokenizer"
    config["name"] = "again"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--quiet"]) == 2
