"""MIGU: the magnitude statistic and mask by hand, where the mask acts, and tiny end-to-end runs."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import retain
from retain.config import MethodSpec, make_config
from retain.engine.runner import ContinualRunner
from retain.errors import ConfigError, MethodError
from retain.methods.base import Method
from retain.methods.migu.method import Migu, MiguParams
from retain.methods.registry import available_methods, check_combination, instantiate
from tests.conftest import BUILTIN_BY_KIND, tiny_config

# -- a 2-layer toy with known activations -------------------------------------------------------


class Toy(nn.Module):
    """fc1: 2 -> 4 units, fc2: 4 -> 3 units, no bias; takes the attention mask like an HF model."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 4, bias=False)
        self.fc2 = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]]))
            self.fc2.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]]))

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


# One sequence: t1 = (1, 2), t2 = (3, 0), then a padded position holding (5, 5).
X = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [5.0, 5.0]]])
MASK = torch.tensor([[1, 1, 0]])


def fake_ctx(model: nn.Module, accelerator: Any = None, phase_index: int = 1) -> Any:
    return SimpleNamespace(
        kind="causal", unwrapped_model=lambda: model,
        state=SimpleNamespace(phase_index=phase_index, phase=SimpleNamespace(name="task")),
        accelerator=accelerator or SimpleNamespace(num_processes=1), logger=logging.getLogger("test-migu"),
    )


def one_step(migu: Migu, model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], ctx: Any = None) -> Any:
    """Forward + backward every micro-batch, then the mask (as the engine does at a step's end)."""
    ctx = ctx or fake_ctx(model)
    migu.on_setup(ctx)
    migu.on_phase_start(ctx)
    model.train()
    for x, mask in batches:
        model(x, attention_mask=mask).sum().backward()
    migu.on_backward_end(ctx)
    return ctx


def test_l1_mean_statistic_and_mask_by_hand() -> None:
    # fc1 outputs h = W1 x:  t1 -> ( 1, 2, 3, -1), |h|_1 = 7 -> n = (1, 2, 3, 1) / 7 = (9, 18, 27,  9) / 63
    #                        t2 -> ( 3, 0, 3,  3), |h|_1 = 9 -> n = (1, 0, 1, 1) / 3 = (21, 0, 21, 21) / 63
    #                        pad -> ignored.  mean of the two tokens = (15, 9, 24, 15) / 63
    #   quantile 0.7 of sorted (9, 15, 15, 24): position 0.7 * 3 = 2.1 -> 15 + 0.1 * 9 = 15.9 -> keep unit 2 only
    # fc2 outputs (input fc1's signed output): t1 -> (1, 3, 2 - (-1)) = (1, 3, 3), |.|_1 = 7
    #                                          t2 -> (3, 3, 0 - 3) -> |.| = (3, 3, 3), |.|_1 = 9
    #   mean = ((1/7 + 1/3) / 2, (3/7 + 1/3) / 2, same) = (15, 24, 24) / 63
    #   quantile 0.7 of (15, 24, 24): position 1.4 -> 24 -> keep units 1 and 2 (ties at the cut are kept)
    model, migu = Toy(), Migu(MiguParams(threshold=0.7))
    one_step(migu, model, [(X, MASK)])
    stats, masks = migu.last_statistics(), migu.last_masks()
    torch.testing.assert_close(stats["fc1"], torch.tensor([15.0, 9.0, 24.0, 15.0]) / 63)
    torch.testing.assert_close(stats["fc2"], torch.tensor([15.0, 24.0, 24.0]) / 63)
    assert masks["fc1"].tolist() == [False, False, True, False]
    assert masks["fc2"].tolist() == [False, True, True]
    assert migu.last_token_counts() == {"fc1": 2.0, "fc2": 2.0}
    # threshold 0.5: position 1.5 of (9, 15, 15, 24) -> 15 -> keep units 0, 2, 3
    migu_half = Migu(MiguParams(threshold=0.5))
    one_step(migu_half, Toy(), [(X, MASK)])
    assert migu_half.last_masks()["fc1"].tolist() == [True, False, True, True]


def test_raw_sum_statistic_with_and_without_padding() -> None:
    # fc1 |h| summed over the real tokens: (1 + 3, 2 + 0, 3 + 3, 1 + 3) = (4, 2, 6, 4)
    #   quantile 0.5 of sorted (2, 4, 4, 6): position 1.5 -> 4 -> keep units 0, 2, 3
    # padding included, the pad row adds |(5, 5, 10, 0)|: (9, 7, 16, 4)
    #   quantile 0.5 of sorted (4, 7, 9, 16): position 1.5 -> 8 -> keep units 0 and 2
    raw = Migu(MiguParams(threshold=0.5, statistic="raw_sum"))
    one_step(raw, Toy(), [(X, MASK)])
    torch.testing.assert_close(raw.last_statistics()["fc1"], torch.tensor([4.0, 2.0, 6.0, 4.0]))
    assert raw.last_masks()["fc1"].tolist() == [True, False, True, True]
    padded = Migu(MiguParams(threshold=0.5, statistic="raw_sum", include_padding=True))
    one_step(padded, Toy(), [(X, MASK)])
    torch.testing.assert_close(padded.last_statistics()["fc1"], torch.tensor([9.0, 7.0, 16.0, 4.0]))
    assert padded.last_masks()["fc1"].tolist() == [True, False, True, False]


def test_masked_rows_get_exactly_zero_gradient_and_others_are_untouched() -> None:
    model, migu = Toy(), Migu(MiguParams(threshold=0.7))
    ctx = fake_ctx(model)
    migu.on_setup(ctx)
    migu.on_phase_start(ctx)
    model.train()
    model(X, attention_mask=MASK).pow(2).sum().backward()
    before = {name: p.grad.clone() for name, p in model.named_parameters()}
    migu.on_backward_end(ctx)
    for layer, keep in migu.last_masks().items():
        grad, old = getattr(model, layer).weight.grad, before[f"{layer}.weight"]
        assert torch.equal(grad[~keep], torch.zeros_like(grad[~keep]))
        assert torch.equal(grad[keep], old[keep])  # bit-identical, not just close
        assert old[~keep].abs().sum() > 0  # the zeros come from the mask


def test_gradient_accumulation_statistic_covers_every_micro_batch() -> None:
    # a second micro-batch with one real token t3 = (0, 1): fc1 h = (0, 1, 1, -1), |h|_1 = 3 -> (0, 21, 21, 21) / 63
    # summed with the first micro-batch's two tokens (30, 18, 48, 30) / 63 and divided by 3 tokens:
    #   (30, 39, 69, 51) / 189 = (10, 13, 23, 17) / 63
    second = (torch.tensor([[[0.0, 1.0], [9.0, 9.0], [9.0, 9.0]]]), torch.tensor([[1, 0, 0]]))
    migu = Migu(MiguParams(threshold=0.7))
    one_step(migu, Toy(), [(X, MASK), second])
    torch.testing.assert_close(migu.last_statistics()["fc1"], torch.tensor([10.0, 13.0, 23.0, 17.0]) / 63)
    assert migu.last_token_counts()["fc1"] == 3.0
    # the same tokens in one micro-batch give the same statistic
    together = Migu(MiguParams(threshold=0.7))
    one_step(together, Toy(), [(torch.cat([X, second[0]]), torch.cat([MASK, second[1]]))])
    torch.testing.assert_close(together.last_statistics()["fc1"], migu.last_statistics()["fc1"])


def test_nothing_is_measured_in_eval_mode_or_on_a_skipped_first_task() -> None:
    model, migu = Toy(), Migu(MiguParams())
    ctx = fake_ctx(model, phase_index=1)
    migu.on_setup(ctx)
    migu.on_phase_start(ctx)
    model.eval()
    model(X, attention_mask=MASK)
    model.train()
    model(X, attention_mask=MASK).sum().backward()
    migu.on_backward_end(ctx)
    assert migu.last_token_counts()["fc1"] == 2.0  # only the training forward
    first = Migu(MiguParams(skip_first_task=True))
    ctx0 = fake_ctx(Toy(), phase_index=0)
    first.on_setup(ctx0)
    first.on_phase_start(ctx0)
    ctx0.unwrapped_model()(X, attention_mask=MASK).sum().backward()
    first.on_backward_end(ctx0)
    assert first.last_masks() == {}
    assert ctx0.unwrapped_model().fc1.weight.grad.abs().sum() > 0


def test_data_parallel_statistic_is_averaged_before_the_mask() -> None:
    # this process sees fc1 = (15, 9, 24, 15) / 63; the other process (simulated) adds a large
    # magnitude sum on unit 0 and no tokens: sums and token counts are added over processes
    # (one all-reduce) before the mean, so unit 0 is on top and, with threshold 0.7, alone kept.
    calls = []

    def reduce(tensor: torch.Tensor, reduction: str) -> torch.Tensor:
        calls.append(reduction)
        other = torch.zeros_like(tensor)
        other[0] = 100.0  # fc1 is the first group (4 units), unit 0
        return tensor + other

    model, migu = Toy(), Migu(MiguParams(threshold=0.7))
    one_step(migu, model, [(X, MASK)], fake_ctx(model, SimpleNamespace(num_processes=2, reduce=reduce)))
    assert calls == ["sum"]
    assert migu.last_masks()["fc1"].tolist() == [True, False, False, False]


def test_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="migu.threshold"):
        instantiate([MethodSpec("migu", {"threshold": 1.5})])
    with pytest.raises(ConfigError, match="migu.statistic"):
        instantiate([MethodSpec("migu", {"statistic": "median"})])
    with pytest.raises(MethodError, match="deepspeed"):
        check_combination([Migu()], "causal", False, "deepspeed")


# -- real tiny models ---------------------------------------------------------------------------


def build(tmp_path: Path, model: str, lora: bool = False, **train: Any) -> tuple[Any, list[Method]]:
    config = tiny_config(
        tmp_path, model=model, methods=[{"name": "migu", "skip_first_task": False}],
        stream={"demo_tasks": 1, "demo_train_size": 16, "demo_eval_size": 4}, train=train,
    )
    if lora:
        config["model"]["lora"] = {"enabled": True, "r": 4}
    ctx, methods, _ = ContinualRunner(make_config(config), quiet=True)._build()
    return ctx, methods


def step_on_first_batch(ctx: Any, migu: Migu) -> Any:
    migu.on_phase_start(ctx)
    ctx.model.train()
    batch = next(ctx.iterate_batches(ctx.phase_train_examples(), batch_size=4))
    ctx.base_loss(batch, ctx.forward(batch)).backward()
    migu.on_backward_end(ctx)
    return batch


@pytest.mark.parametrize("lora", [False, True])
def test_seq2seq_rows_follow_encoder_labels_and_cross_attention(tmp_path: Path, lora: bool) -> None:
    ctx, (migu,) = build(tmp_path, BUILTIN_BY_KIND["seq2seq"], lora)
    batch = step_on_first_batch(ctx, migu)
    encoder_tokens = float(batch.inputs["attention_mask"].sum())
    decoder_tokens = float((batch.inputs["labels"] != -100).sum())
    assert encoder_tokens != decoder_tokens
    counts = migu.last_token_counts()
    for name, count in counts.items():
        if name.startswith("encoder.") or ".EncDecAttention.v" in name or ".EncDecAttention.k" in name:
            assert count == encoder_tokens, name
        else:
            assert count == decoder_tokens, name
    if lora:  # PEFT's default T5 targets are q and v: cross-attention v's lora_A reads the encoder
        assert counts["decoder.block.0.layer.1.EncDecAttention.v.lora_A.default"] == encoder_tokens
        assert "decoder.block.0.layer.1.EncDecAttention.v" in counts


@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpoint_recomputation_is_not_counted(tmp_path: Path, reentrant: bool) -> None:
    ctx, (migu,) = build(tmp_path, BUILTIN_BY_KIND["causal"])
    ctx.unwrapped_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    batch = step_on_first_batch(ctx, migu)
    assert set(migu.last_token_counts().values()) == {float(batch.inputs["attention_mask"].sum())}


def test_head_is_left_out_unless_asked(tmp_path: Path) -> None:
    ctx, (migu,) = build(tmp_path, BUILTIN_BY_KIND["causal"])
    step_on_first_batch(ctx, migu)
    assert "lm_head" not in migu.last_masks() and len(migu.last_masks()) == 14
    migu_head = Migu(MiguParams(skip_first_task=False, mask_head=True))
    migu_head.on_setup(ctx)
    migu.on_phase_end(ctx)  # detaches its layer hooks
    step_on_first_batch(ctx, migu_head)
    assert "lm_head" in migu_head.last_masks()


class FirstStepProbe(Method):
    """Listed after migu: snapshots the weights before the first step and compares after it."""

    name = "probe"

    def __init__(self, migu: Migu) -> None:
        super().__init__()
        self.migu = migu
        self.before: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.checked = False
        self.dtypes: set[torch.dtype] = set()
        self.optimizer: Any = None  # the inner optimizer of the step (released after the phase)

    def on_phase_start(self, ctx: Any) -> None:
        layer = ctx.unwrapped_model().model.layers[0].mlp.up_proj
        layer.register_forward_hook(lambda m, a, out: self.dtypes.add(out.dtype))

    def on_backward_end(self, ctx: Any) -> None:
        if not self.before:
            modules = dict(ctx.unwrapped_model().named_modules())
            for name, keep in self.migu.last_masks().items():
                self.before[name] = (modules[name].weight.detach().clone(), keep.clone())

    def on_step_end(self, ctx: Any) -> None:
        if self.checked:
            return
        self.optimizer = ctx.optimizer.optimizer
        modules = dict(ctx.unwrapped_model().named_modules())
        for name, (old, keep) in self.before.items():
            new = modules[name].weight.detach()
            assert torch.equal(new[~keep], old[~keep]), name  # masked rows: bit-identical
            assert not torch.equal(new[keep], old[keep]), name  # kept rows moved
        self.checked = True


@pytest.fixture
def fresh_accelerate_state() -> Any:
    """Accelerate keeps one process-wide state; a run with another mixed_precision needs it reset."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_bf16_mixed_precision_first_step_leaves_masked_rows_bit_identical(tmp_path: Path) -> None:
    ctx, (migu,) = build(tmp_path, BUILTIN_BY_KIND["causal"], mixed_precision="bf16", weight_decay=0.0)
    probe = FirstStepProbe(migu)
    runner = ContinualRunner(ctx.config, quiet=True)
    runner._train_one_phase(ctx, [migu, probe], 0, False)
    assert probe.checked and len(probe.before) == 14
    assert torch.bfloat16 in probe.dtypes  # autocast really ran the layers in bf16
    assert isinstance(probe.optimizer, torch.optim.AdamW)


def _small(tmp_path: Path, name: str, kind: str, methods: list[Any], lora: bool = False) -> dict[str, Any]:
    config = tiny_config(
        tmp_path, name=name, model=BUILTIN_BY_KIND[kind], methods=methods,
        stream={"demo_train_size": 16, "demo_eval_size": 4}, eval={"before_training": False},
    )
    if lora:
        config["model"]["lora"] = {"enabled": True, "r": 4}
    return config


def test_threshold_zero_is_plain_fine_tuning(tmp_path: Path) -> None:
    migu = retain.run(_small(tmp_path, "migu0", "causal", [{"name": "migu", "threshold": 0.0, "skip_first_task": False}]), quiet=True)
    seqft = retain.run(_small(tmp_path, "seqft", "causal", ["seqft"]), quiet=True)
    assert migu.matrix.rows == seqft.matrix.rows
    a = load_file(str(migu.run_dir / "checkpoint" / "model.safetensors"))
    b = load_file(str(seqft.run_dir / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "migu_rows_updated=1" in (migu.run_dir / "run.log").read_text()


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("kind", ["causal", "seq2seq", "classifier"])
def test_tiny_run_masks_every_kind(tmp_path: Path, kind: str, lora: bool) -> None:
    result = retain.run(_small(tmp_path, "run", kind, [{"name": "migu", "skip_first_task": False}], lora), quiet=True)
    assert len(result.matrix.rows) == 2 and all(v is not None for v in result.matrix.rows[-1])
    log = (result.run_dir / "run.log").read_text()
    fractions = [float(line.rsplit("migu_rows_updated=", 1)[1].split(",")[0]) for line in log.splitlines() if "migu_rows_updated=" in line]
    assert len(fractions) == 2 and all(0.2 < f < 0.35 for f in fractions)
    assert "MIGU: gradient rows updated" in (result.run_dir / "report.md").read_text()


@pytest.mark.parametrize("other", ["ewc", "olora"])
def test_composes_with_regularisation_and_lora_methods(tmp_path: Path, other: str) -> None:
    if other not in available_methods():
        pytest.skip(f"{other} is not registered yet")
    cls = available_methods()[other]
    result = retain.run(_small(tmp_path, "composed", "causal", ["migu", other], lora=bool(cls.needs_lora)), quiet=True)
    assert "migu: " in (result.run_dir / "run.log").read_text()


def test_gpt2_conv1d_masks_weight_columns(tmp_path: Path) -> None:
    """GPT-2's Conv1D stores weights as [in, out]: a unit's gradient is a column, not a row."""
    ctx, (migu,) = build(tmp_path, "builtin:tiny-gpt2")
    migu.on_phase_start(ctx)
    ctx.model.train()
    batch = next(ctx.iterate_batches(ctx.phase_train_examples(), batch_size=4))
    ctx.base_loss(batch, ctx.forward(batch)).backward()
    attn = ctx.unwrapped_model().transformer.h[0].attn.c_attn
    before = attn.weight.grad.clone()
    migu.on_backward_end(ctx)
    keep = migu.last_masks()["transformer.h.0.attn.c_attn"]
    assert keep.numel() == attn.weight.shape[1] and 0 < int(keep.sum()) < keep.numel()
    assert torch.equal(attn.weight.grad[:, ~keep], torch.zeros_like(before[:, ~keep]))
    assert torch.equal(attn.weight.grad[:, keep], before[:, keep])


def test_sliced_reduction_matches_the_formula_on_long_outputs() -> None:
    """CPU outputs are reduced in slices; the result must not depend on where the slices fall."""
    from retain.methods.migu.magnitude import accumulate_magnitudes

    torch.manual_seed(0)
    output = torch.randn(70_001, 4)  # more rows than one slice holds for 4 units
    rows = (torch.rand(70_001) > 0.2).float()
    for statistic in ("l1_mean", "raw_sum"):
        total, tokens = torch.zeros(4), torch.zeros(())
        accumulate_magnitudes(total, tokens, output, rows, statistic)
        a = output.double().abs()
        weights = rows.double() / a.sum(dim=1) if statistic == "l1_mean" else rows.double()
        torch.testing.assert_close(total.double(), weights @ a, rtol=1e-5, atol=0)
        assert tokens.item() == rows.sum().item()


def test_masking_many_gradients_at_once_equals_masking_each() -> None:
    from retain.methods.migu.magnitude import mask_gradient_rows, mask_gradient_rows_many

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3, 4)),
              torch.nn.Parameter(torch.randn(2, 2))]
    for p in params[:2]:
        p.grad = torch.randn_like(p)
    keeps = [torch.tensor([True, False, True, False]), torch.tensor([False, True, True, True]), torch.tensor([True, False])]
    expected = [p.grad.clone() if p.grad is not None else None for p in params]
    reference = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for ref, p in zip(reference, params):
        ref.grad = None if p.grad is None else p.grad.clone()
    for ref, dim, keep in zip(reference, (0, 1, 0), keeps):
        mask_gradient_rows(ref, dim, keep)
    mask_gradient_rows_many([(p, dim, keep.float()) for p, dim, keep in zip(params, (0, 1, 0), keeps)])
    assert params[2].grad is None
    for ref, p in zip(reference[:2], params[:2]):
        assert torch.equal(ref.grad, p.grad)
    assert not torch.equal(params[0].grad, expected[0])  # rows really were zeroed
