"""The baselines' math on hand-computed cases, plus the runs that tie them to the engine.

replay (sampling, interleaving), der (KL at the shifted answer positions), lwf (stored previous
outputs), ewc (penalty, Fisher, online accumulation), olora (orthogonality, multi-adapter forward,
resume), single (reset, FWT vs single-task reference) and the rejection of impossible lists.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import retain
from retain.config import MethodSpec, make_config
from retain.data.collate import MicroBatch
from retain.data.types import Example, Task
from retain.engine.runner import ContinualRunner
from retain.errors import ConfigError, MethodError
from retain.methods import lwf as lwf_module
from retain.methods.der import DER
from retain.methods.ewc import EWC, accumulate_fisher, empirical_fisher, ewc_penalty
from retain.methods.olora import activate_adapters, add_task_adapter, adapter_pairs, lora_layers, orthogonality_loss
from retain.methods.registry import check_combination, instantiate
from retain.methods.replay import Replay, interleave_count, sample_buffer
from retain.methods.common.teacher_store import TeacherLogits, restrict_to_allowed, stored_answer_rows
from tests.conftest import tiny_config

LN3 = math.log(3.0)
# KL((0.75, 0.25) || (0.5, 0.5)) = 0.75 ln(0.75/0.5) + 0.25 ln(0.25/0.5)
#                                = 0.75 * 0.405465 - 0.25 * 0.693147 = 0.130812
KL_3_1_VS_UNIFORM = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def _tiny(tmp_path: Path, name: str, methods: list[Any], tasks: int = 2, **sections: Any) -> dict[str, Any]:
    stream = {"demo_tasks": tasks, "demo_train_size": 16, "demo_eval_size": 8}
    stream.update(sections.pop("stream", {}))
    return tiny_config(tmp_path, name=name, methods=methods, stream=stream, **sections)


# -- replay ----------------------------------------------------------------------------------


def _labelled_task() -> Task:
    # 30 examples: label a x15, b x10, c x5
    targets = ["a"] * 15 + ["b"] * 10 + ["c"] * 5
    train = [Example(prompt=f"p{i}", target=t, key=str(i)) for i, t in enumerate(targets)]
    return Task(name="t", train=train, eval=[], labels=["a", "b", "c"])


def _label_counts(task: Task, indices: list[int]) -> dict[str, int]:
    counts = {label: 0 for label in task.labels or []}
    for i in indices:
        counts[task.train[i].target] += 1
    return counts


def test_replay_buffer_sizes_from_ratio_and_count() -> None:
    task = _labelled_task()
    assert Replay(Replay.params_class(ratio=0.2)).buffer.size_for(task) == 6  # round(0.2 * 30)
    assert Replay(Replay.params_class(ratio=0.01)).buffer.size_for(task) == 1  # round(0.3) = 0 -> at least 1
    assert Replay(Replay.params_class(count=10)).buffer.size_for(task) == 10


def test_replay_sampling_is_seeded_and_label_balanced() -> None:
    task = _labelled_task()
    plain = sample_buffer(task, 6, balanced=False, seed="42-replay-0")
    assert plain == sample_buffer(task, 6, balanced=False, seed="42-replay-0")  # same seed, same draw
    assert plain != sample_buffer(task, 6, balanced=False, seed="43-replay-0")
    assert len(set(plain)) == 6 and plain == sorted(plain)
    # ratio 0.2 -> 6 examples dealt a, b, c, a, b, c -> 2 each
    assert _label_counts(task, sample_buffer(task, 6, balanced=True, seed="s")) == {"a": 2, "b": 2, "c": 2}
    # count 10 -> a, b, c x3, then a -> 4, 3, 3 (within 1 of each other)
    assert _label_counts(task, sample_buffer(task, 10, balanced=True, seed="s")) == {"a": 4, "b": 3, "c": 3}
    # count 20 -> c runs out after 5; the rest keeps alternating a, b: 8, 7, 5
    assert _label_counts(task, sample_buffer(task, 20, balanced=True, seed="s")) == {"a": 8, "b": 7, "c": 5}


def test_interleaving_spreads_exactly_the_replay_batches() -> None:
    # N = 10 new, R = 3 replay: floor(i*3/10) steps up at i = 4, 7, 10
    assert [interleave_count(i, 10, 3) for i in range(1, 11)] == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    # N = 2, R = 5: floor(1*5/2) = 2 after the first, 5 - 2 = 3 after the second
    assert [interleave_count(i, 2, 5) for i in range(1, 3)] == [2, 3]


def test_replay_rejects_bad_parameters() -> None:
    with pytest.raises(ConfigError, match="replay.schedule"):
        instantiate([MethodSpec("replay", {"schedule": "sometimes"})])
    with pytest.raises(ConfigError, match="der.ratio"):
        instantiate([MethodSpec("der", {"ratio": 1.5})])
    with pytest.raises(ConfigError, match="der.beta"):
        instantiate([MethodSpec("der", {"schedule": "mixed", "beta": 0.5})])


# -- DER++ -----------------------------------------------------------------------------------


def _causal_batch(source: str = "replay") -> MicroBatch:
    # one example: 2 prompt tokens, answer tokens 5 and 6 at positions 2 and 3
    labels = torch.tensor([[-100, -100, 5, 6]])
    return MicroBatch(inputs={"labels": labels}, keys=["t/0"], task_indices=[0], source=source)


def test_der_kl_uses_the_shifted_answer_positions() -> None:
    ctx = SimpleNamespace(kind="causal")
    # Vocabulary of 2. Causal: the logit at position t predicts token t+1, so the answer tokens at
    # positions 2, 3 are predicted by positions 1, 2. Positions 0 and 3 hold junk that must be unused.
    logits = torch.tensor([[[100.0, -100.0], [0.0, 0.0], [LN3, 0.0], [-100.0, 100.0]]])
    teacher = TeacherLogits()
    teacher.logits["t/0"] = torch.tensor([[LN3, 0.0], [LN3, 0.0]], dtype=torch.bfloat16)
    # row 1: teacher (0.75, 0.25) vs student (0.5, 0.5) -> 0.130812; row 2: equal -> 0
    # KL = mean over the two rows = 0.065406
    der = DER(DER.params_class(alpha=0.5, beta=1.0))
    der.teacher = teacher
    ce = torch.tensor(2.0)
    loss = der.on_loss(ctx, _causal_batch("replay"), SimpleNamespace(logits=logits), ce)
    # DER++: beta * CE + alpha * KL = 2.0 + 0.5 * 0.065406 = 2.032703
    expected_kl = KL_3_1_VS_UNIFORM / 2
    assert loss.item() == pytest.approx(2.0 + 0.5 * expected_kl, abs=1e-3)  # bf16 teacher: ln3 ~ 1.0986 -> 1.1016
    der_beta = DER(DER.params_class(alpha=0.5, beta=0.25))
    der_beta.teacher = teacher
    loss = der_beta.on_loss(ctx, _causal_batch("replay"), SimpleNamespace(logits=logits), ce)
    assert loss.item() == pytest.approx(0.25 * 2.0 + 0.5 * expected_kl, abs=1e-3)
    # an example without stored logits (a new-task batch) is left alone
    other = MicroBatch(inputs={"labels": torch.tensor([[-100, -100, 5, 6]])}, keys=["u/0"], task_indices=[1])
    assert der.on_loss(ctx, other, SimpleNamespace(logits=logits), ce) is ce


def test_classifier_kl_is_restricted_to_allowed_labels() -> None:
    # class 3 is not allowed for this row: its wildly different logits (5 vs -5) must not count
    student = torch.tensor([[0.0, 0.0, 5.0]])
    teacher = torch.tensor([[LN3, 0.0, -5.0]])
    allowed = torch.tensor([[True, True, False]])
    ctx = SimpleNamespace(kind="classifier")
    store = TeacherLogits(dtype=torch.float32)
    store.logits["t/0"] = teacher
    batch = MicroBatch(inputs={"labels": torch.tensor([0])}, keys=["t/0"], task_indices=[0], label_mask=allowed)
    rows = stored_answer_rows(ctx, batch, student, store)
    assert rows is not None
    from retain.methods.common.teacher_store import kl_to_teacher

    assert kl_to_teacher(*rows).item() == pytest.approx(KL_3_1_VS_UNIFORM, abs=1e-6)
    assert torch.equal(restrict_to_allowed(student, None), student)


def test_der_stores_bf16_logits_of_answer_positions_only(tmp_path: Path) -> None:
    config = make_config(_tiny(tmp_path, "der-store", [{"name": "der", "count": 3}]))
    ctx, methods, _ = ContinualRunner(config, quiet=True)._build()
    der = methods[0]
    der.on_phase_end(ctx)  # phase 0: sample 3 examples of task 0 and store their logits
    encoded = ctx.encoded(0, "train")
    vocab = ctx.unwrapped_model().config.vocab_size
    assert len(der.teacher) == 3
    for index in der.buffer.indices[0]:
        item = encoded[index]
        rows = der.teacher.logits[item.key]
        answer_tokens = sum(1 for t in item.labels if t != -100)  # target tokens + eos
        assert rows.dtype == torch.bfloat16 and rows.shape == (answer_tokens, vocab)
    assert der.teacher.nbytes() == sum(r.numel() * 2 for r in der.teacher.logits.values())
    assert der.on_log()["der_teacher_bytes"] == der.teacher.nbytes()


# -- LwF -------------------------------------------------------------------------------------


def test_lwf_uses_the_stored_previous_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []
    original = lwf_module.kl_to_teacher

    def recording(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        value = original(student, teacher, temperature)
        seen.append(value.item())
        return value

    monkeypatch.setattr(lwf_module, "kl_to_teacher", recording)
    # tiny-llama has no dropout: before the first update the model *is* the previous model
    retain.run(_tiny(tmp_path, "lwf", ["lwf"]), quiet=True)
    assert len(seen) == 2  # task 1: nothing; task 2: 16 examples / batch 8 = 2 micro-batches
    assert seen[0] < 1e-4  # only bf16 rounding of the stored logits separates them
    assert seen[1] > 100 * max(seen[0], 1e-7)  # after an update the model has moved away


# -- EWC -------------------------------------------------------------------------------------


def test_ewc_penalty_for_a_known_fisher_and_shift() -> None:
    theta = {"w": torch.tensor([0.5, -1.0]), "b": torch.tensor([1.5]), "free": torch.tensor([9.0])}
    fisher = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([4.0])}
    anchor = {"w": torch.tensor([0.0, 0.0]), "b": torch.tensor([1.0])}
    # w: 1 * 0.5^2 + 2 * (-1)^2 = 0.25 + 2 = 2.25; b: 4 * 0.5^2 = 1; "free" has no Fisher -> 0
    assert ewc_penalty(theta.items(), fisher, anchor).item() == pytest.approx(3.25)
    ewc = EWC(EWC.params_class(lam=2.0))
    ewc.fisher, ewc.anchor = fisher, anchor
    declared: list[torch.Tensor] = []
    ctx = SimpleNamespace(trainable_parameters=lambda: list(theta.items()), add_shard_term=declared.append)
    # loss + lam * penalty = 1 + 2 * 3.25 = 7.5 (no 1/2 factor)
    assert ewc.on_loss(ctx, None, None, torch.tensor(1.0)).item() == pytest.approx(7.5)
    # the penalty is declared as a shard term (re-weighted over processes on a sharded model)
    assert [t.item() for t in declared] == [pytest.approx(6.5)]


def test_empirical_fisher_averages_batchwise_squared_grads_and_accumulates_online() -> None:
    w = torch.tensor([1.0, 3.0], requires_grad=True)
    # batch 1: loss = 2 w0 + w1      -> grad (2, 1)         -> squares (4, 1)
    # batch 2: loss = w0^2 * 3       -> grad (6 w0, 0) = (6, 0) -> squares (36, 0)
    # Fisher = mean over the 2 batches = (20, 0.5)
    fisher = empirical_fisher([("w", w)], iter([2 * w[0] + w[1], 3 * w[0] ** 2]))
    assert fisher["w"].tolist() == pytest.approx([20.0, 0.5])
    assert w.grad is None  # nothing left behind in .grad
    # online: gamma * previous + new = 0.5 * (4, 2) + (20, 0.5) = (22, 1.5); "old" is decayed only
    merged = accumulate_fisher({"w": torch.tensor([4.0, 2.0]), "old": torch.tensor([8.0])}, fisher, gamma=0.5)
    assert merged["w"].tolist() == pytest.approx([22.0, 1.5])
    assert merged["old"].tolist() == pytest.approx([4.0])


# -- O-LoRA ----------------------------------------------------------------------------------


def test_orthogonality_loss_for_known_a_matrices() -> None:
    a_new = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a_old = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
    # A_new A_old^T = A_old^T = [[1, 3], [2, -4]] -> |.|.sum() = 1 + 3 + 2 + 4 = 10
    # second module: (1, 1) . (1, -1) = 0 -> orthogonal rows cost nothing
    pairs = [(a_new, a_old), (torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, -1.0]]))]
    assert orthogonality_loss(pairs).item() == pytest.approx(10.0)


class _TwoLinears(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)
        self.out = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.proj(x))


def test_all_adapters_add_their_deltas_and_only_the_newest_learns() -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = _TwoLinears()
    weight, bias = base.proj.weight.detach().clone(), base.proj.bias.detach().clone()
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["proj"]))
    add_task_adapter(model, "task1")
    activate_adapters(model, ["default", "task1"], trainable="task1")
    layer = model.base_model.model.proj
    with torch.no_grad():
        for name in ("default", "task1"):
            layer.lora_B[name].weight.normal_()  # B starts at 0; give both adapters a visible delta
    x = torch.randn(5, 4)
    scaling = 4 / 2  # lora_alpha / r
    delta = sum(scaling * x @ layer.lora_A[n].weight.T @ layer.lora_B[n].weight.T for n in ("default", "task1"))
    expected = model.base_model.model.out(x @ weight.T + bias + delta)
    assert torch.allclose(model(x), expected, atol=1e-5)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".task1." in n for n in trainable)
    # the orthogonality loss reaches the new A only (the old one is a fixed reference)
    orthogonality_loss(adapter_pairs(model, "task1", ["default"])).backward()
    assert layer.lora_A["task1"].weight.grad is not None
    assert layer.lora_A["default"].weight.grad is None


def test_olora_makes_every_adapter_at_set_up_and_trains_one_per_task(tmp_path: Path) -> None:
    """Before the first preparation (FSDP2 shards only what exists then), untouched by the run's
    random stream; a task's adapter joins the forward pass and alone trains when its task starts."""
    config = make_config(_tiny(tmp_path, "olora-setup", ["olora"], tasks=3))
    torch.manual_seed(0)
    ctx, methods, _ = ContinualRunner(config, quiet=True)._build()
    model = ctx.unwrapped_model()
    assert list(model.peft_config) == ["default", "task1", "task2"]
    layer = lora_layers(model)[0]

    def trainable_adapters() -> set[str]:
        return {n.split(".lora_")[1].split(".")[1] for n, p in model.named_parameters() if p.requires_grad}

    assert trainable_adapters() == {"default"} and layer.active_adapters == ["default"]
    ctx.state.phase_index = 1
    methods[0].on_phase_start(ctx)
    assert trainable_adapters() == {"task1"} and layer.active_adapters == ["default", "task1"]


def test_olora_adds_an_adapter_per_task_and_resumes_after_two(tmp_path: Path) -> None:
    def config(name: str) -> dict[str, Any]:
        config = _tiny(tmp_path, name, ["olora"], tasks=3)
        config["model"]["lora"] = {"r": 4}
        return config

    straight = retain.run(config("straight"), quiet=True)
    assert "olora_adapters=3" in (straight.run_dir / "run.log").read_text()
    stopped = retain.run(config("stopped"), quiet=True, stop_after=2)
    resumed = retain.run(stopped.run_dir, resume=True, quiet=True)  # re-creates task1 before loading
    assert resumed.matrix.rows == straight.matrix.rows


# -- single and FWT vs single-task -------------------------------------------------------------


def test_single_resets_to_the_initial_weights(tmp_path: Path) -> None:
    config = make_config(_tiny(tmp_path, "single-reset", ["single"]))
    ctx, methods, _ = ContinualRunner(config, quiet=True)._build()
    model = ctx.unwrapped_model()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ctx.state.phase_index = 1
    methods[0].on_phase_start(ctx)
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())


def test_fwt_relative_to_a_single_run(tmp_path: Path) -> None:
    single = retain.run(_tiny(tmp_path, "single", ["single"]), quiet=True)
    s = [row[i] for i, row in enumerate(single.matrix.training_rows)]
    run = retain.run(_tiny(tmp_path, "seq", ["seqft"], eval={"single_task_reference": str(single.run_dir)}), quiet=True)
    names = run.matrix.task_names
    assert json.loads((run.run_dir / "single_task.json").read_text()) == dict(zip(names, s))
    a = [row[i] for i, row in enumerate(run.matrix.training_rows)]
    # FWT_ST = (1/T) sum_i (a[i][i] - s[i])
    assert run.metrics["fwt_single_task"]["value"] == pytest.approx(sum(x - y for x, y in zip(a, s)) / len(a))
    with pytest.raises(ConfigError, match="eval.single_task_reference: .* not of single"):
        retain.run(_tiny(tmp_path, "bad", ["seqft"], eval={"single_task_reference": str(run.run_dir)}), quiet=True)
    with pytest.raises(ConfigError, match="eval.single_task_reference: .* not a run folder"):
        retain.run(_tiny(tmp_path, "bad", ["seqft"], eval={"single_task_reference": str(tmp_path / "nowhere")}), quiet=True)
    assert not (tmp_path / "runs" / "bad").exists()  # rejected before the run folder was made


# -- composition -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "lora", "message"),
    [
        (["replay", "der"], False, "replay and der both decide how a task's batches are formed"),
        (["seqft", "olora"], True, "seqft trains all weights but olora trains LoRA adapters"),
        (["mtl", "single"], False, "single and mtl cannot be combined"),
        (["single", "ewc"], False, "single and ewc cannot be combined: ewc carries knowledge"),
        # refused by capability, so methods that hold a replay buffer or fuse models are caught too
        (["single", "seekr"], False, "single and seekr cannot be combined: seekr carries knowledge"),
        (["kif", "single"], False, "single and kif cannot be combined: kif carries knowledge"),
        (["kif", "olora"], True, "kif and olora cannot be combined: olora adds new parameters every task"),
        (["olora"], False, "olora trains LoRA adapters; set model.lora.enabled=true"),
        (["ewc", "ewc"], False, "lists a method twice"),
    ],
)
def test_impossible_lists_are_rejected_with_the_reason(names: list[str], lora: bool, message: str) -> None:
    methods = instantiate([MethodSpec(n) for n in names])
    with pytest.raises(MethodError, match=message):
        check_combination(methods, "causal", lora=lora)


def test_possible_lists_pass_and_olora_turns_lora_on(tmp_path: Path) -> None:
    for names in (["replay", "ewc"], ["der", "lwf", "ewc"], ["olora", "ewc"], ["olora", "replay"]):
        methods = instantiate([MethodSpec(n) for n in names])
        check_combination(methods, "causal", lora=any(m.needs_lora for m in methods))
    with pytest.raises(MethodError, match="does not support distributed mode zero2: .*flat partitioned buffers"):
        check_combination(instantiate([MethodSpec("ewc")]), "causal", lora=False, distributed="zero2")
    ctx, _, _ = ContinualRunner(make_config(_tiny(tmp_path, "auto-lora", ["olora"])), quiet=True)._build()
    assert ctx.lora  # needs_lora switched LoRA on although model.lora.enabled was false


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("baselines-*.yaml")), ids=lambda p: p.name)
def test_example_configs_are_valid(path: Path) -> None:
    config = make_config(path)
    methods = instantiate(config.method_specs())
    lora = config.model.lora.enabled or any(m.needs_lora for m in methods)
    kind = "classifier" if config.model.kind == "classifier" else "causal"
    check_combination(methods, kind, lora=lora)
