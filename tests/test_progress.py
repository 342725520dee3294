"""Every pass of a run gets a progress bar (on a terminal, when allowed) and a timed log line."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from retain.config import make_config
from retain.engine.progress import bars_allowed, progress_bar


def test_method_passes_and_evaluation_rows_are_logged_with_their_time(traced_run: Any) -> None:
    log = (traced_run.run_dir / "run.log").read_text(encoding="utf-8")
    for name in ("ewc: Fisher", "lwf: teacher outputs", "der: stored logits"):
        assert re.search(rf"{name}: (\d+)/\1 batches, \d+\.\ds", log), name
    for row in (0, 1, 2):
        assert re.search(rf"row {row} \(.*\[\d+ eval examples/s, \d+\.\ds\]", log)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_draw_on_a_terminal_unless_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config({})
    monkeypatch.delenv("RETAIN_PROGRESS", raising=False)
    assert bars_allowed(config, quiet=False, is_main=True)
    assert not bars_allowed(config, quiet=True, is_main=True)
    assert not bars_allowed(config, quiet=False, is_main=False)
    assert not bars_allowed(make_config({"output": {"progress": False}}), quiet=False, is_main=True)
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        monkeypatch.setattr("sys.stderr", stream)
        with progress_bar(True, 3, "eval row 1") as bar:
            bar.update(3)
    assert "eval row 1" in terminal.getvalue()
    assert pipe.getvalue() == ""  # not a terminal: no redraws in logs
    monkeypatch.setenv("RETAIN_PROGRESS", "0")
    assert not bars_allowed(config, quiet=False, is_main=True)
