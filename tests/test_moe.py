"""Mixture-of-experts models: the architecture adapter, MIGU and KIF per expert, the router loss.

Fused expert tensors (transformers 5: ``experts.gate_up_proj`` [E, 2I, H], ``experts.down_proj``
[E, H, I]) are E linear layers each; these tests pin that MIGU masks every expert's rows by that
expert's own tokens, that KIF makes every expert its own unit, and that the router's auxiliary
loss is in the loss retain trains on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig
from transformers.models.mixtral.modeling_mixtral import MixtralExperts

import retain
from retain.config import make_config
from retain.engine.runner import ContinualRunner
from retain.errors import ConfigError, MethodError
from retain.methods.base import Method
from retain.methods.kif.skill_units import build_skill_units
from retain.methods.kif.unit_fusion import fuse_, snapshot
from retain.methods.migu.magnitude import find_targets
from retain.methods.migu.method import Migu, MiguParams
from retain.models.architecture import expert_groups
from tests.conftest import tiny_config

MOE = "builtin:tiny-mixtral"

_TINY = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, num_experts_per_tok=2)


def _mixtral() -> nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(MixtralConfig(intermediate_size=24, num_local_experts=4, **_TINY))


# -- the adapter -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe", "qwen3_moe"])
def test_adapter_finds_two_fused_tensors_per_layer_each_split_by_expert(family: str) -> None:
    torch.manual_seed(0)
    config = {
        "mixtral": lambda: MixtralConfig(intermediate_size=24, num_local_experts=4, **_TINY),
        "qwen2_moe": lambda: Qwen2MoeConfig(moe_intermediate_size=12, shared_expert_intermediate_size=20, num_experts=4, **_TINY),
        "qwen3_moe": lambda: Qwen3MoeConfig(moe_intermediate_size=12, num_experts=4, head_dim=8, **_TINY),
    }[family]()
    model = AutoModelForCausalLM.from_config(config)
    groups = expert_groups(model)
    assert [g.name for g in groups] == ["model.layers.0.mlp.experts", "model.layers.1.mlp.experts"]
    inner = 24 if family == "mixtral" else 12
    for group in groups:
        assert group.num_experts == 4 and group.gated_linear
        gate_up, down = group.tensor("gate_up_proj"), group.tensor("down_proj")
        assert [t.attribute for t in group.tensors] == ["gate_up_proj", "down_proj"]
        assert (gate_up.expert_dim, gate_up.row_dim, gate_up.rows) == (0, 1, 2 * inner)
        assert (down.expert_dim, down.row_dim, down.rows) == (0, 1, 16)
    # a dense model has none; frozen experts are not units of any method
    assert expert_groups(AutoModelForCausalLM.from_config(_llama_config())) == []
    for group in groups:
        group.module.down_proj.requires_grad_(False)
    assert [t.attribute for g in expert_groups(model) for t in g.tensors] == ["gate_up_proj", "gate_up_proj"]


def test_adapter_gives_the_row_dim_of_a_transposed_layout_that_migu_cannot_recompute() -> None:
    from transformers import GptOssConfig

    config = GptOssConfig(intermediate_size=12, num_local_experts=4, head_dim=8, **_TINY)
    groups = expert_groups(AutoModelForCausalLM.from_config(config))
    assert len(groups) == 2 and not any(g.gated_linear for g in groups)  # [E, in, out] with biases
    assert [(t.attribute, t.row_dim, t.rows) for t in groups[0].tensors] == [("gate_up_proj", 2, 24), ("down_proj", 2, 16)]


def _llama_config() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2)


def test_adapter_sees_through_peft_and_what_peft_does_with_fused_experts(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    # LoRA on the attention projections (PEFT's Mixtral default): the fused experts are frozen
    # base weights, so no method acts on them; unfrozen, they are found through the wrapper.
    peft_model = get_peft_model(_mixtral(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    assert expert_groups(peft_model) == []
    for name, param in peft_model.named_parameters():
        if ".experts." in name:
            param.requires_grad_(True)
    assert [t.name for g in expert_groups(peft_model) for t in g.tensors][:2] == [
        "model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj",
    ]
    # retain's LoRA default on a MoE model: PEFT's targets for the architecture (PEFT 0.22 alone
    # adapts nothing there), the experts frozen
    config = tiny_config(tmp_path, model=MOE, methods=["seqlora"], stream={"demo_tasks": 1, "demo_train_size": 8, "demo_eval_size": 4})
    config["model"]["lora"] = {"enabled": True, "r": 2}
    ctx, _, _ = ContinualRunner(make_config(config), quiet=True)._build()
    adapted = {n.split(".")[-4] for n, p in ctx.unwrapped_model().named_parameters() if p.requires_grad and "lora_" in n}
    assert adapted == {"q_proj", "v_proj"} and expert_groups(ctx.unwrapped_model()) == []
    # PEFT 0.22 cannot put LoRA on the fused experts through target_modules: the run stops at load.
    config["model"]["lora"] = {"enabled": True, "r": 2, "target_modules": ["experts"]}
    with pytest.raises(ConfigError, match="(?s)model.lora.target_modules: .*MixtralExperts.* is not supported"):
        ContinualRunner(make_config(config), quiet=True)._build()


# -- MIGU: an expert's rows, by hand -----------------------------------------------------------


class RoutedToy(nn.Module):
    """One fused experts module (E=3, H=2, I=2, ReLU) with a fixed routing: token t -> expert ROUTE[t]."""

    def __init__(self) -> None:
        super().__init__()
        config = MixtralConfig(hidden_size=2, intermediate_size=2, num_local_experts=3, hidden_act="relu")
        self.experts = MixtralExperts(config)
        with torch.no_grad():
            # rows of gate_up_proj[e]: gate_1, gate_2, up_1, up_2
            self.experts.gate_up_proj.copy_(torch.tensor([
                [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]],
                [[0.0, 1.0], [1.0, 0.0], [0.0, 3.0], [0.0, 2.0]],
                [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]],
            ]))
            self.experts.down_proj.copy_(torch.tensor([[[1.0, 0.0], [2.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]]))

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor, route: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        flat = x.reshape(-1, 2)
        return self.experts(flat, route.reshape(-1, 1), torch.full((flat.shape[0], 1), weight))


def _fake_ctx(model: nn.Module) -> Any:
    return SimpleNamespace(
        kind="causal", unwrapped_model=lambda: model,
        state=SimpleNamespace(phase_index=1, phase=SimpleNamespace(name="task")),
        accelerator=SimpleNamespace(num_processes=1), logger=logging.getLogger("test-moe"),
    )


def test_migu_masks_each_expert_by_its_own_tokens_by_hand() -> None:
    # tokens t1 = (1, 0) -> e0, t2 = (0, 1) -> e1, t3 = (1, 1) -> e0, a padded (5, 5) -> e1; e2 gets none.
    # e0 gate_up: t1 -> (1, 0, 1, 1), |.|_1 = 3;  t3 -> (1, 1, 2, 0), |.|_1 = 4
    #    l1_mean = ((1/3 + 1/4) / 2, (1/4) / 2, (1/3 + 2/4) / 2, (1/3) / 2) = (7, 3, 10, 4) / 24
    #    quantile 0.7 of (3, 4, 7, 10): 7 + 0.1 * 3 = 7.3 -> keep row 2 only
    # e0 down: relu(gate) * up: t1 -> (1, 0), t3 -> (2, 0); down rows (1, 0), (2, 1): t1 -> (1, 2), t3 -> (2, 4)
    #    l1_mean = (1/3, 2/3) -> keep row 1
    # e1 gate_up (the pad excluded): t2 -> (1, 0, 3, 2), |.|_1 = 6 -> (1, 0, 3, 2) / 6
    #    quantile 0.7 of (0, 1, 2, 3) = 2.1 -> keep row 2
    # e1 down: relu(1, 0) * (3, 2) = (3, 0); identity rows -> (3, 0) -> (1, 0) -> keep row 0
    # e2: no token -> no row updates (its gradient is zero anyway)
    model, migu = RoutedToy(), Migu(MiguParams(threshold=0.7))
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [5.0, 5.0]]])
    mask, route = torch.tensor([[1, 1, 1, 0]]), torch.tensor([[0, 1, 0, 1]])
    ctx = _fake_ctx(model)
    migu.on_setup(ctx)
    migu.on_phase_start(ctx)
    model.train()
    (model(x, attention_mask=mask, route=route) * torch.tensor([1.0, 2.0])).sum().backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    migu.on_backward_end(ctx)
    stats, masks, counts = migu.last_statistics(), migu.last_masks(), migu.last_token_counts()
    name = "experts.{}[{}]".format
    torch.testing.assert_close(stats[name("gate_up_proj", 0)], torch.tensor([7.0, 3.0, 10.0, 4.0]) / 24)
    torch.testing.assert_close(stats[name("down_proj", 0)], torch.tensor([1.0, 2.0]) / 3)
    torch.testing.assert_close(stats[name("gate_up_proj", 1)], torch.tensor([1.0, 0.0, 3.0, 2.0]) / 6)
    torch.testing.assert_close(stats[name("down_proj", 1)], torch.tensor([1.0, 0.0]))
    assert [counts[name("gate_up_proj", e)] for e in range(3)] == [2.0, 1.0, 0.0]
    expected = {
        "gate_up_proj": [[False, False, True, False], [False, False, True, False], [False] * 4],
        "down_proj": [[False, True], [True, False], [False, False]],
    }
    for attribute, keeps in expected.items():
        for e, keep in enumerate(keeps):
            assert masks[name(attribute, e)].tolist() == keep, (attribute, e)
        keep = torch.tensor(keeps)
        grad, old = getattr(model.experts, attribute).grad, before[f"experts.{attribute}"]
        assert torch.equal(grad[keep], old[keep])  # kept rows: bit for bit
        assert torch.equal(grad[~keep], torch.zeros_like(old[~keep]))  # the others: exactly zero
        assert bool(old[:2][~keep[:2]].ne(0).any())  # ... and they had a gradient to lose


def test_migu_expert_statistic_is_the_down_output_before_the_routing_weight() -> None:
    # raw_sum over e1's one real token t2: gate_up (1, 0, 3, 2), down (3, 0), whatever the router's weight
    x = torch.tensor([[[0.0, 1.0]]])
    for weight in (1.0, 0.25):
        model, migu = RoutedToy(), Migu(MiguParams(statistic="raw_sum"))
        ctx = _fake_ctx(model)
        migu.on_setup(ctx)
        migu.on_phase_start(ctx)
        model.train()
        model(x, attention_mask=torch.ones(1, 1), route=torch.ones(1, 1, dtype=torch.long), weight=weight).sum().backward()
        migu.on_backward_end(ctx)
        stats = migu.last_statistics()
        assert stats["experts.gate_up_proj[1]"].tolist() == [1.0, 0.0, 3.0, 2.0]
        assert stats["experts.down_proj[1]"].tolist() == [3.0, 0.0]


def test_migu_refuses_a_model_with_nothing_to_mask_and_names_it() -> None:
    def first_forward(model: RoutedToy) -> None:
        migu = Migu(MiguParams())
        ctx = _fake_ctx(model)
        migu.on_setup(ctx)
        migu.on_phase_start(ctx)
        model.train()
        model(torch.ones(1, 1, 2), attention_mask=torch.ones(1, 1), route=torch.zeros(1, 1, dtype=torch.long))

    model = RoutedToy()
    model.requires_grad_(False)
    with pytest.raises(MethodError, match="no trainable linear layer or expert to mask in RoutedToy"):
        first_forward(model)
    model = RoutedToy()
    model.experts.is_transposed = True  # a layout MIGU cannot recompute: refused, never left unmasked
    with pytest.raises(MethodError, match="cannot measure the experts of experts .MixtralExperts."):
        first_forward(model)


# -- MIGU on a real tiny Mixtral: the step leaves non-top rows of every expert unchanged -------


class ExpertStepProbe(Method):
    """Listed after migu: snapshots the experts after the mask, compares them after the first step."""

    name = "probe"

    def __init__(self, migu: Migu) -> None:
        super().__init__()
        self.migu = migu
        self.before: dict[str, tuple[torch.Tensor, torch.Tensor, list[float]]] = {}
        self.checked = 0

    def on_backward_end(self, ctx: Any) -> None:
        if self.before:
            return
        masks, counts = self.migu.last_masks(), self.migu.last_token_counts()
        for group in expert_groups(ctx.unwrapped_model()):
            for tensor in group.tensors:
                names = [f"{group.name}.{tensor.attribute}[{e}]" for e in range(group.num_experts)]
                keep = torch.stack([masks[n] for n in names])
                self.before[tensor.name] = (tensor.param.detach().clone(), keep, [counts[n] for n in names])

    def on_step_end(self, ctx: Any) -> None:
        if self.checked:
            return
        params = dict(ctx.unwrapped_model().named_parameters())
        for name, (old, keep, counts) in self.before.items():
            new = params[name].detach()
            assert torch.equal(new[~keep], old[~keep]), name  # masked rows of every expert: bit-identical
            for e, count in enumerate(counts):
                if count:  # an expert that got tokens moved its kept rows
                    assert not torch.equal(new[e][keep[e]], old[e][keep[e]]), (name, e)
            self.checked += 1


def _build(tmp_path: Path, **migu: Any) -> tuple[Any, list[Method]]:
    config = tiny_config(
        tmp_path, model=MOE, methods=[{"name": "migu", "skip_first_task": False, **migu}],
        stream={"demo_tasks": 1, "demo_train_size": 16, "demo_eval_size": 4}, train={"weight_decay": 0.0},
    )
    ctx, methods, _ = ContinualRunner(make_config(config), quiet=True)._build()
    return ctx, methods


def test_migu_step_leaves_non_top_rows_of_every_expert_unchanged(tmp_path: Path) -> None:
    ctx, (migu,) = _build(tmp_path)
    model = ctx.unwrapped_model()
    # before: layer discovery alone (nn.Linear / Conv1D / LoRA) never saw the fused experts
    old_targets = find_targets(model, include_head=False, seq2seq=False)
    fused = {id(t.param) for g in expert_groups(model) for t in g.tensors}
    assert len(fused) == 4 and not any(id(p) in fused for t in old_targets for p, _ in t.grads)
    probe = ExpertStepProbe(migu)
    ContinualRunner(ctx.config, quiet=True)._train_one_phase(ctx, [migu, probe], 0, False)
    assert probe.checked == 4  # 2 layers x (gate_up_proj, down_proj)
    fractions = migu.fractions["demo1"]
    expert_rows = [f for n, f in fractions.items() if ".experts." in n]
    assert len(expert_rows) == 16 and all(0.0 <= f <= 0.5 for f in expert_rows)


# -- KIF: each expert its own unit -------------------------------------------------------------


def test_kif_matrix_units_are_per_expert_and_fusion_weighs_each_expert() -> None:
    model = _mixtral()
    units = build_skill_units(model, "matrix")
    n_tensors = len([p for p in model.parameters() if p.requires_grad])
    assert len(units.tensors) == n_tensors
    assert len(units) == n_tensors - 4 + 4 * 4  # each of the 4 fused tensors counts its 4 experts
    assert units.kinds() == ["matrix"] * len(units) and int(units.families().sum()) == 0
    first = [t for t in units.tensors if t.name == "model.layers.0.mlp.experts.gate_up_proj"][0]
    assert units.names[first.first : first.first + 4] == [f"model.layers.0.mlp.experts.gate_up_proj[e{i}]" for i in range(4)]
    # a unit's score is the mean of its expert's slice
    elements = [torch.zeros_like(t.param, dtype=torch.float32) for t in units.tensors]
    index = units.tensors.index(first)
    elements[index] = torch.arange(4.0).reshape(4, 1, 1).expand_as(first.param).clone()
    assert units.unit_scores(elements)[first.first : first.first + 4].tolist() == [0.0, 1.0, 2.0, 3.0]
    # fusion with lambda_new = 0, 0.25, 0.5, 1 on its experts: each expert mixed with its own weight
    previous = snapshot(units)
    with torch.no_grad():
        first.param.add_(1.0)
    new = first.param.detach().clone()
    lam = torch.full((len(units),), 1.0)
    lam[first.first : first.first + 4] = torch.tensor([0.0, 0.25, 0.5, 1.0])
    fuse_(units, previous, lam)
    prev = previous[index]
    for e, weight in enumerate([0.0, 0.25, 0.5, 1.0]):
        torch.testing.assert_close(first.param[e], weight * new[e] + (1 - weight) * prev[e])
    assert torch.equal(first.param[0], prev[0]) and torch.equal(first.param[3], new[3])


# -- the router's auxiliary loss ---------------------------------------------------------------


def _load_balancing_by_hand(router_logits: tuple[torch.Tensor, ...], mask: torch.Tensor, experts: int, top_k: int) -> torch.Tensor:
    """Switch Transformer's loss: E * sum_e (share of real-token routings to e) * (mean router prob of e)."""
    real = mask.reshape(-1).bool()
    probs = torch.cat([torch.softmax(logits.float(), dim=-1)[real] for logits in router_logits])
    chosen = torch.topk(probs, top_k, dim=-1).indices
    share = torch.stack([(chosen == e).float().sum() / probs.shape[0] for e in range(experts)])
    return experts * (share * probs.mean(dim=0)).sum()


def test_router_aux_loss_is_in_the_training_loss_and_can_be_switched_off(tmp_path: Path) -> None:
    def build(on: bool) -> Any:
        config = tiny_config(tmp_path, name=f"aux{on}", model=MOE, stream={"demo_tasks": 1, "demo_train_size": 8, "demo_eval_size": 4})
        config["model"]["router_aux_loss"] = on
        ctx, _, _ = ContinualRunner(make_config(config), quiet=True)._build()
        return ctx

    on, off = build(True), build(False)
    assert on.unwrapped_model().config.output_router_logits and not off.unwrapped_model().config.output_router_logits
    batch = next(on.iterate_batches(on.phase_train_examples(), batch_size=8))
    on.model.train(), off.model.train()
    outputs = on.forward(batch)
    loss_on, loss_off = on.base_loss(batch, outputs), off.base_loss(batch, off.forward(batch))
    config = on.unwrapped_model().config
    aux = _load_balancing_by_hand(outputs.router_logits, batch.inputs["attention_mask"], config.num_local_experts, config.num_experts_per_tok)
    torch.testing.assert_close(outputs.aux_loss, aux)
    torch.testing.assert_close(loss_on - loss_off, config.router_aux_loss_coef * aux)
    assert float(aux.detach()) > 0.0  # HF counts top-k picks: a perfectly balanced router gives top_k (2)


# -- end to end on builtin:tiny-mixtral --------------------------------------------------------


@pytest.mark.parametrize("methods", [
    [{"name": "migu", "skip_first_task": False}], ["kif", {"name": "replay", "ratio": 0.25}], [{"name": "seekr", "ratio": 0.25}],
], ids=["migu", "kif-m", "seekr"])
def test_tiny_mixtral_runs_to_a_matrix(tmp_path: Path, methods: list[Any]) -> None:
    config = tiny_config(
        tmp_path, model=MOE, methods=methods, stream={"demo_train_size": 16, "demo_eval_size": 4},
        eval={"before_training": False},
    )
    result = retain.run(config, quiet=True)  # evaluation generates with the router logits on
    assert len(result.matrix.rows) == 2 and all(v is not None for v in result.matrix.rows[-1])
    log = (result.run_dir / "run.log").read_text()
    name = methods[0] if isinstance(methods[0], str) else methods[0]["name"]
    if name == "migu":
        assert "model.layers.1.mlp.experts.down_proj[3]" in (result.run_dir / "report.md").read_text()
    if name == "kif":
        assert "kif: 33 matrix units over 21 tensors" in log and "kif-m: " in log
