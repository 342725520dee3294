"""Shared fixtures: tiny configs on built-in models and the generated stream (no network)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "cl_benchmark"

BUILTIN_BY_KIND = {"causal": "builtin:tiny-llama", "seq2seq": "builtin:tiny-t5", "classifier": "builtin:tiny-bert"}


def tiny_config(tmp_path: Path, name: str = "run", model: str = "builtin:tiny-llama", methods: Any = None, **sections: Any) -> dict[str, Any]:
    """A run config small enough for a unit test (2 tasks, a few dozen examples)."""
    config: dict[str, Any] = {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "seed": 7,
        "model": {"name_or_path": model},
        "stream": {"benchmark": "demo", "demo_tasks": 2, "demo_train_size": 32, "demo_eval_size": 12},
        "train": {"epochs": 1, "batch_size": 8, "lr": 3e-3},
        "eval": {"batch_size": 16},
        "methods": methods or ["seqft"],
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    return config


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("benchmark data (../shared/data/cl_benchmark) not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def traced_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One 2-task run with three methods that each make a pass over data (EWC's Fisher, LwF's and
    DER's teacher outputs), recorded to steps.jsonl and steps.csv every 2 steps: shared by the
    tracker and progress tests, which read its files."""
    import retain

    config = tiny_config(
        tmp_path_factory.mktemp("traced"), name="traced",
        methods=[{"name": "ewc", "lam": 100.0}, "lwf", {"name": "der", "ratio": 0.25}],
        train={"logging_steps": 2, "report_to": ["jsonl", "csv"]},
    )
    return retain.run(config, quiet=True)
