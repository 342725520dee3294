"""A local lm-eval task folder and a saved tiny model for the lm-eval tests (no Hub). Not a test module.

lm-eval reads its real tasks from the Hugging Face Hub; these tasks are YAML files over local
JSON lines (``dataset_path: json`` with ``data_files``), one per request type lm-eval has:

* ``tiny_mc``: multiple choice (log-likelihood of each choice), metric ``acc``;
* ``tiny_gen``: greedy generation until a newline, metrics ``ter`` (translation edit rate, lower
  is better and above 0 for any answer that is not the reference, so that a comparison of two
  runs' generations means something even on an untrained model) and ``exact_match``;
* ``tiny_ppl``: log-likelihood of a continuation, metric ``perplexity`` (lower is better,
  unbounded: kept unscaled), which moves with any change of the weights.

The model is retain's ``tiny-llama`` config with a word tokenizer over the demo stream's texts
and these tasks' texts, saved with ``save_pretrained`` so that lm-eval's own command line can
load the same weights (``--model_args pretrained=<dir>``).

    python tests/lm_eval_fixture.py ROOT     # writes ROOT/model and ROOT/tasks
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: the demo stream the tests train on (its texts go into the tokenizer)
DEMO = {"benchmark": "demo", "demo_tasks": 2, "demo_train_size": 24, "demo_eval_size": 6}
TASKS = ("tiny_mc", "tiny_gen", "tiny_ppl")


def _docs() -> dict[str, list[dict[str, Any]]]:
    return {
        "mc": [{"question": f"is {a} bigger than {b} ?", "choices": ["yes", "no"], "label": int(a <= b)}
               for a in range(5) for b in range(4)],
        "gen": [{"question": f"what is {a} plus {b} ?", "answer": str(a + b)} for a in range(4) for b in range(4)],
        "ppl": [{"context": f"the colour of item {a} is", "continuation": f" {c}"}
                for a in range(4) for c in ("red", "blue", "green")],
    }


def _yaml(task: str, data: Path, body: str) -> str:
    return (f"task: {task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
            f"test_split: test\nfewshot_split: test\n{body}metadata:\n  version: 1.0\n")


def write_tasks(folder: Path) -> Path:
    """The three task YAML files and their data in ``folder``; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, docs in _docs().items():
        (folder / f"{kind}.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n", encoding="utf-8")
    (folder / "tiny_mc.yaml").write_text(_yaml("tiny_mc", folder / "mc.jsonl", (
        "output_type: multiple_choice\ndoc_to_text: \"Question: {{question}} Answer:\"\n"
        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: label\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")))
    (folder / "tiny_gen.yaml").write_text(_yaml("tiny_gen", folder / "gen.jsonl", (
        "output_type: generate_until\ndoc_to_text: \"Question: {{question}} Answer:\"\n"
        "doc_to_target: \"{{answer}}\"\n"
        "generation_kwargs:\n  until: [\"\\n\"]\n  do_sample: false\n  max_gen_toks: 3\n"
        "metric_list:\n  - metric: ter\n    aggregation: ter\n    higher_is_better: false\n"
        "  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n")))
    (folder / "tiny_ppl.yaml").write_text(_yaml("tiny_ppl", folder / "ppl.jsonl", (
        "output_type: loglikelihood\ndoc_to_text: \"{{context}}\"\ndoc_to_target: \"{{continuation}}\"\n"
        "metric_list:\n  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n")))
    return folder


def write_model(folder: Path, seed: int = 0) -> Path:
    """A tiny Llama with a word tokenizer covering the demo stream and the tasks, saved in ``folder``."""
    import torch
    from transformers import LlamaForCausalLM

    from retain.config import StreamConfig
    from retain.data.benchmarks import build_stream
    from retain.data.tokenizer import build_word_tokenizer
    from retain.models.builtin import builtin_config
    from retain.models.loading import stream_texts

    texts = stream_texts(build_stream(StreamConfig(**DEMO), 7))
    docs = _docs()
    texts += [f"Question: {d['question']} Answer: {c}" for d in docs["mc"] for c in d["choices"]]
    texts += [f"Question: {d['question']} Answer: {d['answer']}" for d in docs["gen"]]
    texts += [f"{d['context']}{d['continuation']}" for d in docs["ppl"]]
    tokenizer = build_word_tokenizer(texts)
    _, config = builtin_config("tiny-llama", tokenizer)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def general_entries(limit: int = 8) -> list[dict[str, Any]]:
    """``stream.general`` over the three tasks (the tasks' folder comes from stream.lm_eval_include_path)."""
    return [
        {"lm_eval": "tiny_mc", "num_fewshot": 1, "limit": limit, "batch_size": 4},
        # no metric: the first of the task's metric_list (ter); no batch size: eval.batch_size
        {"lm_eval": "tiny_gen", "name": "gen", "num_fewshot": 1, "limit": limit},
        {"lm_eval": "tiny_ppl", "num_fewshot": 1, "limit": limit},
    ]


if __name__ == "__main__":
    root = Path(sys.argv[1])
    write_tasks(root / "tasks")
    write_model(root / "model")


def run_config(
    root: Path, out: Path, name: str = "lm-eval", grad_accum: int = 2, method: str = "seqft", **sections: Any
) -> dict[str, Any]:
    """A 2-task demo run on the saved model with the three lm-eval sets as general sets.

    Batch 4 with ``grad_accum`` 2 in one process trains as two processes with batch 4 each and
    ``grad_accum`` 1 (the same global batch), so the two launches give the same rows.
    """
    config: dict[str, Any] = {
        "name": name, "output_dir": str(out), "seed": 7,
        "model": {"name_or_path": str(root / "model")},
        "stream": {**DEMO, "general": general_entries(), "lm_eval_include_path": str(root / "tasks")},
        "train": {"epochs": 1, "batch_size": 4, "grad_accum": grad_accum, "lr": 3e-3},
        "eval": {"batch_size": 4},
        "methods": [method],
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config
