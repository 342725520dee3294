"""Gradient norms before clipping per batch source: the phase line, and a warning when clipping bites hard."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import retain
from retain.engine.grad_norms import CLIPPED_FACTOR, GradNormWatch, clipped_sources_warning
from tests.conftest import tiny_config


def test_watch_means_per_source_and_skips_mixed_and_unreported_steps() -> None:
    watch = GradNormWatch()
    watch.add(torch.tensor(2.0), {"new"})
    watch.add(torch.tensor(4.0), {"new"})
    watch.add(torch.tensor(3000.0), {"replay"})
    watch.add(torch.tensor(99.0), {"new", "replay"})  # an accumulation window of both: neither's
    watch.add(None, {"replay"})  # a backend that reports no norm
    assert watch.means() == pytest.approx({"new": 3.0, "replay": 3000.0})


def test_warning_names_only_the_sources_far_above_the_bound() -> None:
    means = {"new": 1.7, "replay": 2000.0}
    text = clipped_sources_warning("amazon", means, 1.0)
    assert text is not None and "replay steps 2000 (scaled down about 2000-fold)" in text and "new steps" not in text
    assert clipped_sources_warning("amazon", {"replay": CLIPPED_FACTOR * 0.9}, 1.0) is None
    assert clipped_sources_warning("amazon", means, None) is None  # no clipping, nothing scaled


def test_phase_line_shows_the_norms_and_a_run_clipped_hard_warns(tmp_path: Path) -> None:
    result = retain.run(tiny_config(tmp_path, methods=[{"name": "replay", "ratio": 0.5, "schedule": "interleaved"}], train={"max_grad_norm": 1e-6}), quiet=True)
    log = (result.run_dir / "run.log").read_text(encoding="utf-8")
    assert "grad norm before clipping: new " in log and ", replay " in log  # task 2 has replay steps
    assert "scaled down about" in log and "train.max_grad_norm 1e-06" in log
    calm = retain.run(tiny_config(tmp_path / "calm", train={"max_grad_norm": 1e6}), quiet=True)
    assert "scaled down about" not in (calm.run_dir / "run.log").read_text(encoding="utf-8")
