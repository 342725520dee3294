"""The hook dispatcher's combination rules and the batch plan's counting and seeding."""

from __future__ import annotations

from typing import Any, Optional

import torch

from retain.engine.hooks import HOOK_RULES, HookDispatcher
from retain.methods.base import ExtraSteps, Method, StepStats
from retain.methods.common.batch_plan import PAD, BatchPlan, PlannedBatch, Shard, cycled_batches, phase_seed


class Recorder(Method):
    name = "recorder"

    def __init__(self, tag: str, calls: list[str]) -> None:
        super().__init__()
        self.tag, self.calls = tag, calls

    def on_loss(self, ctx: Any, batch: Any, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        self.calls.append(self.tag)
        return loss * 2 + (1 if self.tag == "b" else 0)

    def on_plan_phases(self, stream: Any) -> Optional[list[Any]]:
        return [self.tag] if self.tag != "c" else None

    def on_log(self) -> dict[str, float]:
        return {"shared": float(ord(self.tag)), self.tag: 1.0}

    def on_report(self, ctx: Any) -> list[tuple[str, str]]:
        return [(self.tag, "")]

    def on_phase_end(self, ctx: Any) -> Optional[ExtraSteps]:
        self.calls.append(f"end {self.tag}")
        if self.tag != "a":
            return None
        plan = BatchPlan([], seed=0)
        return ExtraSteps("x", plan, [], 0.1, done=lambda stats: self.calls.append(f"done {stats.steps}"))


def test_every_base_hook_has_a_rule() -> None:
    hooks = {name for name in vars(Method) if name.startswith("on_")}
    assert hooks == set(HOOK_RULES)


def test_rules_chain_last_merge_concat_and_steps_in_method_order() -> None:
    calls: list[str] = []
    a, b, c = Recorder("a", calls), Recorder("b", calls), Recorder("c", calls)
    hooks = HookDispatcher([a, b, c], run_steps=lambda steps: (calls.append("ran " + steps.name), StepStats(3, 3, 0.0))[1])
    # chain: ((1 * 2) * 2 + 1) * 2 = 10, each method sees the previous one's answer
    assert hooks.call("on_loss", None, None, None, torch.tensor(1.0)).item() == 10.0
    assert calls == ["a", "b", "c"]
    assert hooks.call("on_plan_phases", None) == ["b"]  # the last answer that is not None
    assert hooks.call("on_log") == {"shared": float(ord("c")), "a": 1.0, "b": 1.0, "c": 1.0}
    assert [t for t, _ in hooks.call("on_report", None)] == ["a", "b", "c"]
    calls.clear()
    hooks.call("on_phase_end", None)
    # a's extra steps run before b's on_phase_end, so b sees the model they leave
    assert calls == ["end a", "ran x", "done 3", "end b", "end c"]


def test_methods_that_do_not_override_a_hook_are_not_called() -> None:
    plain = Method()
    hooks = HookDispatcher([plain])
    assert hooks.call("on_loss", None, None, None, 5) == 5
    assert hooks._implementers["on_loss"] == []


def test_plan_is_counted_up_front_and_seeded_once() -> None:
    items = list(range(10))
    plan = BatchPlan.over_epochs(items, batch_size=3, epochs=1.5, seed=phase_seed(7, 2))
    assert plan.seed == 7 * 7919 + 2
    assert len(plan) == 4 + 2  # 4 batches per epoch, half of the second epoch (round(0.5 * 4))
    assert sorted(i for b in plan.batches[:4] for i in b.items) == items
    again = BatchPlan.over_epochs(items, batch_size=3, epochs=1.5, seed=phase_seed(7, 2))
    assert [b.items for b in again] == [b.items for b in plan]
    replay = cycled_batches(["r"] * 5, batch_size=2, count=7, seed=plan.seed, source="replay")
    mixed = plan.interleaved(replay)
    assert len(mixed) == len(plan) + 7 and mixed.count("replay") == 7
    assert mixed.batches[-1].source == "replay"  # floor(i R / N) reaches R at the last new batch


def test_shard_pads_the_short_process_with_a_weightless_batch() -> None:
    plan = BatchPlan([PlannedBatch([i], "new" if i < 5 else "replay") for i in range(7)], seed=1)
    first, second = plan.for_process(Shard(0, 2)), plan.for_process(Shard(1, 2))
    assert [b.items for b in first] == [[0], [2], [4], [6]]
    assert [b.items for b in second] == [[1], [3], [5], [5]]  # the pad repeats its last batch
    assert [b.weight for b in second] == [1.0, 1.0, 1.0, 0.0] and second.batches[-1].source == PAD
    # every planned batch is trained exactly once over the processes: counts add up, pads excluded
    assert first.count("replay") + second.count("replay") == plan.count("replay") == 2
    assert first.count("new") + second.count("new") == 5
    # fewer batches than processes (a one-batch buffer on 4 processes): no process is left empty
    tiny = BatchPlan([PlannedBatch(["r"], "replay")], seed=1)
    shares = [tiny.for_process(Shard(rank, 4)) for rank in range(4)]
    assert [len(s) for s in shares] == [1, 1, 1, 1]
    assert sum(s.count("replay") for s in shares) == 1
    # the weight over processes at each position: what a term on a parameter shard is weighted by
    assert [b.shared_weight for b in first] == [b.shared_weight for b in second] == [1.0, 1.0, 1.0, 0.5]
    assert [b.weight_over_processes for b in shares[0]] == [0.25]
    assert PlannedBatch([0]).weight_over_processes == 1.0  # one process: the batch's own weight
    plan = BatchPlan.over_epochs(list(range(4)), batch_size=2, epochs=1, seed=1)
    mixed = plan.mixed_with([10, 11])  # the phase's data and the extra examples, shuffled together
    assert len(mixed) == 3 and sorted(i for b in mixed for i in b.items) == [0, 1, 2, 3, 10, 11]


def test_a_shard_term_is_weighted_over_processes_not_by_its_own_batch() -> None:
    """Hand-computed: 2 processes, the last window holds a real batch on process 0 and a pad on
    process 1 (shared weight 1/2). One process would back-propagate CE/2 + lam P/2; process 0
    (weight 1) must give its rows lam P_0 / 2 and process 1 (weight 0) lam P_1 / 2, which the loop's
    correction ``term * (shared - weight)`` makes of ``loss * weight``."""
    from retain.engine.context import RunContext
    from retain.engine.loop import weighted_loss

    ctx = RunContext.__new__(RunContext)
    ctx.shard_terms = []
    assert ctx.take_shard_terms() is None
    theta = torch.tensor([1.0, 2.0], requires_grad=True)  # the rows this process holds
    for weight, expected in ((1.0, [1.0, 2.0]), (0.0, [1.0, 2.0])):
        theta.grad = None
        penalty = (theta ** 2).sum()  # lam = 1, F = 1, anchor 0: d/dtheta = 2 theta
        ctx.add_shard_term(penalty)
        loss = 3.0 * theta.detach().sum() + penalty  # a data part without gradient here, plus the term
        planned = PlannedBatch([0], PAD if weight == 0 else "new", weight, shared_weight=0.5)
        weighted_loss(loss, planned, ctx.take_shard_terms()).backward()
        assert theta.grad.tolist() == expected  # 2 theta * 1/2, on either process
    assert ctx.take_shard_terms() is None
    full = torch.tensor(2.0, requires_grad=True)  # no shard term: the plain weight, a pad gives nothing
    weighted_loss(full * 5, PlannedBatch([0], PAD, 0.0, shared_weight=0.5), None).backward()
    assert full.grad.item() == 0.0
