"""SEEKR (He et al., EMNLP 2024): replay with logit and attention distillation on selected heads.

Replay micro-batches (the interleaved schedule of the replay buffer it holds,
:class:`~retain.methods.common.replay_buffer.ReplayBuffer`) are
trained on ``(1 - w_ld) * CE + w_ld * KL(logits) + w_ad * KL(attention)``; new-task micro-batches
keep their plain CE. The teachers are signals stored when each replayed example's task ended (no
copy of an old model is kept): the answer-position logits (:mod:`~retain.methods.common.teacher_store`)
and the selected heads' attention rows (:mod:`~retain.methods.seekr.attention_store`).

The life of task k:

1. ``on_phase_start``: task k's buffer indices are drawn now (the draw depends only on the task and
   the seed, so it is the one the buffer keeps at task end) and the maps of every head on
   those examples are recorded at their query rows: the "before" side of forgettability;
2. training: replay batches of tasks < k arm the capture on the layers their examples distil;
3. ``on_phase_end``: one pass over task k's buffer in eval mode gives, per head, the sensitivity
   (gradient of the summed per-example loss with respect to the maps, by ``torch.autograd.grad``),
   the forgettability (against step 1), the teacher logits and the teacher maps; importance is
   accumulated over tasks, the budget picks the heads, and only those heads' rows are stored.

Attention maps come from :mod:`retain.methods.seekr.attention_capture` (eager only where armed, sdpa elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch

from retain.config import option
from retain.data.collate import IGNORE_INDEX
from retain.engine.collective import merge_dicts, sum_over_processes
from retain.errors import MethodError
from retain.methods.seekr.attention_store import (
    ATTENTION_NORMALISATIONS,
    QUERY_SAMPLINGS,
    ROLE_SIDES,
    TeacherMaps,
    draw_query_rows,
    real_positions,
    rows_of,
)
from retain.methods.seekr.head_importance import (
    COMBINATIONS,
    IMPORTANCE_PADDINGS,
    SELECTIONS,
    ImportanceTracker,
    budget_counts,
    head_forgettability,
    head_sensitivity,
    normalise_within_layer,
    padded_length,
    padding_scale,
    per_example_loss,
    random_scores,
    select_heads,
)
from retain.methods.base import CARRIES_KNOWLEDGE, DISTRIBUTED_MODES, OWNS_BATCH_SCHEDULE, Method, compat_option
from retain.methods.common.batch_plan import BatchPlan
from retain.methods.common.replay_buffer import ReplayBuffer, ReplayParams
from retain.methods.registry import register_method
from retain.models.kinds import eval_mode
from retain.methods.common.teacher_store import TeacherLogits
from retain.methods.seekr.attention_capture import AttentionCapture
from retain.methods.seekr.logit_distillation import (
    LOGIT_LOSSES,
    LOGIT_POSITIONS,
    answer_rows,
    logit_distillation_loss,
    record_teacher,
    student_teacher_rows,
)

if TYPE_CHECKING:
    from retain.data.collate import EncodedExample, MicroBatch
    from retain.engine.context import RunContext

#: example key -> {site: rows [heads, rows, real keys]}
SampleMaps = dict[str, dict[int, torch.Tensor]]

#: Where retain deviates from the authors' released code, that code's values (``compat: official``).
OFFICIAL = {
    "logit_positions": "official",
    "logit_loss": "soft_ce",
    "importance_padding": "padded_to_8",
    "query_sampling": "with_replacement",
}


class ReplayTermMeans:
    """Running means of the three replay-loss terms over a task, unweighted.

    Logged with the phase line so that ``w_ld`` and ``w_ad`` can be calibrated for a new model:
    the paper's ``w_ad`` (1e3) suits LLaMA-2-7B maps, and a model whose maps drift more makes
    ``w_ad * L_ad`` swamp the replay CE. Kept as detached tensors so that a GPU step is not
    synchronised for logging.
    """

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, ce: torch.Tensor, logit_kl: torch.Tensor, attention_kl: Optional[torch.Tensor]) -> None:
        for name, value in (("ce", ce), ("logit_kl", logit_kl), ("attention_kl", attention_kl)):
            if value is None:
                continue
            value = value.detach().float()
            self._sums[name] = self._sums[name] + value if name in self._sums else value
            self._counts[name] = self._counts.get(name, 0) + 1

    def means(self) -> dict[str, float]:
        """``seekr_replay_ce`` / ``seekr_replay_logit_kl`` / ``seekr_replay_attention_kl``."""
        return {f"seekr_replay_{name}": float(total) / self._counts[name] for name, total in self._sums.items()}


@dataclass
class SeekrParams(ReplayParams):
    ratio: float = option(
        "Fraction of each finished task's training set kept for replay (paper: 0.01).", 0.01,
        low=0.0, high=1.0, low_open=True,
    )
    schedule: str = option(
        "interleaved: separate replay micro-batches, where the distillation applies (the only schedule).",
        "interleaved", choices=("interleaved",),
    )
    w_ld: float = option("Weight of the logit KL on replay batches; CE gets 1 - w_ld.", 0.5, low=0.0, high=1.0)
    w_ad: float = option(
        "Weight of the attention KL on replay batches (paper: 1e3 at 1% replay, 1e2 at 10%); 0 turns "
        "attention distillation and the importance pass off.",
        1000.0, low=0.0,
    )
    layer_budget: float = option(
        "Fraction of the attention layers kept (top by total importance).", 0.75, low=0.0, high=1.0, low_open=True
    )
    head_budget: float = option(
        "Fraction of all heads of the model distilled, chosen within the kept layers.", 0.125,
        low=0.0, high=1.0, low_open=True,
    )
    layers: Optional[int] = option("Absolute number of layers kept; overrides layer_budget.", None, low=1)
    heads: Optional[int] = option("Absolute number of heads distilled; overrides head_budget.", None, low=1)
    query_budget: int = option("Query rows distilled (and stored) per example and layer; 0 = all rows.", 100, low=0)
    selection: str = option(
        "importance (sensitivity x forgettability) | sensitivity | forgettability | random (ablations).",
        "importance", choices=SELECTIONS,
    )
    combine: str = option(
        "sum_of_products (sum over tasks of S*F) | product_of_sums ((sum S) * (sum F)).", "sum_of_products",
        choices=COMBINATIONS,
    )
    attention_normalisation: str = option(
        "batch: each layer's attention KL is summed over the examples that distil it and divided by "
        "the replay batch's stored examples (the reference code) | distilling: averaged over only the "
        "examples that distil the layer.",
        "batch", choices=ATTENTION_NORMALISATIONS,
    )
    cross_attention: bool = option("Encoder-decoder models: count decoder cross-attention as layers too.", False)
    importance_batch_size: Optional[int] = option(
        "Batch size of the recording and importance passes; null = eval.batch_size.", None, low=1
    )
    logit_positions: str = option(
        "Causal LMs: shifted (the rows predicting the answer tokens, as the task loss) | official "
        "(the rows at the answer tokens, no shift: the released code).", "shifted", choices=LOGIT_POSITIONS,
    )
    logit_loss: str = option(
        "kl (KL(teacher || student)) | soft_ce (cross-entropy on the teacher's softmax: the released "
        "code; the same gradient, the loss larger by the teacher's entropy).", "kl", choices=LOGIT_LOSSES,
    )
    importance_padding: str = option(
        "real_tokens (sensitivity and forgettability are means over real tokens) | padded_to_8 (over "
        "the buffer's map padded to its longest example rounded up to 8, pads counting 0: the released code).",
        "real_tokens", choices=IMPORTANCE_PADDINGS,
    )
    query_sampling: str = option(
        "A query_budget above an example's length: all_rows (each row once) | with_replacement "
        "(query_budget rows drawn with replacement: the released code).", "all_rows", choices=QUERY_SAMPLINGS,
    )
    compat: str = compat_option(OFFICIAL)


@register_method
class Seekr(Method):
    name = "seekr"
    summary = "SEEKR: replay + logit KL + attention KL on heads chosen by sensitivity x forgettability."
    params_class = SeekrParams
    official_values = OFFICIAL
    capabilities = frozenset({OWNS_BATCH_SCHEDULE, CARRIES_KNOWLEDGE})
    distributed = DISTRIBUTED_MODES
    test_params = {"ratio": 0.25, "heads": 2, "query_budget": 4}

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.buffer = ReplayBuffer(self.params)
        self.teacher = TeacherLogits()
        self.maps = TeacherMaps()
        self.importance = ImportanceTracker()
        self.capture: Optional[AttentionCapture] = None
        self._layers: list[int] = []  # capture sites that count as layers, in order
        self._roles: dict[int, str] = {}
        self._before: SampleMaps = {}
        self._budget = (0, 0)
        self._padded: dict[str, int] = {}  # side -> padded length of the task in its importance pass
        self.replay_terms = ReplayTermMeans()

    @property
    def distils_attention(self) -> bool:
        return self.params.w_ad > 0

    @property
    def layer_sites(self) -> list[int]:
        """Capture sites that count as layers for the budget, in model order."""
        return list(self._layers)

    # -- set-up ----------------------------------------------------------------------------

    def shared_components(self) -> dict[str, Any]:
        return {"replay_buffer": self.buffer}

    def on_setup(self, ctx: "RunContext") -> None:
        self.buffer.setup(ctx)
        if not self.distils_attention:
            return
        if ctx.config.train.gradient_checkpointing:
            raise MethodError(
                "seekr: train.gradient_checkpointing recomputes forwards during backward, where attention "
                "maps are not captured; turn it off (or set seekr.w_ad=0)"
            )
        self.capture = AttentionCapture.install(ctx.unwrapped_model(), ctx.kind)
        self._layers = self.capture.site_indices(include_cross=self.params.cross_attention)
        self._roles = {site.index: site.role for site in self.capture.sites}
        num_layers, num_heads = len(self._layers), self.capture.num_heads
        if self.params.layers is not None and self.params.layers > num_layers:
            raise MethodError(f"seekr.layers: {self.params.layers} layers asked, the model has {num_layers}")
        if self.params.heads is not None and self.params.heads > num_layers * num_heads:
            raise MethodError(f"seekr.heads: {self.params.heads} heads asked, the model has {num_layers * num_heads}")
        self._budget = budget_counts(
            num_layers, num_heads, self.params.layer_budget, self.params.head_budget, self.params.layers, self.params.heads
        )
        roles = sorted({self._roles[s] for s in self._layers})
        ctx.logger.info(
            "seekr: attention captured on %d layers (%s) of %d heads; distilling %d heads in the top %d layers, "
            "%s query rows per example",
            num_layers, ", ".join(roles), num_heads, self._budget[1], self._budget[0],
            self.params.query_budget or "all",
        )

    # -- task boundaries -------------------------------------------------------------------

    def buffer_indices_for(self, ctx: "RunContext", task_index: int) -> list[int]:
        """The indices the buffer will keep when the task ends (they depend on the task and seed only)."""
        return self.buffer.draw(ctx, task_index)

    def _pass_batch_size(self, ctx: "RunContext") -> int:
        return self.params.importance_batch_size or ctx.config.eval.batch_size

    def _query_rows(self, ctx: "RunContext", key: str, lengths: dict[str, int]) -> dict[str, torch.Tensor]:
        return {
            side: draw_query_rows(key, side, length, self.params.query_budget, ctx.config.seed, self.params.query_sampling)
            for side, length in lengths.items()
        }

    def _positions(self, batch: "MicroBatch") -> dict[str, list[torch.Tensor]]:
        """Real token positions per example for each side the layers' maps are over."""
        sides = {side for site in self._layers for side in ROLE_SIDES[self._roles[site]]}
        return {side: real_positions(batch, side) for side in sides}

    def _sample_rows(
        self, ctx: "RunContext", batch: "MicroBatch", maps: dict[int, torch.Tensor]
    ) -> tuple[SampleMaps, dict[str, dict[str, torch.Tensor]]]:
        """Each example's rows (all heads, fp32, CPU) of every layer, and its query row indices."""
        positions = self._positions(batch)
        sides = sorted(positions)
        samples: SampleMaps = {}
        query_rows: dict[str, dict[str, torch.Tensor]] = {}
        for i, key in enumerate(batch.keys):
            query_rows[key] = self._query_rows(ctx, key, {side: len(positions[side][i]) for side in sides})
            samples[key] = {}
            for site in self._layers:
                query_side, key_side = ROLE_SIDES[self._roles[site]]
                rows = rows_of(maps[site][i].detach(), positions[query_side][i], positions[key_side][i], query_rows[key][query_side])
                samples[key][site] = rows.float().cpu()
        return samples, query_rows

    def on_phase_start(self, ctx: "RunContext") -> None:
        self.replay_terms = ReplayTermMeans()
        if self.capture is None:
            return
        self._before = {}
        model = ctx.pass_model()
        for task_index in ctx.state.phase.task_indices:
            encoded = ctx.encoded(task_index, "train")
            items = [encoded[i] for i in self.buffer_indices_for(ctx, task_index)]
            # This process's share: the same batches its importance pass takes when the task ends
            # (the same items in the same order), so the "before" maps it needs are its own.
            with eval_mode(model):
                for batch in ctx.iterate_batches(
                    items, batch_size=self._pass_batch_size(ctx), shard=True, progress="seekr: attention before the task"
                ):
                    with torch.no_grad(), self.capture.recording(self._layers) as maps:
                        ctx.forward(batch, model=model)
                    self._before.update(self._sample_rows(ctx, batch, maps)[0])

    def on_phase_end(self, ctx: "RunContext") -> None:
        if self.capture is not None:
            self.capture.disarm()
        self.buffer.fill(ctx)
        for task_index in ctx.state.phase.task_indices:
            items = self.buffer.task_items(ctx, task_index)
            if self.capture is None:
                record_teacher(
                    ctx, self.teacher, items, self._pass_batch_size(ctx), self.params.logit_positions,
                    name="seekr: teacher logits",
                )
                continue
            if self.buffer.indices[task_index] != self.buffer_indices_for(ctx, task_index):
                raise RuntimeError(f"seekr: the replay buffer of task {task_index} differs from the one drawn at its start")
            self._finish_task(ctx, task_index, items)
        self._before = {}
        ctx.logger.info(
            "seekr store: %d examples, teacher logits %d bytes, attention maps %d bytes, %.0f bytes per example",
            len(self.teacher), self.teacher.nbytes(), self.maps.nbytes(), self._bytes_per_example(),
        )

    def _finish_task(self, ctx: "RunContext", task_index: int, items: list["EncodedExample"]) -> None:
        after, rows, sensitivity, forgettability = self.importance_pass(ctx, items)
        self.importance.add_task(normalise_within_layer(sensitivity), forgettability)
        selection = self._select(ctx, task_index)
        self.maps.add_task(task_index, selection)
        for key, maps in after.items():
            self.maps.add(key, task_index, maps, rows[key])
        assert self.capture is not None
        chosen = "; ".join(f"{self.capture.sites[site].name}: heads {heads}" for site, heads in selection.items())
        ctx.logger.info("seekr task %s: %d heads selected (%s)", ctx.stream.tasks[task_index].name, sum(map(len, selection.values())), chosen)

    def _select(self, ctx: "RunContext", task_index: int) -> dict[int, list[int]]:
        """{site: heads} for task ``task_index``, by the configured selection and budget."""
        assert self.capture is not None
        if self.params.selection == "random":
            scores = random_scores(len(self._layers), self.capture.num_heads, ctx.config.seed * 1009 + task_index)
        else:
            scores = self.importance.scores(self.params.selection, self.params.combine)
        by_position = select_heads(scores, *self._budget)
        return {self._layers[position]: heads for position, heads in by_position.items()}

    def importance_pass(
        self, ctx: "RunContext", items: list["EncodedExample"]
    ) -> tuple[SampleMaps, dict[str, dict[str, torch.Tensor]], torch.Tensor, torch.Tensor]:
        """One eval-mode pass over a finished task's buffer.

        Returns (maps after the task per example, query rows per example, sensitivity [layers,
        heads] (not normalised), forgettability [layers, heads]), and stores the teacher logits.
        The gradient is taken with ``torch.autograd.grad`` with respect to the maps only, so no
        parameter ``.grad`` is created or changed. Under data parallelism each process measures
        its share of the batches; the sums are added up and the per-example signals gathered
        once, so every process ends with the single-process tables and stores.
        """
        assert self.capture is not None
        num_layers, num_heads = len(self._layers), self.capture.num_heads
        sensitivity = torch.zeros(num_layers, num_heads)
        forgettability = torch.zeros(num_layers, num_heads)
        after: SampleMaps = {}
        rows: dict[str, dict[str, torch.Tensor]] = {}
        teacher: dict[str, torch.Tensor] = {}
        self._padded = self._padded_lengths(items)
        model = ctx.pass_model()
        with eval_mode(model):
            for batch in ctx.iterate_batches(
                items, batch_size=self._pass_batch_size(ctx), shard=True, progress="seekr: head importance"
            ):
                with torch.enable_grad(), self.capture.recording(self._layers, force_grad=True) as maps:
                    outputs = ctx.forward(batch, model=model)
                    loss = per_example_loss(ctx.kind, batch, outputs.logits).sum()
                    grads = torch.autograd.grad(loss, [maps[s] for s in self._layers], allow_unused=True)
                sensitivity += self._batch_sensitivity(batch, grads, num_heads)
                samples, query_rows = self._sample_rows(ctx, batch, maps)
                for key, per_site in samples.items():
                    for position, site in enumerate(self._layers):
                        change = head_forgettability(self._before[key][site], per_site[site])
                        forgettability[position] += change * self._forgettability_scale(site, *per_site[site].shape[-2:])
                after.update(samples)
                rows.update(query_rows)
                logits = outputs.logits.detach()
                for key, answer in zip(batch.keys, answer_rows(ctx.kind, batch, logits, self.params.logit_positions)):
                    teacher[key] = answer.to("cpu", self.teacher.dtype).clone()
        sensitivity, forgettability = sum_over_processes(ctx.accelerator, [sensitivity, forgettability])
        after, rows = merge_dicts(ctx.accelerator, after), merge_dicts(ctx.accelerator, rows)
        self.teacher.logits.update(merge_dicts(ctx.accelerator, teacher))
        count = max(1, len(items))
        return after, rows, sensitivity / count, forgettability / count

    def _padded_lengths(self, items: list["EncodedExample"]) -> dict[str, int]:
        """Side -> the released code's padded length of this buffer ({} under ``real_tokens``)."""
        if self.params.importance_padding == "real_tokens":
            return {}
        lengths = {
            "source": [len(item.input_ids) for item in items],
            "target": [sum(1 for t in item.labels if t != IGNORE_INDEX) if isinstance(item.labels, list) else 1 for item in items],
        }
        return {side: padded_length(values) for side, values in lengths.items()}

    def _forgettability_scale(self, site: int, rows: int, keys: int) -> float:
        """Forgettability: a mean over real entries as one over the padded map, pads counting 0.

        The key columns are always padded; the query rows only with ``query_budget: 0``, where the
        released code takes every row of the padded map (otherwise it draws real rows only).
        """
        if not self._padded:
            return 1.0
        query_side, key_side = ROLE_SIDES[self._roles[site]]
        padded_rows = self._padded[query_side] if self.params.query_budget == 0 else rows
        return padding_scale(rows * keys, padded_rows * self._padded[key_side])

    def _batch_sensitivity(
        self, batch: "MicroBatch", grads: tuple[Optional[torch.Tensor], ...], num_heads: int
    ) -> torch.Tensor:
        """Sum over the batch's examples of each head's mean squared map gradient over real entries."""
        total = torch.zeros(len(self._layers), num_heads)
        positions = self._positions(batch)
        for position, (site, grad) in enumerate(zip(self._layers, grads)):
            if grad is None:  # the loss does not depend on this layer's maps
                continue
            query_side, key_side = ROLE_SIDES[self._roles[site]]
            for i in range(len(batch)):
                real = grad[i].index_select(1, positions[query_side][i]).index_select(2, positions[key_side][i])
                scale = 1.0
                if self._padded:  # the released code's mean over the whole padded map
                    scale = padding_scale(real.shape[1] * real.shape[2], self._padded[query_side] * self._padded[key_side])
                total[position] += head_sensitivity(real).cpu() * scale
        return total

    # -- training --------------------------------------------------------------------------

    def on_plan_batches(self, ctx: "RunContext", plan: BatchPlan) -> BatchPlan:
        return self.buffer.extend_plan(ctx, plan)

    def on_batch_start(self, ctx: "RunContext", batch: "MicroBatch") -> None:
        """Arm the capture on the layers a replay batch distils, for the engine's next forward."""
        if self.capture is not None:
            self.capture.arm(self.maps.sites_for(batch) if batch.source == "replay" else ())

    def on_loss(self, ctx: "RunContext", batch: "MicroBatch", outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        student_maps = self.capture.disarm() if self.capture is not None else {}
        if batch.source != "replay":
            return loss
        rows = student_teacher_rows(ctx, batch, outputs.logits, self.teacher, self.params.logit_positions)
        if rows is None:
            return loss
        logit_kl = logit_distillation_loss(*rows, loss=self.params.logit_loss)
        total = (1.0 - self.params.w_ld) * loss + self.params.w_ld * logit_kl
        attention = None
        if self.capture is not None:
            attention = self.maps.distillation_loss(
                batch, student_maps, self._roles, self.params.attention_normalisation
            )
            if attention is not None:
                total = total + self.params.w_ad * attention
        self.replay_terms.add(loss, logit_kl, attention)
        return total

    # -- reporting and state ---------------------------------------------------------------

    def _bytes_per_example(self) -> float:
        return (self.teacher.nbytes() + self.maps.nbytes()) / max(1, len(self.teacher))

    def on_log(self) -> dict[str, float]:
        return {
            "replay_buffer": float(len(self.buffer)),
            "seekr_store_bytes": float(self.teacher.nbytes() + self.maps.nbytes()),
            "seekr_logit_bytes": float(self.teacher.nbytes()),
            "seekr_map_bytes": float(self.maps.nbytes()),
            "seekr_bytes_per_example": self._bytes_per_example(),
            **self.replay_terms.means(),
        }

    def on_report(self, ctx: "RunContext") -> list[tuple[str, str]]:
        if not self.maps.heads:
            return []
        names = {site.index: site.name for site in self.capture.sites} if self.capture is not None else {}
        lines = ["| task | layer | heads |", "|---|---|---|"]
        for task_index, selection in sorted(self.maps.heads.items()):
            for site, heads in selection.items():
                lines.append(f"| {ctx.stream.tasks[task_index].name} | {names.get(site, site)} | {', '.join(map(str, heads))} |")
        text = (
            f"Heads distilled for each task's replay examples (frozen when the task ended). Store: "
            f"{len(self.teacher)} examples, {self.teacher.nbytes() + self.maps.nbytes()} bytes.\n\n" + "\n".join(lines)
        )
        return [("SEEKR head selection", text)]

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.buffer.state_dict(),
            "teacher": self.teacher.state_dict(),
            "maps": self.maps.state_dict(),
            "importance": self.importance.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state)
        self.teacher.load_state_dict(state.get("teacher", {}))
        self.maps.load_state_dict(state.get("maps", {}))
        self.importance.load_state_dict(state.get("importance", {}))
