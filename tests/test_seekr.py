"""SEEKR: attention KL, sensitivity, forgettability and the budget by hand; attention capture
against the models' own eager path; the importance pass leaves no gradient; tiny runs per kind."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

import retain
from retain.config import MethodSpec, make_config
from retain.data.collate import MicroBatch
from retain.engine.checkpoint import load_method_states
from retain.engine.runner import ContinualRunner
from retain.errors import ConfigError, MethodError
from retain.methods.seekr.attention_store import TeacherMaps, attention_kl, draw_query_rows, rows_of
from retain.methods.seekr.head_importance import (
    ImportanceTracker,
    budget_counts,
    head_forgettability,
    head_sensitivity,
    normalise_within_layer,
    select_heads,
)
from retain.methods.registry import available_methods, check_combination, instantiate
from retain.methods.seekr.method import ReplayTermMeans, Seekr
from retain.methods.seekr.attention_capture import AttentionCapture, eager_attention
from tests.conftest import BUILTIN_BY_KIND, tiny_config

# -- the attention KL ------------------------------------------------------------------------


def test_attention_kl_by_hand_with_padding_then_rows_samples_layers() -> None:
    """One example of 2 real tokens + 1 pad; two layers (sites 0 and 1), head 1 distilled.

    Site 0, head 1, real rows over real keys:
        student q0 = [0.25, 0.75]   teacher q0 = [0.5, 0.5]
        student q1 = [0.5, 0.5]     teacher q1 = [0.5, 0.5]
    KL(q0) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3) = 0.1438410
    KL(q1) = 0                      -> mean over (head, query) rows: 0.0719205
    Site 1: teacher = student       -> 0
    Mean over layers: 0.0719205 / 2 = 0.0359603. The pad column and the pad row (filled with
    junk here) never enter: they are cut before the KL.
    """
    student0 = torch.zeros(1, 2, 3, 3)
    student0[0, 1] = torch.tensor([[0.25, 0.75, 9.0], [0.5, 0.5, 9.0], [9.0, 9.0, 9.0]])
    student0[0, 0] = 7.0  # head 0 is not distilled: junk must not matter
    student1 = torch.zeros(1, 2, 3, 3)
    student1[0, 1] = torch.tensor([[1.0, 0.0, 9.0], [0.3, 0.7, 9.0], [9.0, 9.0, 9.0]])
    store = TeacherMaps()
    store.add_task(0, {0: [1], 1: [1]})
    rows = {"source": torch.arange(2)}
    teacher = {0: torch.tensor([[[0.5, 0.5], [0.5, 0.5]]]).repeat(2, 1, 1), 1: student1[0, :, :2, :2].clone()}
    teacher[1][1] = torch.tensor([[1.0, 0.0], [0.3, 0.7]])
    store.add("t/0", 0, teacher, rows)
    batch = MicroBatch(
        inputs={"input_ids": torch.zeros(1, 3, dtype=torch.long), "attention_mask": torch.tensor([[1, 1, 0]])},
        keys=["t/0"], task_indices=[0], source="replay",
    )
    loss = store.distillation_loss(batch, {0: student0, 1: student1}, {0: "self", 1: "self"})
    assert loss is not None
    assert loss.item() == pytest.approx(0.5 * math.log(4 / 3) / 2 / 2, abs=2e-4)  # bf16 storage of 0.3/0.7
    exact = attention_kl(torch.tensor([[0.25, 0.75], [0.5, 0.5]]), torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    assert exact.item() == pytest.approx(0.5 * math.log(4 / 3) / 2, rel=1e-6)


def test_attention_kl_is_divided_by_the_batch_not_by_the_examples_that_distil_a_layer() -> None:
    """Two stored examples of different tasks: task 0 distils site 0, task 1 distils nothing there.

    Example a (task 0), site 0, head 0: student [0.25, 0.75] vs teacher [0.5, 0.5] on both query
    rows: KL = 0.5 ln(4/3) per row -> 0.1438410 for the example. Example b (task 1) distils site 1
    only, where student = teacher: KL 0.
    batch (reference code): site 0: 0.1438410 / 2 examples = 0.0719205; site 1: 0 / 2 = 0;
        mean over the 2 sites: 0.0359603.
    distilling: site 0: 0.1438410 / 1 = 0.1438410; site 1: 0; mean over sites: 0.0719205.
    """
    student = torch.zeros(2, 1, 2, 2)
    student[0, 0] = torch.tensor([[0.25, 0.75], [0.25, 0.75]])
    student[1, 0] = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    store = TeacherMaps(dtype=torch.float32)
    store.add_task(0, {0: [0]})
    store.add_task(1, {1: [0]})
    rows = {"source": torch.arange(2)}
    store.add("a", 0, {0: torch.full((1, 2, 2), 0.5)}, rows)
    store.add("b", 1, {1: student[1, :, :, :].clone()}, rows)
    batch = MicroBatch(
        inputs={"input_ids": torch.zeros(2, 2, dtype=torch.long), "attention_mask": torch.ones(2, 2, dtype=torch.long)},
        keys=["a", "b"], task_indices=[0, 1], source="replay",
    )
    maps = {0: student, 1: student}
    kl = 0.5 * math.log(4 / 3)
    by_batch = store.distillation_loss(batch, maps, {0: "self", 1: "self"})
    by_distilling = store.distillation_loss(batch, maps, {0: "self", 1: "self"}, "distilling")
    assert by_batch is not None and by_distilling is not None
    assert by_batch.item() == pytest.approx(kl / 2 / 2, rel=1e-5)
    assert by_distilling.item() == pytest.approx(kl / 2, rel=1e-5)


def test_attention_kl_zero_teacher_entries_and_vanished_student_are_finite() -> None:
    # teacher [1, 0] vs student [1, 0]: 1 ln(1/1) + 0 = 0 (0 ln 0 = 0, no NaN)
    assert attention_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item() == 0.0
    # a student probability that underflowed to 0 gives a large, finite penalty
    assert math.isfinite(attention_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])).item())


# -- sensitivity and forgettability ----------------------------------------------------------


def test_sensitivity_on_a_one_layer_toy_equals_the_analytic_gradient() -> None:
    """One head, 2 real tokens + 1 pad key; loss = sum(W * out), out = A V.

    dL/dA[q, k] = sum_d W[q, d] V[k, d] = (W V^T)[q, k]. With V = [[1, 0], [0, 2], [5, 5] (pad)]
    and W = [[1, 1], [0, 1]] on the real rows: W V^T over real keys = [[1, 2], [0, 2]], so the
    sensitivity is (1 + 4 + 0 + 4) / 4 = 2.25. The pad key's gradients (10 and 5) are left out.
    """
    module = nn.Module().eval()
    query = torch.randn(1, 1, 3, 2)
    key = torch.randn(1, 1, 3, 2)
    value = torch.tensor([[[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]]])
    mask = torch.tensor([0.0, 0.0, torch.finfo(torch.float32).min]).view(1, 1, 1, 3)
    out, probs = eager_attention(module, query, key, value, mask, grad_to_probs=True)
    weights = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])  # the pad query row is not in the loss
    loss = (out[0, :, 0] * weights).sum()  # out: [batch, queries, heads, dim]
    (grad,) = torch.autograd.grad(loss, probs)
    assert torch.allclose(grad[0, 0, :2, :2], torch.tensor([[1.0, 2.0], [0.0, 2.0]]))
    real = torch.arange(2)
    sensitivity = head_sensitivity(rows_of(grad[0], real, real, torch.arange(2)))
    assert sensitivity.tolist() == pytest.approx([2.25])


def test_forgettability_normalisation_and_task_combinations_by_hand() -> None:
    # before [0.5, 0.5], after [0.25, 0.75]: ((0.25)^2 + (0.25)^2) / 2 = 0.0625
    assert head_forgettability(torch.tensor([[[0.5, 0.5]]]), torch.tensor([[[0.25, 0.75]]])).tolist() == [0.0625]
    # each layer's row sums to 1; an all-zero layer stays 0
    normalised = normalise_within_layer(torch.tensor([[1.0, 3.0], [0.0, 0.0]]))
    assert normalised.tolist() == [[0.25, 0.75], [0.0, 0.0]]
    tracker = ImportanceTracker()
    tracker.add_task(torch.tensor([[0.75, 0.25]]), torch.tensor([[0.2, 0.4]]))
    tracker.add_task(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.0, 0.2]]))
    # sum of products: [0.75*0.2 + 0.5*0, 0.25*0.4 + 0.5*0.2] = [0.15, 0.2]
    assert tracker.scores("importance", "sum_of_products")[0].tolist() == pytest.approx([0.15, 0.2])
    # product of sums: [1.25*0.2, 0.75*0.6] = [0.25, 0.45]
    assert tracker.scores("importance", "product_of_sums")[0].tolist() == pytest.approx([0.25, 0.45])
    assert tracker.scores("sensitivity", "sum_of_products")[0].tolist() == pytest.approx([1.25, 0.75])
    assert tracker.scores("forgettability", "sum_of_products")[0].tolist() == pytest.approx([0.2, 0.6])


# -- the budget ------------------------------------------------------------------------------


def test_budget_picks_top_layers_then_top_heads_among_them() -> None:
    """Layer totals: 1.0, 1.2, 0.1 -> keep layers 1 and 0 (2 layers); then the 3 best heads of
    those two layers: 0.9 (layer 0, head 1), then the 0.3 tie in layer 1 broken by index: heads 0,
    1. Layer 2's heads are out even though its head 0 (0.05) would beat nothing: its layer lost."""
    scores = torch.tensor([[0.1, 0.9, 0.0, 0.0], [0.3, 0.3, 0.3, 0.3], [0.05, 0.05, 0.0, 0.0]])
    assert select_heads(scores, kept_layers=2, kept_heads=3) == {0: [1], 1: [0, 1]}
    # one layer kept: layer 1 alone, its best 3 heads
    assert select_heads(scores, kept_layers=1, kept_heads=3) == {1: [0, 1, 2]}


def test_budget_counts_fractions_and_overrides() -> None:
    assert budget_counts(32, 32, 0.75, 0.125) == (24, 128)  # the paper's LLaMA-2-7B setting
    assert budget_counts(6, 12, 0.75, 0.125) == (5, 9)  # MiniLM: 4.5 rounds half up; 72 / 8 = 9
    assert budget_counts(2, 4, 0.75, 0.125) == (2, 1)  # tiny-llama
    assert budget_counts(6, 12, 0.75, 0.125, layers=2, heads=30) == (2, 24)  # heads clamped to 2 layers


def test_query_rows_are_seeded_per_example() -> None:
    rows = draw_query_rows("task/7", "source", 50, 10, seed=3)
    assert rows.tolist() == sorted(rows.tolist()) and len(set(rows.tolist())) == 10
    assert torch.equal(rows, draw_query_rows("task/7", "source", 50, 10, seed=3))
    assert draw_query_rows("task/7", "source", 5, 10, seed=3).tolist() == [0, 1, 2, 3, 4]  # budget > length
    assert draw_query_rows("task/7", "source", 50, 0, seed=3).tolist() == list(range(50))  # 0 = all


# -- attention capture -----------------------------------------------------------------------

IDS = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def _tiny(kind: str) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    if kind == "causal":  # grouped-query attention: 4 query heads share 2 key/value heads
        config = LlamaConfig(
            vocab_size=32, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, pad_token_id=0,
        )
        return LlamaForCausalLM(config), {"input_ids": IDS, "attention_mask": MASK}
    if kind == "seq2seq":
        config = T5Config(vocab_size=32, d_model=32, d_ff=32, d_kv=8, num_layers=2, num_heads=4, decoder_start_token_id=0)
        labels = torch.tensor([[3, 4, -100], [5, -100, -100]])
        return T5ForConditionalGeneration(config), {"input_ids": IDS, "attention_mask": MASK, "labels": labels}
    config = BertConfig(vocab_size=32, hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4)
    return BertForSequenceClassification(config), {"input_ids": IDS, "attention_mask": MASK}


@pytest.mark.parametrize("kind", ["causal", "seq2seq", "classifier"])
def test_captured_maps_equal_the_models_own_eager_attentions(kind: str) -> None:
    model, inputs = _tiny(kind)
    model.eval()
    reference = copy.deepcopy(model)
    reference.set_attn_implementation("eager")
    expected_out = reference(**inputs, output_attentions=True)
    if kind == "seq2seq":  # sites in call order: encoder layers, then decoder self / cross per block
        expected = [*expected_out.encoder_attentions]
        for self_map, cross_map in zip(expected_out.decoder_attentions, expected_out.cross_attentions):
            expected += [self_map, cross_map]
    else:
        expected = list(expected_out.attentions)
    capture = AttentionCapture.install(model, kind)
    try:
        roles = [site.role for site in capture.sites]
        assert roles == (["self", "self", "decoder", "cross", "decoder", "cross"] if kind == "seq2seq" else ["self", "self"])
        assert capture.num_heads == 4  # query heads, also for the GQA model
        with torch.no_grad(), capture.recording(range(len(capture.sites))) as maps:
            armed_out = model(**inputs)
        assert len(maps) == len(expected)
        for site, reference_map in enumerate(expected):
            assert maps[site].shape == reference_map.shape
            assert torch.allclose(maps[site], reference_map, atol=1e-6)
        assert torch.allclose(armed_out.logits, expected_out.logits, atol=1e-5)
        with torch.no_grad(), capture.recording([1]) as only_one:  # armed sites only
            model(**inputs)
        assert list(only_one) == [1]
        with torch.no_grad():  # disarmed: the sdpa path, same numbers up to kernel rounding
            fast = model(**inputs)
        assert torch.allclose(fast.logits, expected_out.logits, atol=1e-4)
    finally:
        capture.uninstall()


def test_an_architecture_outside_the_attention_interface_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = _tiny("classifier")
    monkeypatch.setattr(type(model), "_can_set_attn_implementation", classmethod(lambda cls: False))
    with pytest.raises(MethodError, match="BertForSequenceClassification does not route attention"):
        AttentionCapture.install(model, "classifier")


# -- the method ------------------------------------------------------------------------------


def _seekr_config(tmp_path: Path, kind: str = "causal", name: str = "run", **seekr: Any) -> dict[str, Any]:
    return tiny_config(
        tmp_path, name=name, model=BUILTIN_BY_KIND[kind],
        methods=[{"name": "seekr", "ratio": 0.25, **seekr}],
        stream={"demo_tasks": 2, "demo_train_size": 16, "demo_eval_size": 6},
    )


def test_parameters_and_combinations_are_checked(tmp_path: Path) -> None:
    for params, key in (
        ({"schedule": "mixed"}, "seekr.schedule"), ({"selection": "best"}, "seekr.selection"),
        ({"combine": "max"}, "seekr.combine"), ({"w_ld": 1.5}, "seekr.w_ld"), ({"head_budget": 0.0}, "seekr.head_budget"),
        ({"query_budget": -1}, "seekr.query_budget"), ({"heads": 0}, "seekr.heads"),
    ):
        with pytest.raises(ConfigError, match=key):
            instantiate([MethodSpec(name="seekr", params=params)])
    methods = instantiate([MethodSpec(name="seekr", params={}), MethodSpec(name="replay", params={})])
    with pytest.raises(MethodError, match="both decide how a task's batches are formed"):
        check_combination(methods, "causal", lora=False)
    config = _seekr_config(tmp_path)
    config["train"]["gradient_checkpointing"] = True
    with pytest.raises(MethodError, match="gradient_checkpointing"):
        retain.run(config, quiet=True)
    with pytest.raises(MethodError, match="seekr.layers"):
        retain.run(_seekr_config(tmp_path, name="layers", layers=3), quiet=True)


def test_importance_pass_leaves_no_gradient_and_does_not_change_the_next_step(tmp_path: Path) -> None:
    runner = ContinualRunner(make_config(_seekr_config(tmp_path)), quiet=True)
    ctx, methods, _ = runner._build()
    seekr = methods[0]
    assert isinstance(seekr, Seekr)
    ctx.state.phase_index = 0
    model = ctx.unwrapped_model()
    model.train()
    batch = next(ctx.iterate_batches(ctx.encoded(0, "train")[:4]))
    start = copy.deepcopy(model.state_dict())

    def one_sgd_step() -> dict[str, torch.Tensor]:
        loss = ctx.base_loss(batch, ctx.forward(batch))
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
                p.grad = None
        return {k: v.clone() for k, v in model.state_dict().items()}

    without = one_sgd_step()
    model.load_state_dict(start)
    seekr.on_phase_start(ctx)  # the "before" maps
    items = [ctx.encoded(0, "train")[i] for i in seekr.buffer_indices_for(ctx, 0)]
    _, _, sensitivity, forgettability = seekr.importance_pass(ctx, items)
    assert all(p.grad is None for p in model.parameters()), "the importance pass leaked parameter gradients"
    assert model.training, "the pass must give the model its training mode back"
    assert sensitivity.shape == (2, 4) and bool((sensitivity > 0).all())
    assert torch.equal(forgettability, torch.zeros(2, 4))  # nothing trained between before and after
    with_pass = one_sgd_step()
    for name, value in without.items():
        assert torch.equal(value, with_pass[name]), name


@pytest.mark.parametrize("kind", ["causal", "seq2seq", "classifier"])
def test_tiny_run_stores_signals_per_kind(tmp_path: Path, kind: str) -> None:
    result = retain.run(_seekr_config(tmp_path, kind, query_budget=3), quiet=True)
    assert all(value is not None for value in result.matrix.rows[-1])
    log = (result.run_dir / "run.log").read_text()
    assert "seekr store: 4 examples" in log and "seekr_map_bytes" in log
    assert "seekr_replay_ce=" in log and "seekr_replay_attention_kl=" in log  # the terms, for calibrating w_ad
    # its passes over data, each timed (and with a bar on a terminal)
    assert re.search(r"seekr: head importance: (\d+)/\1 batches, \d+\.\ds", log)
    assert re.search(r"seekr: attention before the task: (\d+)/\1 batches, \d+\.\ds", log)
    state = load_method_states(result.run_dir)[0]  # what a resume restores
    assert len(state["maps"]["maps"]) == 8 and len(state["teacher"]["logits"]) == 8  # 4 per task
    assert state["importance"]["tasks"] == 2 and set(state["maps"]["heads"]) == {0, 1}
    assert "SEEKR head selection" in (result.run_dir / "report.md").read_text()


def test_seekr_composes_with_migu(tmp_path: Path) -> None:
    if "migu" not in available_methods():
        pytest.skip("migu is not registered")
    config = _seekr_config(tmp_path)
    config["methods"].append("migu")
    result = retain.run(config, quiet=True)
    assert all(value is not None for value in result.matrix.rows[-1])
    assert "seekr store" in (result.run_dir / "run.log").read_text()


def test_replay_term_means_average_each_term_over_the_batches_that_have_it() -> None:
    terms = ReplayTermMeans()
    terms.add(torch.tensor(2.0), torch.tensor(0.5), torch.tensor(0.01, requires_grad=True))
    terms.add(torch.tensor(4.0), torch.tensor(1.5), None)  # a batch whose examples distil no layer
    means = terms.means()
    assert means == pytest.approx({"seekr_replay_ce": 3.0, "seekr_replay_logit_kl": 1.0, "seekr_replay_attention_kl": 0.01})
    assert ReplayTermMeans().means() == {}
