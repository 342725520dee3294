"""The official-code settings of SEEKR, KIF and MIGU, each pinned against the released code's
formula worked by hand on tiny tensors, and ``compat: official``, which sets them all at once."""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

import retain
from retain.config import MethodSpec, describe_fields
from retain.data.collate import IGNORE_INDEX, EncodedExample, MicroBatch
from retain.engine.checkpoint import load_method_states
from retain.errors import ConfigError
from retain.methods.common.teacher_store import TeacherLogits, kl_to_teacher
from retain.methods.kif.method import KIF, KIFParams
from retain.methods.kif.skill_units import build_skill_units
from retain.methods.kif.unit_importance import ImportanceTracker
from retain.methods.migu.method import MiguParams
from retain.methods.registry import instantiate
from retain.methods.seekr.attention_store import draw_query_rows
from retain.methods.seekr.head_importance import head_forgettability, padded_length
from retain.methods.seekr.logit_distillation import (
    answer_rows,
    logit_distillation_loss,
    soft_target_ce,
    student_teacher_rows,
)
from retain.methods.seekr.method import Seekr, SeekrParams
from tests.conftest import tiny_config


def _params(name: str, **given: object) -> object:
    return instantiate([MethodSpec(name, dict(given))])[0].params


# -- compat: official ------------------------------------------------------------------------


def test_compat_official_sets_every_official_value_and_retain_changes_nothing() -> None:
    seekr = _params("seekr", compat="official")
    assert (seekr.logit_positions, seekr.logit_loss, seekr.importance_padding, seekr.query_sampling) == (
        "official", "soft_ce", "padded_to_8", "with_replacement",
    )
    assert _params("seekr") == SeekrParams() == _params("seekr", compat="retain")
    assert _params("kif", compat="official").skip_first_step is True
    assert _params("kif") == KIFParams() and KIFParams().skip_first_step is False
    migu = _params("migu", compat="official")
    assert (migu.statistic, migu.include_padding, migu.mask_head, migu.skip_first_task) == ("raw_sum", True, True, True)
    assert _params("migu") == MiguParams()
    # the official mode leaves everything else at its default (query_budget stays 100)
    assert seekr.query_budget == SeekrParams().query_budget == 100


def test_a_key_given_beside_compat_official_wins() -> None:
    seekr = _params("seekr", compat="official", logit_positions="shifted")
    assert seekr.logit_positions == "shifted" and seekr.logit_loss == "soft_ce"
    assert _params("kif", compat="official", skip_first_step=False).skip_first_step is False


def test_bad_official_mode_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"seekr\.compat"):
        _params("seekr", compat="paper")
    with pytest.raises(ConfigError, match=r"seekr\.logit_positions"):
        _params("seekr", logit_positions="unshifted")
    with pytest.raises(ConfigError, match=r"seekr\.importance_padding"):
        _params("seekr", importance_padding="padded_to_16")
    with pytest.raises(ConfigError, match=r"seekr\.query_sampling"):
        _params("seekr", query_sampling="replacement")
    with pytest.raises(ConfigError, match=r"kif\.skip_first_step"):
        _params("kif", skip_first_step="sometimes")
    with pytest.raises(ConfigError, match="unknown key"):  # a method without an official mode
        _params("ewc", compat="official")


def test_retain_list_shows_what_compat_official_sets() -> None:
    help_text = {key: text for key, _, text in describe_fields(SeekrParams)}["compat"]
    for setting in ("logit_positions='official'", "logit_loss='soft_ce'", "importance_padding='padded_to_8'",
                    "query_sampling='with_replacement'"):
        assert setting in help_text
    assert "skip_first_step=True" in {k: t for k, _, t in describe_fields(KIFParams)}["compat"]


# -- SEEKR: logit positions and the soft-target cross-entropy ---------------------------------


def _causal_batch() -> MicroBatch:
    """One causal example of 4 tokens whose answer is tokens 2 and 3."""
    inputs = {
        "input_ids": torch.tensor([[5, 6, 1, 0]]),
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
        "labels": torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 1, 0]]),
    }
    return MicroBatch(inputs=inputs, keys=["t/0"], task_indices=[0], source="replay")


def test_official_positions_take_the_rows_at_the_answer_tokens_without_shift() -> None:
    logits = torch.arange(8.0).reshape(1, 4, 2)  # row t = [2t, 2t + 1]
    batch = _causal_batch()
    official = answer_rows("causal", batch, logits, "official")[0]
    shifted = answer_rows("causal", batch, logits, "shifted")[0]
    assert official.tolist() == [[4.0, 5.0], [6.0, 7.0]]  # positions 2, 3 (labels != -100)
    assert shifted.tolist() == [[2.0, 3.0], [4.0, 5.0]]  # positions 1, 2 (predicting tokens 2, 3)


def test_soft_target_ce_by_hand_and_its_gradient_equals_the_kl() -> None:
    # teacher row [0, 0] -> p = (1/2, 1/2); student row [0, ln 3] -> q = (1/4, 3/4)
    student = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    teacher = torch.tensor([[0.0, 0.0]])
    ce = soft_target_ce(student, teacher)
    by_hand = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))  # = 0.5 ln(16/3)
    assert float(ce.detach()) == pytest.approx(by_hand, rel=1e-6)
    assert float(logit_distillation_loss(student, teacher, "kl").detach()) == pytest.approx(by_hand - math.log(2.0), rel=1e-5)
    (grad_ce,) = torch.autograd.grad(ce, student)
    (grad_kl,) = torch.autograd.grad(kl_to_teacher(student, teacher), student)
    assert torch.allclose(grad_ce, grad_kl, atol=1e-7)
    assert grad_ce[0].tolist() == pytest.approx([0.25 - 0.5, 0.75 - 0.5], abs=1e-6)  # q - p


def test_official_replay_term_is_the_released_formula_on_a_stored_teacher() -> None:
    batch = _causal_batch()
    student_logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]])
    teacher_logits = torch.tensor([[[1.0, 1.0], [0.0, 2.0], [1.0, 0.0], [0.5, 0.5]]])
    store = TeacherLogits(dtype=torch.float32)
    store.logits["t/0"] = answer_rows("causal", batch, teacher_logits, "official")[0]
    rows = student_teacher_rows(SimpleNamespace(kind="causal"), batch, student_logits, store, "official")
    assert rows is not None
    loss = logit_distillation_loss(*rows, loss="soft_ce")
    # the released code: CrossEntropyLoss()(logits[labels != -100], softmax(teacher[labels != -100]))
    mask = batch.inputs["labels"] != IGNORE_INDEX
    p = torch.softmax(teacher_logits[mask], dim=-1)
    by_hand = -(p * torch.log_softmax(student_logits[mask], dim=-1)).sum(-1).mean()
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-6)
    # rows 2 and 3 by hand: -(e/(1+e) ln(e^2/(1+e^2)) + 1/(1+e) ln(1/(1+e^2)))  and  -(ln(1/(1+e^3)) + ln(e^3/(1+e^3)))/2
    e = math.e
    row2 = -(e / (1 + e) * math.log(e**2 / (1 + e**2)) + 1 / (1 + e) * math.log(1 / (1 + e**2)))
    row3 = -(math.log(1 / (1 + e**3)) + math.log(e**3 / (1 + e**3))) / 2
    assert float(loss) == pytest.approx((row2 + row3) / 2, rel=1e-6)


# -- SEEKR: head statistics over the padded map ------------------------------------------------


def _seekr_on_one_layer(padding: str, items: list[EncodedExample]) -> Seekr:
    seekr = Seekr(SeekrParams(importance_padding=padding))
    seekr._layers, seekr._roles = [0], {0: "self"}
    seekr._padded = seekr._padded_lengths(items)
    return seekr


def test_padded_to_8_means_are_over_the_map_of_the_buffer_padded_to_a_multiple_of_8() -> None:
    assert padded_length([3]) == 8 and padded_length([3, 9]) == 16 and padded_length([16]) == 16
    item = EncodedExample(input_ids=[4, 5, 6], labels=[IGNORE_INDEX, 5, 6], key="t/0", task_index=0)
    # the micro-batch pads the 3-token example to 4 on the right; that column is not real
    batch = MicroBatch(
        inputs={"input_ids": torch.tensor([[4, 5, 6, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 0]]),
                "labels": torch.tensor([[IGNORE_INDEX, 5, 6, IGNORE_INDEX]])},
        keys=["t/0"], task_indices=[0],
    )
    grad = torch.zeros(1, 1, 4, 4)
    grad[0, 0, :3, :3] = torch.tensor([[1.0, 0.0, 0.0], [2.0, 1.0, 0.0], [1.0, 1.0, 3.0]])
    grad[0, 0, 3, :] = 9.0  # the batch's pad row: never counted
    squares = 1 + 4 + 1 + 1 + 1 + 9  # sum of the real entries' squares = 17
    real = _seekr_on_one_layer("real_tokens", [item])._batch_sensitivity(batch, (grad,), 1)
    padded = _seekr_on_one_layer("padded_to_8", [item])._batch_sensitivity(batch, (grad,), 1)
    assert float(real) == pytest.approx(squares / 9)
    # the released code: the mean of grad^2 over the 8 x 8 padded map, the pad entries 0
    official_map = torch.zeros(8, 8)
    official_map[:3, :3] = grad[0, 0, :3, :3]
    assert float(padded) == pytest.approx(float(official_map.pow(2).mean())) == pytest.approx(squares / 64)
    # forgettability: the drawn query rows are real, the key columns padded to 8 (zero in both
    # maps); with query_budget 0 the released code takes every padded row as well
    seekr = _seekr_on_one_layer("padded_to_8", [item])
    before, after = torch.zeros(1, 2, 3), torch.tensor([[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]])
    change = float(head_forgettability(before, after))  # mean over the 2 x 3 real entries
    official = torch.zeros(2, 8)
    official[:, :3] = after[0] - before[0]
    assert change * seekr._forgettability_scale(0, 2, 3) == pytest.approx(float(official.pow(2).mean()))
    seekr.params.query_budget = 0
    every_row = torch.zeros(8, 8)
    every_row[:2, :3] = after[0] - before[0]
    assert change * seekr._forgettability_scale(0, 2, 3) == pytest.approx(float(every_row.pow(2).mean()))
    assert _seekr_on_one_layer("real_tokens", [item])._forgettability_scale(0, 2, 3) == 1.0


# -- SEEKR: a query budget longer than the example ------------------------------------------


def test_with_replacement_draws_the_budget_of_rows_seeded_and_sorted() -> None:
    rows = draw_query_rows("t/0", "source", 3, 5, seed=7, sampling="with_replacement")
    rng = random.Random("7-seekr-rows-t/0-source")
    assert rows.tolist() == sorted(rng.randrange(3) for _ in range(5))
    assert len(rows) == 5 and set(rows.tolist()) <= {0, 1, 2} and len(set(rows.tolist())) < 5
    assert rows.tolist() == draw_query_rows("t/0", "source", 3, 5, seed=7, sampling="with_replacement").tolist()
    assert draw_query_rows("t/0", "source", 3, 5, seed=7).tolist() == [0, 1, 2]  # all_rows: each row once
    # within the sequence both sample without replacement, identically; budget 0 is every row
    for budget in (0, 2, 3):
        assert torch.equal(
            draw_query_rows("t/0", "source", 3, budget, 7, "with_replacement"), draw_query_rows("t/0", "source", 3, budget, 7)
        )
    with pytest.raises(ValueError, match="query sampling"):
        draw_query_rows("t/0", "source", 3, 5, 7, "bootstrap")


# -- KIF: the first optimizer step of a task ---------------------------------------------------


def _two_steps(skip_first: bool) -> float:
    weight = nn.Parameter(torch.tensor([1.0]))
    tracker = ImportanceTracker([weight], "second", 0.85, 0.85, skip_first=skip_first)
    for g in (0.2, 0.5):
        tracker.update([torch.tensor([g])])
    return float(tracker.element_scores()[0])


def test_kif_importance_after_two_steps_with_the_first_skipped() -> None:
    # s = |wg - (wg)^2 / 2| with w = 1: step 1 (g 0.2) s = 0.18, step 2 (g 0.5) s = 0.375
    # skipped first step: I = 0.15 * 0.375 = 0.05625, U = 0.15 * |0.375 - 0.05625| = 0.0478125
    assert _two_steps(True) == pytest.approx(0.05625 * 0.0478125, rel=1e-6)
    # every step: I1 = 0.027, U1 = 0.15 * 0.153; I2 = 0.85 I1 + 0.15 * 0.375, U2 = 0.85 U1 + 0.15 |0.375 - I2|
    i1, u1 = 0.15 * 0.18, 0.15 * abs(0.18 - 0.15 * 0.18)
    i2 = 0.85 * i1 + 0.15 * 0.375
    u2 = 0.85 * u1 + 0.15 * abs(0.375 - i2)
    assert _two_steps(False) == pytest.approx(i2 * u2, rel=1e-6)


def test_kif_skip_first_step_reaches_the_tracker_and_counts_only_folded_steps() -> None:
    model = nn.Linear(2, 1)
    kif = KIF(KIFParams(skip_first_step=True))
    kif.units = build_skill_units(model, "matrix")
    kif._start_tracker(SimpleNamespace(unwrapped_model=lambda: model))
    assert kif.tracker is not None and kif.tracker.skip_first
    model(torch.ones(1, 2)).sum().backward()
    kif.tracker.update()
    assert kif.tracker.steps == 0 and all(float(s.abs().sum()) == 0.0 for s in kif.tracker.sensitivity)
    kif.tracker.update()
    assert kif.tracker.steps == 1 and any(float(s.abs().sum()) > 0.0 for s in kif.tracker.sensitivity)


# -- whole tiny runs in the official mode ----------------------------------------------------


def _tiny(tmp_path: Path, name: str, method: dict[str, Any], lora: bool = False) -> dict[str, Any]:
    config = tiny_config(
        tmp_path, name=name, methods=[method], stream={"demo_tasks": 2, "demo_train_size": 16, "demo_eval_size": 6}
    )
    config["model"]["lora"] = {"enabled": lora}
    return config


def test_seekr_runs_in_the_official_mode_and_stores_the_official_signals(tmp_path: Path) -> None:
    result = retain.run(_tiny(tmp_path, "seekr", {"name": "seekr", "ratio": 0.25, "compat": "official",
                                                  "query_budget": 500}), quiet=True)
    assert all(value is not None for value in result.matrix.rows[-1])
    state = load_method_states(result.run_dir)[0]
    # query_budget above every sequence: 500 rows per example, drawn with replacement
    assert all(len(rows["source"]) == 500 for rows in state["maps"]["rows"].values())
    assert "seekr_replay_logit_kl=" in (result.run_dir / "run.log").read_text()


def test_seekr_without_attention_stores_official_teacher_rows(tmp_path: Path) -> None:
    result = retain.run(_tiny(tmp_path, "ld", {"name": "seekr", "ratio": 0.25, "w_ad": 0.0, "compat": "official"}), quiet=True)
    assert all(value is not None for value in result.matrix.rows[-1])


def test_kif_runs_in_the_official_mode_with_one_step_fewer_in_its_importance(tmp_path: Path) -> None:
    runs = {
        compat: retain.run(_tiny(tmp_path, f"kif-{compat}", {"name": "kif", "compat": compat}, lora=True), quiet=True)
        for compat in ("retain", "official")
    }
    steps = {compat: load_method_states(r.run_dir)[0]["history"][0]["steps"] for compat, r in runs.items()}
    assert steps["official"] == steps["retain"] - 1
