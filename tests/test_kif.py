"""KIF: importance EMAs, skill-unit scores, the two fusions, the KIF-M mask, and tiny runs."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import retain
from retain.config import LoraConfig, make_config
from retain.engine.runner import ContinualRunner
from retain.errors import ConfigError, MethodError
from retain.methods.kif.method import KIF, KIFParams, orthogonality_penalty
from retain.engine.loop import run_extra_steps
from retain.methods.kif.masked_replay import masked_replay_steps, split_frozen
from retain.methods.kif.skill_units import build_skill_units
from retain.methods.kif.unit_fusion import (
    adaptive_weights,
    categorical_weights,
    cumulative_importance,
    fuse_,
    important,
    min_max,
    snapshot,
    task_specific,
    uniform_weights,
)
from retain.methods.kif.unit_importance import ImportanceTracker
from retain.models.loading import apply_lora
from tests.conftest import tiny_config


class ToyLora(nn.Module):
    """Parameter names shaped like PEFT's: one LoRA module (r=2, in=3, out=2) and a full head."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Module()
        self.layer.lora_A = nn.ModuleDict({"default": nn.Linear(3, 2, bias=False)})  # A: r x in = 2 x 3
        self.layer.lora_B = nn.ModuleDict({"default": nn.Linear(2, 2, bias=False)})  # B: out x r = 2 x 2
        self.head = nn.Linear(2, 1)  # weight 1 x 2, bias 1


# -- importance -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "expected_i", "expected_u"),
    [
        # first order, w = 2: s1 = |2*0.5| = 1, s2 = |2*0.25| = 0.5
        # I1 = 0.15*1 = 0.15                 U1 = 0.15*|1 - 0.15| = 0.1275
        # I2 = 0.85*0.15 + 0.15*0.5 = 0.2025  U2 = 0.85*0.1275 + 0.15*|0.5 - 0.2025| = 0.153
        ("first", 0.2025, 0.153),
        # second order: s = |wg - (wg)^2/2|: s1 = |1 - 0.5| = 0.5, s2 = |0.5 - 0.125| = 0.375
        # I1 = 0.15*0.5 = 0.075               U1 = 0.15*|0.5 - 0.075| = 0.06375
        # I2 = 0.85*0.075 + 0.15*0.375 = 0.12  U2 = 0.85*0.06375 + 0.15*|0.375 - 0.12| = 0.0924375
        ("second", 0.12, 0.0924375),
    ],
)
def test_ema_importance_on_a_known_gradient_sequence(order: str, expected_i: float, expected_u: float) -> None:
    w = nn.Parameter(torch.tensor([2.0, -1.0]))
    tracker = ImportanceTracker([w], order=order, beta1=0.85, beta2=0.85)
    # second element: w = -1, g = 0 then 0 -> s = 0 every step, I = U = 0
    for g in (0.5, 0.25):
        w.grad = torch.tensor([g, 0.0])
        tracker.update()
    assert tracker.steps == 2
    assert tracker.sensitivity[0].tolist() == pytest.approx([expected_i, 0.0], rel=1e-6)
    assert tracker.uncertainty[0].tolist() == pytest.approx([expected_u, 0.0], rel=1e-6)
    assert tracker.element_scores()[0].tolist() == pytest.approx([expected_i * expected_u, 0.0], rel=1e-6)


def test_importance_of_a_negative_product_is_its_magnitude() -> None:
    w = nn.Parameter(torch.tensor([-1.0]))
    w.grad = torch.tensor([3.0])  # wg = -3
    first, second = ImportanceTracker([w], "first"), ImportanceTracker([w], "second")
    first.update()
    second.update()
    assert first.sensitivity[0].item() == pytest.approx(0.15 * 3.0)  # |-3|
    assert second.sensitivity[0].item() == pytest.approx(0.15 * 7.5)  # |-3 - 9/2| = 7.5


def test_rank_unit_scores_are_the_mean_over_the_rank_one_update() -> None:
    model = ToyLora()
    units = build_skill_units(model, "rank")
    assert units.names == ["layer[r0]", "layer[r1]", "head.weight", "head.bias"]
    assert units.kinds() == ["rank", "rank", "matrix", "matrix"]
    s_a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]])  # row means: 2, 4
    s_b = torch.tensor([[1.0, 1.0], [3.0, 5.0]])  # column means: 2, 3
    s_head_w = torch.tensor([[2.0, 4.0]])  # mean 3
    s_head_b = torch.tensor([5.0])  # mean 5
    scores = units.unit_scores([s_a, s_b, s_head_w, s_head_b])
    # r0 = 2*2 = 4 (= mean of outer(S_B[:,0], S_A[0,:]) = mean(1,2,3,3,6,9) = 24/6); r1 = 4*3 = 12
    assert scores.tolist() == [4.0, 12.0, 3.0, 5.0]
    assert scores[0].item() == torch.outer(s_b[:, 0], s_a[0]).mean().item()


def test_matrix_units_are_one_per_tensor() -> None:
    units = build_skill_units(ToyLora(), "matrix")
    assert units.names == ["layer.lora_A.default.weight", "layer.lora_B.default.weight", "head.weight", "head.bias"]
    s = [torch.tensor([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]]), torch.tensor([[1.0, 1.0], [3.0, 5.0]]),
         torch.tensor([[2.0, 4.0]]), torch.tensor([5.0])]
    assert units.unit_scores(s).tolist() == [3.0, 2.5, 3.0, 5.0]  # 18/6, 10/4, 6/2, 5


def test_tied_weights_are_one_unit() -> None:
    model = nn.Module()
    model.embed = nn.Embedding(5, 3)
    model.head = nn.Linear(3, 5, bias=False)
    model.head.weight = model.embed.weight
    assert build_skill_units(model, "matrix").names == ["embed.weight"]


def test_units_bind_to_replaced_parameters_by_name() -> None:
    """Sharded training registers new parameter objects; units follow them by name."""
    model = ToyLora()
    units = build_skill_units(model, "rank")
    replaced = {name: nn.Parameter(p.detach().clone()) for name, p in model.named_parameters()}
    units.bind(replaced)
    assert all(t.param is replaced[t.name] for t in units.tensors)
    a, b = units.lora_pairs[0]
    assert a is replaced["layer.lora_A.default.weight"] and b is replaced["layer.lora_B.default.weight"]
    with pytest.raises(MethodError, match="no parameter layer.lora_A.default.weight"):
        units.bind({})


def test_rank_units_without_lora_name_the_key() -> None:
    with pytest.raises(MethodError, match="kif.units"):
        build_skill_units(nn.Linear(2, 2), "rank")


# -- normalisation, thresholds, fusion weights ----------------------------------------------


def test_min_max_and_cumulative_importance() -> None:
    assert min_max(torch.tensor([2.0, 4.0, 6.0])).tolist() == [0.0, 0.5, 1.0]
    assert min_max(torch.tensor([3.0, 3.0])).tolist() == [0.0, 0.0]  # constant: nothing stands out
    # Norm(prev) = [0, 1, 0.5], Norm(new) = [1, 0, 0]: 0.7*[0, 1, 0.5] + 0.3*[1, 0, 0] = [0.3, 0.7, 0.35]
    # Norm -> [0, 1, 0.125]
    cum = cumulative_importance(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([10.0, 0.0, 0.0]), 0.7)
    assert cum.tolist() == pytest.approx([0.0, 1.0, 0.125])


def test_each_unit_family_is_normalised_on_its_own() -> None:
    # ToyLora under rank units: 2 rank units (LoRA), then the head's weight and bias (matrix units).
    units = build_skill_units(ToyLora(), "rank")
    assert units.kinds() == ["rank", "rank", "matrix", "matrix"]
    families = units.families()
    # Rank scores are products of two means (~1e-25), matrix scores one mean (~1e-9).
    scores = torch.tensor([1e-25, 3e-25, 2e-9, 4e-9])
    # One shared min-max squashes both rank units to ~0 ...
    assert min_max(scores)[:2].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    # ... per family each spans [0, 1]: rank (1e-25, 3e-25) -> (0, 1), matrix (2e-9, 4e-9) -> (0, 1).
    assert min_max(scores, families).tolist() == pytest.approx([0.0, 1.0, 0.0, 1.0])
    # Cumulative importance normalises per family too: prev Norm [1, 0 | 0, 1], new Norm [0, 1 | 1, 0]
    # 0.7*prev + 0.3*new = [0.7, 0.3 | 0.3, 0.7] -> Norm per family [1, 0 | 0, 1]
    previous = torch.tensor([5e-25, 1e-25, 1e-9, 7e-9])
    cum = cumulative_importance(previous, scores, 0.7, families)
    assert cum.tolist() == pytest.approx([1.0, 0.0, 0.0, 1.0])


def test_uniform_fusion_is_plain_averaging() -> None:
    assert uniform_weights(torch.tensor([0.0, 0.3, 1.0])).tolist() == [0.5, 0.5, 0.5]


def test_adaptive_fusion_varies_on_a_classifier_with_lora(tmp_path: Path) -> None:
    """LoRA rank units plus the fully trained head (matrix units): lambda must depend on importance."""
    config = tiny_config(tmp_path, model="builtin:tiny-bert", methods=["kif"],
                         stream={"demo_tasks": 2, "demo_train_size": 24, "demo_eval_size": 8})
    config["model"]["lora"] = {"enabled": True, "r": 4}
    result = retain.run(config, quiet=True)
    saved = json.loads((result.run_dir / "kif_importance.json").read_text())
    assert saved["fusion"] == "adaptive" and {"rank", "matrix"} <= set(saved["kinds"])
    rank_lambdas = torch.tensor([lam for lam, kind in zip(saved["lambda_new"][1], saved["kinds"]) if kind == "rank"])
    assert rank_lambdas.std() > 0.05  # a shared min-max made every rank unit exactly 0.5
    assert rank_lambdas.min() < 0.4 and rank_lambdas.max() > 0.6


def test_uniform_fusion_run_averages_every_unit(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, model="builtin:tiny-bert", methods=[{"name": "kif", "fusion": "uniform"}],
                         stream={"demo_tasks": 2, "demo_train_size": 16, "demo_eval_size": 8})
    config["model"]["lora"] = {"enabled": True, "r": 2}
    saved = json.loads((retain.run(config, quiet=True).run_dir / "kif_importance.json").read_text())
    assert saved["fusion"] == "uniform" and set(saved["lambda_new"][1]) == {0.5}


def test_top_20_percent_is_strictly_above_the_80th_percentile() -> None:
    scores = torch.linspace(0, 1, 10)  # 80th percentile (linear) = 0.8: units 8 and 9 are above
    assert important(scores, 0.2).nonzero().flatten().tolist() == [8, 9]


def test_categorical_fusion_covers_the_four_cases() -> None:
    # 4 matrix units; top_fraction 0.5, so the median splits each vector:
    # old = [1, 0.9, 0, 0.1] -> median 0.5 -> important {0, 1}; new = [1, 0, 0.8, 0.2] -> {0, 2}
    old = torch.tensor([1.0, 0.9, 0.0, 0.1])
    new = torch.tensor([1.0, 0.0, 0.8, 0.2])
    lam = categorical_weights(new, old, top_fraction=0.5)
    # unit 0 shared -> 0.3, unit 1 old only -> 0, unit 2 new only -> 1, unit 3 neither -> 0.5
    assert lam.tolist() == pytest.approx([0.3, 0.0, 1.0, 0.5])
    assert task_specific(new, old, 0.5).tolist() == [False, False, True, False]

    model = nn.Module()
    for i in range(4):
        model.register_parameter(f"u{i}", nn.Parameter(torch.full((2,), 20.0)))  # the new model: 20
    units = build_skill_units(model, "matrix")
    previous = [torch.full((2,), 10.0) for _ in range(4)]  # the previous fused model: 10
    fuse_(units, previous, lam)
    # 0.3*20 + 0.7*10 = 13; old only keeps 10; new only takes 20; neither 0.5*20 + 0.5*10 = 15
    assert [p[0].item() for p in units.parameters] == pytest.approx([13.0, 10.0, 20.0, 15.0])


def test_adaptive_weights_are_a_tempered_softmax() -> None:
    lam = adaptive_weights(torch.tensor([1.0, 0.5, 0.0]), torch.tensor([0.0, 0.5, 1.0]), temperature=0.25)
    # exp(4) / (exp(4) + exp(0)) = 1 / (1 + e^-4) = 0.98201...; equal scores -> 0.5; mirrored -> 0.01799
    assert lam.tolist() == pytest.approx([1 / (1 + math.exp(-4)), 0.5, 1 / (1 + math.exp(4))])


def test_rank_fusion_weights_rows_of_a_and_columns_of_b() -> None:
    model = ToyLora()
    units = build_skill_units(model, "rank")
    previous = [torch.zeros_like(p) for p in units.parameters]
    with torch.no_grad():
        for p in units.parameters:
            p.fill_(1.0)
    fuse_(units, previous, torch.tensor([0.25, 0.75, 1.0, 0.0]))
    a, b, head_w, head_b = units.parameters
    assert a.tolist() == [[0.25] * 3, [0.75] * 3]  # row i of A gets lambda(r_i)
    assert b.tolist() == [[0.25, 0.75], [0.25, 0.75]]  # column i of B gets lambda(r_i)
    assert head_w.tolist() == [[1.0, 1.0]] and head_b.tolist() == [0.0]


def _tiny_bert_lora() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=32, num_labels=3)
    return apply_lora(BertForSequenceClassification(config), LoraConfig(enabled=True, r=4, dropout=0.0), "classifier")


@pytest.mark.parametrize("lam_value", [1.0, 0.0])
def test_fusion_with_lambda_one_or_zero_reproduces_a_model_exactly(lam_value: float) -> None:
    """On the model's outputs, with LoRA unmerged and the fully trained head (modules_to_save)."""
    model = _tiny_bert_lora().eval()
    units = build_skill_units(model, "rank")
    assert any("classifier" in n for n in units.names)
    x = torch.randint(0, 40, (3, 7))
    previous = snapshot(units)
    out_previous = model(input_ids=x).logits
    torch.manual_seed(1)
    with torch.no_grad():  # "fine-tune": move every unit tensor (B starts at zero)
        for p in units.parameters:
            p.add_(torch.randn_like(p))
    out_new = model(input_ids=x).logits
    assert not torch.equal(out_new, out_previous)
    fuse_(units, previous, torch.full((len(units),), lam_value))
    expected = out_new if lam_value == 1.0 else out_previous
    assert torch.equal(model(input_ids=x).logits, expected)


def test_orthogonality_penalty_by_hand() -> None:
    a = nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))  # A A^T - I = diag(0, 3): ||.||_F = 3
    b = nn.Parameter(torch.zeros(3, 2))  # B^T B - I = -I (2x2): ||.||_F = sqrt(2)
    a2 = nn.Parameter(torch.eye(2, 5))  # orthonormal rows: 0 (another shape group)
    b2 = nn.Parameter(torch.eye(4, 2))  # B^T B = I: 0
    # mean over the 4 matrices: (3 + sqrt(2) + 0 + 0) / 4
    value = orthogonality_penalty([(a, b), (a2, b2)])
    assert value.item() == pytest.approx((3 + math.sqrt(2)) / 4, rel=1e-6)


# -- KIF-M: the mask keeps frozen units bit-identical ---------------------------------------


def test_masked_replay_keeps_frozen_units_bit_identical(tmp_path: Path) -> None:
    raw = tiny_config(tmp_path, model="builtin:tiny-bert", methods=["kif"],
                      train={"weight_decay": 0.5})  # the run's decay would move zero-grad weights
    raw["model"]["lora"] = {"enabled": True, "r": 4}
    config = make_config(raw)
    ctx, methods, _ = ContinualRunner(config, quiet=True)._build()
    units = methods[0].units
    assert units is not None
    frozen = torch.zeros(len(units), dtype=torch.bool)
    frozen[::3] = True  # some ranks of several A/B tensors (partial) ...
    head = [i for i, n in enumerate(units.names) if n.startswith("classifier") and n.endswith("weight")]
    frozen[head] = True  # ... and one whole tensor (the head's weight, a matrix unit)
    before = snapshot(units)
    split = split_frozen(units, frozen)
    steps = masked_replay_steps(split, ctx.encoded(0, "train"), lr=5e-2, epochs=2, batch_size=8, seed=3,
                                extra_loss=methods[0]._orthogonality)
    stats = run_extra_steps(ctx, steps)  # the engine's loop runs KIF-M's steps
    assert stats.steps == 8 and split.fully_frozen == 1 and len(split.masks) > 0
    changed = 0
    for tensor, old in zip(units.tensors, before):
        mask = tensor.broadcast(frozen).expand_as(tensor.param)
        now = tensor.param.detach()
        assert torch.equal(now[mask], old[mask]), tensor.name  # bit-identical
        changed += int(not torch.equal(now[~mask], old[~mask]))
    assert changed > 0


# -- parameters and end-to-end runs ---------------------------------------------------------


@pytest.mark.parametrize(("key", "value"), [("fusion", "hard"), ("temperature", 0.0), ("top_fraction", 1.0), ("orthogonality", -1.0)])
def test_bad_parameters_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"kif.{key}"):
        KIF(KIFParams(**{key: value}))


def test_lora_run_with_replay_is_kif_m(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, methods=["kif", {"name": "replay", "ratio": 0.25}],
                         stream={"demo_tasks": 3, "demo_train_size": 24, "demo_eval_size": 8})
    config["model"]["lora"] = {"enabled": True, "r": 4}
    result = retain.run(config, quiet=True)
    log = (result.run_dir / "run.log").read_text()
    assert "rank units" in log and "adaptive fusion" in log
    assert log.count("kif-m:") == 2  # after tasks 2 and 3 (nothing earlier to replay after task 1)
    assert len(re.findall(r"kif-m: .*, \d+\.\ds\n", log)) == 2  # timed
    assert len(re.findall(r"kif: unit importance and fusion after demo\d: \d+\.\ds", log)) == 2
    assert log.count(": 3 micro-batches") == 3  # replay does not mix the buffer into the tasks
    saved = json.loads((result.run_dir / "kif_importance.json").read_text())
    assert saved["tasks"] == ["demo1", "demo2", "demo3"] and saved["lambda_new"][0] is None
    assert len(saved["units"]) == 16 and all(len(v) == 16 for v in saved["normalised"])
    assert saved["records"][2]["replay_steps"] == 2  # 12 buffer examples / 8
    assert (result.run_dir / "kif_importance.png").is_file()
    assert "## KIF skill units" in (result.run_dir / "report.md").read_text()


def test_full_finetuning_run_uses_matrix_units(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, model="builtin:tiny-t5", methods=["kif"], stream={"demo_train_size": 16, "demo_eval_size": 8})
    result = retain.run(config, quiet=True)
    saved = json.loads((result.run_dir / "kif_importance.json").read_text())
    assert saved["granularity"] == "matrix" and saved["fusion"] == "categorical"
    assert "shared.weight" in saved["units"]  # the tied embedding / lm_head: one unit
    assert {round(v, 6) for v in saved["lambda_new"][1]} <= {0.0, 0.3, 0.5, 1.0}


def test_kif_m_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    def config(name: str) -> dict:
        c = tiny_config(tmp_path, name=name, model="builtin:tiny-bert", methods=["kif", {"name": "replay", "ratio": 0.25}],
                        stream={"demo_tasks": 2, "demo_train_size": 16, "demo_eval_size": 8})
        c["model"]["lora"] = {"enabled": True, "r": 2}
        return c

    straight = retain.run(config("straight"), quiet=True)
    stopped = retain.run(config("stopped"), quiet=True, stop_after=1)  # task 2 (fusion, KIF-M) resumes
    resumed = retain.run(stopped.run_dir, resume=True, quiet=True)
    assert resumed.matrix.rows == straight.matrix.rows
    a = json.loads((straight.run_dir / "kif_importance.json").read_text())
    b = json.loads((resumed.run_dir / "kif_importance.json").read_text())
    assert a["importance"] == b["importance"] and a["lambda_new"] == b["lambda_new"]


@pytest.mark.parametrize("during_task", [False, True])
def test_kif_decides_whether_replay_mixes_its_buffer_into_the_tasks(during_task: bool) -> None:
    from types import SimpleNamespace

    from retain.methods.replay import Replay

    replay = Replay()
    kif = KIF(KIFParams(replay_during_task=during_task))
    model = ToyLora()
    # what the runner gives every method: the declared capabilities and the offered components
    ctx = SimpleNamespace(
        unwrapped_model=lambda: model, lora=True, logger=logging.getLogger("test"),
        declares=lambda c: c in kif.capabilities | replay.capabilities,
        components_of=lambda kind: [replay.buffer] if kind == "replay_buffer" else [],
    )
    kif.on_setup(ctx)  # type: ignore[arg-type]
    replay.on_setup(ctx)  # type: ignore[arg-type]
    assert kif.buffers == [replay.buffer] and kif.fusion == "adaptive"
    assert replay.buffer.mixes_into_tasks is during_task  # KIF declares, the buffer decides; no flag flipped
