"""The step log under data parallelism: a record pools every process's sums, once per record
(the 2-process records against one process's are compared in ``tests/test_distributed.py``)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import retain.engine.step_log as step_log
from retain.engine.step_log import StepLog


class _Process:
    """An accelerator as one of 2 processes sees it: trackers asked for (``log_with``) but started
    only on the main process."""

    num_processes = 2

    def __init__(self, main: bool) -> None:
        self.log_with = ["jsonl"]
        self.trackers = ["jsonl"] if main else []
        self.logged: list[tuple[int, dict[str, Any]]] = []

    def log(self, values: dict[str, Any], step: int) -> None:
        self.logged.append((step, values))


def _peer_log(accelerator: Any) -> StepLog:
    """The other process's log over the same step: 2 micro-batches of loss 3 and 5 (a replay
    term 1 on one of them), the step's norm 2.0 on its new-only micro-batches."""
    peer = StepLog(accelerator, every=1)
    peer.add(torch.tensor(3.0), {"der": torch.tensor(1.0)})
    peer.add(torch.tensor(5.0), {})
    peer.add_grad_norm(torch.tensor(2.0), {"new"})
    return peer


def test_a_record_is_the_mean_over_every_processes_micro_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    main_accelerator, peer_accelerator = _Process(main=True), _Process(main=False)
    peer = _peer_log(peer_accelerator)
    assert peer.enabled  # a process without started trackers still adds to the record
    gathers: list[Any] = []

    def gather(accelerator: Any, mine: Any) -> list[Any]:
        gathers.append(mine)
        return [mine, peer_payload]

    peer_payload = (peer.count, dict(zip(peer.sums, torch.stack(list(peer.sums.values())).tolist())), peer.norms.totals())
    monkeypatch.setattr(step_log, "gather_objects", gather)
    log = StepLog(main_accelerator, every=1)
    log.add(torch.tensor(1.0), {})
    log.add(torch.tensor(7.0), {})
    log.add_grad_norm(torch.tensor(4.0), {"new", "replay"})  # mixed on this process: overall only
    log.step_done(1, optimizer=None)
    (step, values), = main_accelerator.logged
    assert len(gathers) == 1, "one gather per record, not per micro-batch"
    assert step == 1 and values["train/loss"] == pytest.approx((1 + 7 + 3 + 5) / 4)
    assert values["loss/der"] == pytest.approx(1 / 4)  # the term is 0 on the micro-batches without it
    assert values["train/grad_norm"] == pytest.approx(3.0) and values["train/grad_norm/new"] == pytest.approx(2.0)


def test_one_process_reads_its_own_sums_without_a_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> Any:
        raise AssertionError("no gather in one process")

    monkeypatch.setattr(step_log, "gather_objects", refuse)
    accelerator = _Process(main=True)
    accelerator.num_processes = 1
    log = StepLog(accelerator, every=1)
    log.add(torch.tensor(2.0), {})
    log.add_grad_norm(torch.tensor(0.5), {"new"})
    log.step_done(1, optimizer=None)
    assert accelerator.logged == [(1, {"train/loss": 2.0, "train/grad_norm": 0.5, "train/grad_norm/new": 0.5})]


def test_a_pad_makes_a_record_due_but_is_not_in_its_means(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process whose window is only a pad still joins the record's gather (its peers do), and
    the pad's loss, a copy of a real batch's, is not averaged in."""
    accelerator = _Process(main=True)
    accelerator.num_processes = 1
    log = StepLog(accelerator, every=1)
    log.add(torch.tensor(9.0), {}, weight=0.0)
    log.step_done(1, optimizer=None)
    assert accelerator.logged == []  # nothing trained: no values, no record
    log.add(torch.tensor(2.0), {})
    log.add(torch.tensor(9.0), {}, weight=0.0)
    log.step_done(2, optimizer=None)
    assert accelerator.logged[-1] == (2, {"train/loss": 2.0})
