"""train.tf32: each run sets TensorFloat-32 for its own duration and leaves the process as it found it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest
import torch

import retain
from retain.engine import runner
from retain.engine.matmul_precision import tf32_matmuls
from tests.conftest import tiny_config


def flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.fixture(autouse=True)
def known_flags() -> Any:
    """Start every test from full fp32 matmuls with cuDNN TF32 on (PyTorch's defaults), and restore."""
    found = flags()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = found


@pytest.mark.parametrize(("enabled", "inside"), [(True, (True, True)), (False, (False, False)), (None, (False, True))])
def test_the_block_sets_both_switches_and_restores_them(enabled: Optional[bool], inside: tuple[bool, bool]) -> None:
    with tf32_matmuls(enabled):
        assert flags() == inside
    assert flags() == (False, True)


def test_the_switches_are_restored_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError):
        with tf32_matmuls(True):
            raise RuntimeError("a run that fails")
    assert flags() == (False, True)


def test_a_run_trains_under_its_own_setting_and_the_next_run_does_not_inherit_it(tmp_path: Path, monkeypatch: Any) -> None:
    seen: list[tuple[bool, bool]] = []
    original = runner.train_phase

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(flags())
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "train_phase", spy)
    retain.run(tiny_config(tmp_path, name="tf32", methods=["seqft"], train={"tf32": True}), quiet=True)
    assert seen and all(s == (True, True) for s in seen)
    assert flags() == (False, True)
    seen.clear()
    retain.run(tiny_config(tmp_path, name="default", methods=["seqft"]), quiet=True)
    assert seen and all(s == (False, True) for s in seen)
