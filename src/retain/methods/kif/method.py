"""KIF: knowledge identification and fusion of skill units (Feng et al., arXiv 2408.05200).

Rehearsal-free. While a task trains, the importance of every skill unit for that task is tracked
after each optimizer step (:mod:`retain.methods.kif.unit_importance`); when it ends, the fine-tuned
model and the model that accumulated the earlier tasks (snapshotted when the task started) are
fused unit by unit (:mod:`retain.methods.kif.unit_fusion`): units that matter for the earlier tasks
keep their weights, units that matter for the new one take the new weights, the rest are mixed.
The fused model is what is evaluated and what the next task starts from.

With ``replay`` in the run this is KIF-M: after fusion, one epoch on the earlier tasks' buffer
with the new task's task-specific units frozen (:mod:`retain.methods.kif.masked_replay`).

Under FSDP the units are bound to the sharded parameters the optimizer holds (again each task:
the first preparation replaces the bare model's parameters); importance is tracked on each
process's rows and gathered when the task ends, the snapshot, fusion and orthogonality loss read
whole (gathered) tensors, and fusion writes each process's rows back. Every process computes the
same importance, weights and masks, which are the single-process ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch

from retain.config import option
from retain.data.collate import MicroBatch
from retain.engine.sharding import gather_full, regather, training_parameters
from retain.errors import MethodError
from retain.methods.base import CARRIES_KNOWLEDGE, FIXED_PARAMETERS, ExtraSteps, Method, StepStats, compat_option
from retain.methods.common.batch_plan import phase_seed
from retain.methods.common.replay_buffer import REPLAYS_AFTER_TASK, ReplayBuffer
from retain.methods.kif.masked_replay import masked_replay_steps, split_frozen
from retain.methods.kif.report import importance_payload, report_section
from retain.methods.registry import register_method
from retain.methods.kif.skill_units import SkillUnits, build_skill_units
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
from retain.methods.kif.unit_importance import ORDERS, ImportanceTracker

if TYPE_CHECKING:
    from retain.engine.context import RunContext

IMPORTANCE_FILE = "kif_importance.json"

#: Where retain deviates from the authors' released code, that code's values (``compat: official``).
OFFICIAL = {"skip_first_step": True}


@dataclass
class KIFParams:
    units: str = option(
        "Skill units: auto (rank under LoRA, matrix otherwise) | rank | matrix.", "auto",
        choices=("auto", "rank", "matrix"),
    )
    importance: str = option(
        "Element importance: second (|wg - (wg)^2/2|, the default) | first (|wg|).", "second", choices=ORDERS
    )
    beta1: float = option("EMA factor of the sensitivity I_bar.", 0.85, low=0.0, high=1.0, high_open=True)
    beta2: float = option("EMA factor of the uncertainty U_bar.", 0.85, low=0.0, high=1.0, high_open=True)
    fusion: str = option(
        "auto (adaptive for rank units, categorical for matrix units) | adaptive | categorical | "
        "uniform (lambda 0.5 everywhere: the ablation without importance).", "auto",
        choices=("auto", "adaptive", "categorical", "uniform"),
    )
    temperature: float = option("Adaptive fusion: softmax temperature tau.", 0.25, low=0.0, low_open=True)
    top_fraction: float = option(
        "Share of units counted as important (categorical fusion; KIF-M's frozen units).", 0.2,
        low=0.0, high=1.0, low_open=True, high_open=True,
    )
    shared_new_weight: float = option(
        "Categorical: weight of the new model on units important for old and new tasks.", 0.3, low=0.0, high=1.0
    )
    neither_new_weight: float = option(
        "Categorical: weight of the new model on units important for neither.", 0.5, low=0.0, high=1.0
    )
    cumulative_old_weight: float = option(
        "Weight of the earlier tasks in the cumulative importance I_cum.", 0.7, low=0.0, high=1.0
    )
    orthogonality: float = option(
        "Weight of the LoRA orthogonality loss mean ||AA^T-I||_F, ||B^TB-I||_F (0 disables).", 0.1, low=0.0
    )
    replay_during_task: bool = option(
        "With replay in the run: also mix its buffer into each task's training (false: the buffer "
        "is used only in KIF-M's post-fusion replay phase).", False,
    )
    replay_epochs: int = option("KIF-M: epochs over the buffer after each fusion (0 disables the phase).", 1, low=0)
    replay_lr: Optional[float] = option(
        "KIF-M: learning rate of the post-fusion replay phase; null = train.lr.", None, low=0.0, low_open=True
    )
    skip_first_step: bool = option(
        "Leave each task's first optimizer step out of the importance EMAs (the released code "
        "updates only after its first step; false: every step counts).", False,
    )
    compat: str = compat_option(OFFICIAL)


def orthogonality_penalty(pairs: list[tuple[torch.nn.Parameter, torch.nn.Parameter]]) -> torch.Tensor:
    """mean over LoRA matrices of ||A A^T - I||_F and ||B^T B - I||_F (fp32).

    Each matrix is taken as an (r x d) view whose rows should be orthonormal (A as is, B
    transposed, since ||B^T B - I|| = ||(B^T)(B^T)^T - I||); views of one shape are stacked so a
    model's whole penalty is a few batched matmuls rather than one per module.
    """
    total, count = None, 0
    pairs = [(gather_full(a), gather_full(b)) for a, b in pairs]  # whole matrices under FSDP
    groups: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for a, b in pairs:
        rank = a.shape[0]
        for matrix in (a.reshape(rank, -1), b.transpose(0, 1).reshape(rank, -1)):
            groups.setdefault(tuple(matrix.shape), []).append(matrix)
    for group in groups.values():
        stacked = torch.stack(group).float()
        gram = stacked @ stacked.transpose(1, 2)
        eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
        norms = torch.linalg.matrix_norm(gram - eye).sum()
        total = norms if total is None else total + norms
        count += len(group)
    if total is None:
        raise ValueError("no LoRA matrices")
    return total / count


@register_method
class KIF(Method):
    name = "kif"
    summary = (
        "KIF: track skill-unit importance, fuse old and new models unit by unit after each task "
        "(with replay: KIF-M, a masked post-fusion replay epoch)."
    )
    params_class = KIFParams
    official_values = OFFICIAL
    distributed = ("no", "multi_gpu", "fsdp")
    distributed_refusals = {
        "zero2": "KIF reads unit importance from whole per-parameter gradients; DeepSpeed keeps gradients in flat partitioned buffers",
        "zero3": "KIF reads unit importance from whole per-parameter gradients; DeepSpeed keeps gradients in flat partitioned buffers",
    }
    capabilities = frozenset({CARRIES_KNOWLEDGE, FIXED_PARAMETERS})

    @classmethod
    def capabilities_for(cls, params: Any) -> frozenset[str]:
        if not params.replay_during_task:  # the run's replay buffers wait for KIF-M's step
            return cls.capabilities | {REPLAYS_AFTER_TASK}
        return cls.capabilities

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.units: Optional[SkillUnits] = None
        self.families: Optional[torch.Tensor] = None  # rank / matrix units, normalised apart
        self.fusion = "adaptive"
        self.tracker: Optional[ImportanceTracker] = None
        self._rebound = False  # this phase's tracker follows the prepared parameters
        self.previous: Optional[list[torch.Tensor]] = None
        self.buffers: list[ReplayBuffer] = []  # held by the run's replay methods
        self.cumulative: Optional[torch.Tensor] = None  # I_cum after the last finished task
        self.history: list[dict[str, Any]] = []  # one record per finished task

    # -- set-up ----------------------------------------------------------------------------

    def on_setup(self, ctx: "RunContext") -> None:
        granularity = self.params.units
        if granularity == "auto":
            granularity = "rank" if ctx.lora else "matrix"
        self.units = build_skill_units(ctx.unwrapped_model(), granularity)
        self.families = self.units.families()
        self.fusion = self.params.fusion
        if self.fusion == "auto":
            self.fusion = "adaptive" if granularity == "rank" else "categorical"
        self.buffers = ctx.components_of("replay_buffer")
        ctx.logger.info(
            "kif: %d %s units over %d tensors, %s fusion%s", len(self.units), granularity,
            len(self.units.tensors), self.fusion,
            f"; KIF-M: post-fusion replay of {len(self.buffers)} replay buffer(s)" if self.buffers else "",
        )

    def _units(self) -> SkillUnits:
        if self.units is None:
            raise MethodError("kif: setup() was not called")
        return self.units

    # -- training --------------------------------------------------------------------------

    def on_phase_start(self, ctx: "RunContext") -> None:
        units = self._units()
        self._start_tracker(ctx)
        # The fused model of the earlier tasks; nothing to fuse with before the first task ends.
        self.previous = snapshot(units) if self.cumulative is not None else None
        self._rebound = False

    def on_batch_start(self, ctx: "RunContext", batch: MicroBatch) -> None:
        # The first preparation (after on_phase_start) replaces the parameters under FSDP: the
        # tracker follows them before the phase's first step.
        if not self._rebound:
            self._rebound = True
            current = training_parameters(ctx.unwrapped_model())
            if any(current.get(t.name) is not t.param for t in self._units().tensors):
                self._start_tracker(ctx)

    def _start_tracker(self, ctx: "RunContext") -> None:
        """Track the parameters the optimizer holds (FSDP2's sharded ones once prepared)."""
        units = self._units()
        units.bind(training_parameters(ctx.unwrapped_model()))
        self.tracker = ImportanceTracker(
            units.parameters, self.params.importance, self.params.beta1, self.params.beta2,
            skip_first=self.params.skip_first_step,
        )

    def on_loss(self, ctx: "RunContext", batch: MicroBatch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        penalty = self._orthogonality()
        if penalty is None:
            return loss
        ctx.add_shard_term(penalty)  # sharded, on gathered matrices: each process takes its own rows' gradient
        return loss + penalty

    def _orthogonality(self) -> Optional[torch.Tensor]:
        units = self._units()
        if self.params.orthogonality <= 0 or not units.lora_pairs:
            return None
        return self.params.orthogonality * orthogonality_penalty(units.lora_pairs)

    def on_step_end(self, ctx: "RunContext") -> None:
        if self.tracker is not None:
            self.tracker.update()

    # -- the end of a task: importance, fusion, KIF-M --------------------------------------

    def on_phase_end(self, ctx: "RunContext") -> Optional[ExtraSteps]:
        units = self._units()
        assert self.tracker is not None
        started = time.perf_counter()
        # Whole tensors' element scores (gathered shards under FSDP), then per-unit means.
        elements = [gather_full(score, like=param) for score, param in zip(self.tracker.element_scores(), units.parameters)]
        scores = units.unit_scores(elements)
        # Identical on every process (all-reduced or reduce-scattered gradients): the mean keeps it.
        scores = ctx.accelerator.reduce(scores, "mean").detach().cpu()
        record: dict[str, Any] = {
            "task": ctx.state.phase.name, "steps": self.tracker.steps, "importance": scores,
            "normalised": min_max(scores, self.families), "lambda_new": None, "frozen": None,
        }
        self.tracker = None
        frozen: Optional[torch.Tensor] = None
        if self.cumulative is None or self.previous is None:
            self.cumulative = scores.clone()  # I_cum(0) = I_0; the fine-tuned model is the fused one
        else:
            new, old = min_max(scores, self.families), min_max(self.cumulative, self.families)
            lam = self._fusion_weights(new, old)
            fuse_(units, self.previous, lam)
            regather(ctx.unwrapped_model())  # FSDP: later passes of this phase's end see the fused weights
            frozen = task_specific(new, old, self.params.top_fraction)
            record.update(lambda_new=lam, frozen=frozen, categories=_categories(new, old, self.params.top_fraction))
            self.cumulative = cumulative_importance(
                self.cumulative, scores, self.params.cumulative_old_weight, self.families
            )
            record["fusion_seconds"] = time.perf_counter() - started
        ctx.logger.info(
            "kif: unit importance%s after %s: %.1fs", "" if frozen is None else " and fusion", ctx.state.phase.name,
            time.perf_counter() - started,
        )
        self.previous = None
        record["cumulative"] = self.cumulative.clone()
        self.history.append(record)
        return None if frozen is None else self._replay_steps(ctx, frozen, record)

    def on_run_files(self) -> dict[str, Any]:
        if not self.history:
            return {}
        return {IMPORTANCE_FILE: importance_payload(self._units(), self.history, self.fusion)}

    def _fusion_weights(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        p = self.params
        if self.fusion == "adaptive":
            return adaptive_weights(new, old, p.temperature)
        if self.fusion == "uniform":
            return uniform_weights(new)
        return categorical_weights(new, old, p.top_fraction, p.shared_new_weight, p.neither_new_weight)

    def _replay_steps(self, ctx: "RunContext", frozen: torch.Tensor, record: dict[str, Any]) -> Optional[ExtraSteps]:
        """KIF-M: ``replay_epochs`` masked passes over the earlier tasks' buffers, run by the engine."""
        if not self.buffers or self.params.replay_epochs == 0:
            return None
        items = [item for buffer in self.buffers for item in buffer.items(ctx)]
        if not items:
            return None
        split = split_frozen(self._units(), frozen)
        started = time.perf_counter()

        def done(stats: StepStats) -> None:
            ctx.logger.info(
                "kif-m: %d replay steps on %d buffer examples, %d units frozen (%d whole tensors, %d partial), mean loss %.4f, %.1fs",
                stats.steps, len(items), int(frozen.sum()), split.fully_frozen, len(split.masks), stats.mean_loss,
                time.perf_counter() - started,
            )
            record.update(replay_steps=stats.steps, replay_examples=len(items), replay_loss=stats.mean_loss,
                          replay_seconds=time.perf_counter() - started)

        return masked_replay_steps(
            split, items,
            lr=self.params.replay_lr or ctx.config.train.lr,
            epochs=self.params.replay_epochs,
            batch_size=self.buffers[0].batch_size(ctx),
            seed=phase_seed(ctx.config.seed, ctx.state.phase_index),
            extra_loss=self._orthogonality,
            done=done,
        )

    # -- reporting and state ---------------------------------------------------------------

    def on_log(self) -> dict[str, float]:
        if not self.history:
            return {}
        last = self.history[-1]
        values = {"kif_importance_steps": float(last["steps"])}
        if last["lambda_new"] is not None:
            values["kif_mean_lambda_new"] = float(last["lambda_new"].mean())
            values["kif_task_specific_units"] = float(last["frozen"].sum())
            values["kif_fusion_s"] = float(last["fusion_seconds"])
        return values

    def on_report(self, ctx: "RunContext") -> list[tuple[str, str]]:
        if not self.history:
            return []
        return [report_section(ctx.run_dir, self._units(), self.history, self.fusion, self.params.top_fraction)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "units": list(self._units().names) if self.units is not None else [],
            "cumulative": self.cumulative,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("units", [])
        if self.units is not None and saved and saved != self.units.names:
            raise MethodError(
                f"kif: the checkpoint's {len(saved)} skill units do not match this model's "
                f"{len(self.units.names)} (was model, model.lora or kif.units changed?)"
            )
        self.cumulative = state.get("cumulative")
        self.history = list(state.get("history", []))


def _categories(new: torch.Tensor, old: torch.Tensor, top_fraction: float) -> dict[str, int]:
    """How many units fall in each row of the categorical table (reported for both fusions)."""
    n, o = important(new, top_fraction), important(old, top_fraction)
    return {"shared": int((n & o).sum()), "old_only": int((o & ~n).sum()),
            "new_only": int((n & ~o).sum()), "neither": int((~n & ~o).sum())}
