"""MIGU: magnitude-based gradient updating (Du et al., 2024, arXiv 2406.17245).

During the forward passes of one optimizer step, every linear layer's output magnitude is
accumulated per output unit; after the last backward of the step, each layer keeps the gradient
rows of its units at or above the ``threshold`` quantile of that statistic and zeroes the rest,
before clipping and the optimizer step. Units a task drives hard are the ones it updates, and
different tasks drive different units, so later tasks overwrite less of what earlier ones learned.
No replay, no task labels, nothing carried across steps: the mask is rebuilt every step.

Where the pieces are: layer discovery, padding handling, the statistic and the mask live in
:mod:`retain.methods.migu.magnitude`, the experts of fused mixture-of-experts tensors (each one
linear layer per expert, measured over the tokens routed to it) in
:mod:`retain.methods.migu.experts`; this module wires them to the engine's hooks:

- a forward pre-hook on the top-level model reads the micro-batch's ``attention_mask`` (and the
  seq2seq labels) and opens a "measuring" window; a forward hook closes it. Layer hooks only
  measure inside that window and in training mode, so evaluation, teacher passes in eval mode and
  gradient-checkpoint recomputation (which runs during backward, after the window closed) are
  never counted;
- ``on_backward_end`` builds the masks (averaging the statistic over processes under data
  parallelism, so every process masks the same rows) and multiplies the gradients the optimizer
  reads: ``param.grad``, which is fp32 under Accelerate's autocast mixed precision.

Under FSDP2 each process holds some rows of every gradient (its shard); the statistic is the
full-size one (averaged over processes), so each process masks its own rows with their units'
keep flags. DeepSpeed is refused at start-up: its flat partitioned gradient buffers do not keep
the row layout of a weight.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from retain.config import option
from retain.errors import MethodError
from retain.methods.base import Method, compat_option
from retain.methods.common.batch_plan import PAD
from retain.methods.migu.experts import ExpertTargets, expert_inputs, find_expert_targets, measure_experts
from retain.methods.migu.magnitude import (
    STATISTICS,
    MaskTarget,
    TokenRows,
    accumulate_magnitudes,
    find_targets,
    finish_statistic,
    mask_gradient_rows_many,
    quantile_masks,
    side_finder,
    unwrap_peft,
)
from retain.methods.registry import register_method
from retain.models.kinds import model_kind

if TYPE_CHECKING:
    from retain.engine.context import RunContext


#: Where retain's defaults differ from the authors' released code, that code's values
#: (``compat: official``); the first task is unmasked in both.
OFFICIAL = {"statistic": "raw_sum", "include_padding": True, "mask_head": True}


@dataclass
class MiguParams:
    threshold: float = option(
        "Quantile of each layer's output-magnitude statistic below which a unit's gradient row is "
        "zeroed: 0.7 lets the top 30% of units update; 0 updates every unit (plain fine-tuning).",
        0.7, low=0.0, high=1.0,
    )
    statistic: str = option(
        "l1_mean (paper: per token |h| / ||h||_1, averaged over real tokens) | raw_sum (the sum "
        "of |h| over tokens).",
        "l1_mean", choices=STATISTICS,
    )
    include_padding: bool = option(
        "Count padded positions in the statistic (with statistic=raw_sum: the released code's statistic).",
        False,
    )
    skip_first_task: bool = option("Train the first task without masks (as the released code).", True)
    mask_head: bool = option(
        "Also measure and mask the output head (lm_head / classifier head; T5's is tied to the "
        "input embeddings, whose rows it then masks too).",
        False,
    )
    compat: str = compat_option(OFFICIAL)


@dataclass(eq=False)
class _Group:
    """Targets with the same number of units: one statistic buffer, one quantile call per step."""

    targets: list[MaskTarget]
    positions: torch.Tensor  # indices of the targets in Migu._targets
    total: torch.Tensor  # [len(targets), units] fp32 running sums
    tokens: torch.Tensor  # [len(targets)] rows counted
    experts: torch.Tensor  # [len(targets)] bool: the target is one expert of a fused tensor


@register_method
class Migu(Method):
    name = "migu"
    summary = "MIGU: only the output units with the largest activation magnitude update (gradient row mask)."
    params_class = MiguParams
    official_values = OFFICIAL
    distributed = ("no", "multi_gpu", "fsdp")
    distributed_refusals = {
        "zero2": "MIGU masks gradient rows of each weight; DeepSpeed keeps gradients in flat partitioned buffers without that row layout",
        "zero3": "MIGU masks gradient rows of each weight; DeepSpeed keeps gradients in flat partitioned buffers without that row layout",
    }

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._rows = TokenRows(self.params.include_padding)
        self._seq2seq = False
        self._model: Optional[nn.Module] = None
        self._model_handles: list[RemovableHandle] = []
        self._layer_handles: list[RemovableHandle] = []
        self._targets: list[MaskTarget] = []
        self._experts: list[ExpertTargets] = []
        self._groups: list[_Group] = []
        self._active = False  # the current phase masks
        self._stale = True  # targets are found again before the phase's first training forward
        self._measuring = False  # inside a training forward of the top-level model
        self._pad = False  # the next forward is a weightless pad micro-batch: not measured
        self._kept: Optional[torch.Tensor] = None  # per target: sum over steps of the kept fraction
        self._steps = 0
        self._last: list[tuple[_Group, torch.Tensor, torch.Tensor, torch.Tensor]] = []  # group, statistic, keep, tokens
        self._phase_values: dict[str, float] = {}
        #: phase name -> layer name -> mean fraction of gradient rows updated per step.
        self.fractions: dict[str, dict[str, float]] = {}

    # -- hooks on the engine ---------------------------------------------------------------

    def on_setup(self, ctx: "RunContext") -> None:
        self._seq2seq = model_kind(ctx.kind).encoder_decoder

    def on_phase_start(self, ctx: "RunContext") -> None:
        self._active = not (self.params.skip_first_task and ctx.state.phase_index == 0)
        self._phase_values = {}
        self._steps = 0
        self._detach_layers()
        self._attach_model(ctx.unwrapped_model())
        self._stale = True

    def on_batch_start(self, ctx: "RunContext", batch: Any) -> None:
        # A pad evens out data-parallel processes and trains nothing: its activations are no
        # part of the step's statistic (one process trains no such batch).
        self._pad = batch.source == PAD

    def on_backward_end(self, ctx: "RunContext") -> None:
        if not self._active or not self._groups:
            return
        keeps = self._build_masks(ctx.accelerator)
        masks: list[tuple[nn.Parameter, Any, torch.Tensor]] = []
        fused: dict[int, tuple[nn.Parameter, int, dict[int, torch.Tensor]]] = {}  # per fused tensor: expert -> keep
        for group, keep in zip(self._groups, (k.float() for k in keeps)):
            for row, target in enumerate(group.targets):
                for param, dim in target.grads:
                    if target.expert is None:
                        masks.append((param, dim, keep[row]))
                    else:
                        fused.setdefault(id(param), (param, dim, {}))[2][target.expert] = keep[row]
        for param, dim, experts in fused.values():  # one [E, rows] mask per fused tensor
            masks.append((param, (0, dim), torch.stack([experts[e] for e in sorted(experts)])))
        mask_gradient_rows_many(masks)
        for group in self._groups:
            group.total.zero_()
            group.tokens.zero_()
        self._steps += 1

    def on_phase_end(self, ctx: "RunContext") -> None:
        if self._active and self._kept is not None and self._steps:
            per_layer = (self._kept / self._steps).tolist()
            trainable = [(t.name, f) for t, f in zip(self._targets, per_layer) if t.grads]
            self.fractions[ctx.state.phase.name] = dict(trainable)
            values = [f for _, f in trainable]
            mean = sum(values) / len(values)
            self._phase_values = {"migu_rows_updated": mean}
            low, high = min(trainable, key=lambda x: x[1]), max(trainable, key=lambda x: x[1])
            ctx.logger.info(
                "migu: %d layers, %d steps; fraction of gradient rows updated per step: mean %.3f, "
                "min %.3f (%s), max %.3f (%s)",
                len(trainable), self._steps, mean, low[1], low[0], high[1], high[0],
            )
        elif not self._active:
            ctx.logger.info("migu: %s trained without masks (skip_first_task)", ctx.state.phase.name)
        self._active = False
        self._detach_layers()

    def on_log(self) -> dict[str, float]:
        return dict(self._phase_values)

    def on_report(self, ctx: "RunContext") -> list[tuple[str, str]]:
        if not self.fractions:
            return [("MIGU", "No phase was trained with masks (skip_first_task on a one-phase run).")]
        phases = list(self.fractions)
        layers = list(dict.fromkeys(name for phase in phases for name in self.fractions[phase]))
        lines = [
            f"Fraction of each layer's gradient rows updated per optimizer step (mean over the "
            f"phase's steps); threshold {self.params.threshold}, statistic {self.params.statistic}.",
            "",
            "| layer | " + " | ".join(phases) + " |",
            "|---|" + "---|" * len(phases),
        ]
        for layer in layers:
            cells = [f"{self.fractions[p][layer]:.3f}" if layer in self.fractions[p] else "-" for p in phases]
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
        means = [sum(self.fractions[p].values()) / max(1, len(self.fractions[p])) for p in phases]
        lines.append("| **mean** | " + " | ".join(f"{m:.3f}" for m in means) + " |")
        return [("MIGU: gradient rows updated", "\n".join(lines))]

    def state_dict(self) -> dict[str, Any]:
        return {"fractions": {phase: dict(layers) for phase, layers in self.fractions.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fractions = {phase: dict(layers) for phase, layers in state.get("fractions", {}).items()}

    # -- inspection (tests, debugging) -----------------------------------------------------

    def last_statistics(self) -> dict[str, torch.Tensor]:
        """Per layer, the statistic the last mask was built from."""
        return {t.name: stat[i] for group, stat, _, _ in self._last for i, t in enumerate(group.targets)}

    def last_masks(self) -> dict[str, torch.Tensor]:
        """Per layer, the keep-mask (bool per output unit) of the last optimizer step."""
        return {t.name: keep[i] for group, _, keep, _ in self._last for i, t in enumerate(group.targets)}

    def last_token_counts(self) -> dict[str, float]:
        """Per layer, how many output rows (real tokens) the last statistic covered."""
        return {t.name: float(tokens[i]) for group, _, _, tokens in self._last for i, t in enumerate(group.targets)}

    # -- measuring ---------------------------------------------------------------------------

    def _attach_model(self, model: nn.Module) -> None:
        """Hooks on the top-level model (every task: a method may have rewrapped the model)."""
        for handle in self._model_handles:
            handle.remove()
        self._model = model
        self._model_handles = [
            model.register_forward_pre_hook(self._open_window, with_kwargs=True),
            model.register_forward_hook(self._close_window, with_kwargs=True, always_call=True),
        ]
        encoder = getattr(unwrap_peft(model), "get_encoder", None)
        if self._seq2seq and callable(encoder):
            self._model_handles.append(encoder().register_forward_hook(self._note_encoder_output))

    def _attach_layers(self) -> None:
        """Find the trainable linear layers now (adapters added by other methods included)."""
        assert self._model is not None
        self._detach_layers()
        self._targets = find_targets(self._model, self.params.mask_head, self._seq2seq)
        self._experts = find_expert_targets(self._model, side_finder(self._model, self._seq2seq))
        self._targets += [t for experts in self._experts for t in experts.targets]
        if not any(t.grads for t in self._targets):
            root = unwrap_peft(self._model)
            source = getattr(getattr(root, "config", None), "_name_or_path", "") or "built from a config"
            raise MethodError(
                f"methods: migu found no trainable linear layer or expert to mask in {type(root).__name__} "
                f"({source}); check model.lora.target_modules or the other methods' freezing"
            )
        by_units: dict[int, list[int]] = {}
        for index, target in enumerate(self._targets):
            by_units.setdefault(target.units, []).append(index)
        device = next(p for t in self._targets for p, _ in t.grads).device
        self._groups = []
        for units, indices in by_units.items():
            total = torch.zeros(len(indices), units, dtype=torch.float32, device=device)
            tokens = torch.zeros(len(indices), dtype=torch.float32, device=device)
            members = [self._targets[i] for i in indices]
            for row, target in enumerate(members):
                target.total, target.tokens = total[row], tokens[row]
            experts = torch.tensor([t.expert is not None for t in members], device=device)
            self._groups.append(_Group(members, torch.tensor(indices, device=device), total, tokens, experts))
        self._kept = torch.zeros(len(self._targets), dtype=torch.float32, device=device)
        for experts in self._experts:  # one pre-hook per fused module measures all its experts
            hook = functools.partial(self._measure_experts, experts)
            self._layer_handles.append(experts.group.module.register_forward_pre_hook(hook, with_kwargs=True))
        for target in self._targets:
            if target.expert is not None:
                continue
            if target.lora_wrapper:
                self._layer_handles.append(target.module.register_forward_pre_hook(functools.partial(self._resolve_rows, target)))
            self._layer_handles.append(target.module.register_forward_hook(functools.partial(self._measure, target)))
        self._stale = False

    def _detach_layers(self) -> None:
        for handle in self._layer_handles:
            handle.remove()
        self._layer_handles = []

    def _open_window(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not self._active or not module.training or self._pad:
            return
        if self._stale:
            self._attach_layers()
        self._rows.set_batch(kwargs, self._seq2seq)
        self._measuring = True

    def _close_window(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        self._measuring = False

    def _note_encoder_output(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if self._measuring:
            hidden = output[0] if isinstance(output, (tuple, list)) or hasattr(output, "to_tuple") else output
            self._rows.encoder_output_ptr = hidden.data_ptr() if isinstance(hidden, torch.Tensor) else None

    def _resolve_rows(self, target: MaskTarget, module: nn.Module, args: tuple[Any, ...]) -> None:
        """LoRA wrappers: find the token rows from the wrapper's input, for it and its lora_A."""
        if self._measuring and args and isinstance(args[0], torch.Tensor):
            x = args[0]
            target.current_rows = self._rows.rows_for(target, x, x.numel() // max(1, x.shape[-1]))
        else:
            target.current_rows = None

    def _measure(self, target: MaskTarget, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not self._measuring or not module.training or not isinstance(output, torch.Tensor):
            return
        if target.rows_from is not None:
            rows = target.rows_from.current_rows
        elif target.lora_wrapper:
            rows = target.current_rows
        else:
            layer_input = args[0] if args else None
            rows = self._rows.rows_for(target, layer_input, output.numel() // max(1, output.shape[-1]))
        accumulate_magnitudes(target.total, target.tokens, output, rows, self.params.statistic)

    def _measure_experts(self, experts: ExpertTargets, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A fused experts module: each expert's outputs over the real tokens routed to it."""
        if not self._measuring or not module.training:
            return
        hidden, top_k_index = expert_inputs(args, kwargs)
        if hidden is None or top_k_index is None:  # unmeasured experts would all be masked: stop instead
            raise MethodError(
                f"methods: migu cannot read the inputs (hidden_states, top_k_index) of {experts.group.name} "
                f"({type(module).__name__}); this transformers version calls its experts differently"
            )
        n_rows = hidden.numel() // max(1, hidden.shape[-1])
        rows = self._rows.rows_for(experts.targets[0], hidden, n_rows)
        measure_experts(experts, hidden, top_k_index, rows, self.params.statistic)

    # -- masking -----------------------------------------------------------------------------

    def _build_masks(self, accelerator: Any) -> list[torch.Tensor]:
        if getattr(accelerator, "num_processes", 1) > 1:
            # Sums and token counts are added over processes before the mean, so the statistic
            # is the one a single process computes over the same micro-batches.
            parts = [t for g in self._groups for t in (g.total, g.tokens)]
            flat = accelerator.reduce(torch.cat([t.reshape(-1) for t in parts]), reduction="sum")
            summed = [part.reshape(t.shape) for part, t in zip(torch.split(flat, [t.numel() for t in parts]), parts)]
            for index, group in enumerate(self._groups):
                group.total.copy_(summed[2 * index])
                group.tokens.copy_(summed[2 * index + 1])
        statistics = [finish_statistic(g.total, g.tokens, self.params.statistic) for g in self._groups]
        keeps = [quantile_masks(s, self.params.threshold) for s in statistics]
        for group, keep in zip(self._groups, keeps):
            # An expert no token of the step reached has an all-zero gradient: none of its rows
            # updates, and it is reported so (rather than "all rows kept" from an all-zero statistic).
            keep[group.experts & (group.tokens == 0)] = False
        assert self._kept is not None
        for group, keep in zip(self._groups, keeps):
            self._kept.index_add_(0, group.positions, keep.float().mean(dim=1))
        self._last = [(g, s, k, g.tokens.clone()) for g, s, k in zip(self._groups, statistics, keeps)]
        return keeps
