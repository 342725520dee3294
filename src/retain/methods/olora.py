"""O-LoRA (Wang et al., 2023): a new LoRA adapter per task, learned orthogonally to the earlier ones.

Task 1 trains the run's LoRA adapter (``default``); every later task ``k`` trains an adapter
``task<k>`` with the same settings. The adapters of all tasks are created when the run is set up,
before the model is first prepared (the stream's length is known), so data-parallel and sharded
wrappers (DDP, FSDP2) know every parameter from the start; a task's adapter joins the forward
pass when its task starts. The adapters of the tasks so far stay active (evaluation uses their
sum); only the newest one is trainable. The loss adds

    lambda1 * sum over LoRA modules, over earlier adapters o of  |A_new A_o^T|.sum()
  + lambda2 * sum over the new adapter's LoRA tensors of ||W||_2

The first term pushes the rows of the new A (the subspace the new task writes into) towards
orthogonality with the earlier tasks' subspaces. Under the classifier kind, the classification head
is one shared, fully trained module (PEFT's ``modules_to_save`` of the first adapter): new adapters
do not get their own head copy, since a union-of-labels head is shared by construction.

Under FSDP the adapters' trainability is set on the sharded parameters the optimizer holds
(:func:`~retain.engine.sharding.training_parameters`), and the orthogonality and L2 terms read
whole (gathered) A and B matrices: every process adds the full term, whose gradient reaches each
process's rows once.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch

from retain.config import option
from retain.engine.sharding import gather_full, training_parameters
from retain.errors import MethodError
from retain.methods.base import CARRIES_KNOWLEDGE, GROWS_PARAMETERS, Method
from retain.methods.registry import register_method

if TYPE_CHECKING:
    from retain.data.collate import MicroBatch
    from retain.engine.context import RunContext

FIRST_ADAPTER = "default"


@dataclass
class OLoraParams:
    lambda1: float = option(
        "Weight of the orthogonality loss between the new and earlier LoRA A matrices.", 0.5, low=0.0
    )
    lambda2: float = option("Weight of the L2 norm of the new LoRA's weights.", 0.0, low=0.0)


def lora_layers(model: torch.nn.Module) -> list[Any]:
    """PEFT LoRA layers of ``model`` (modules holding per-adapter ``lora_A`` / ``lora_B``)."""
    return [m for m in model.modules() if _is_lora_layer(m)]


def add_task_adapter(model: Any, name: str) -> None:
    """Add a LoRA adapter ``name`` with the first adapter's settings (no head copy, see module doc)."""
    config = copy.deepcopy(model.peft_config[FIRST_ADAPTER])
    config.modules_to_save = None
    model.peft_config[name] = config
    with warnings.catch_warnings():  # transformers' deprecation notice about a property PEFT reads
        warnings.simplefilter("ignore", FutureWarning)
        model.base_model.inject_adapter(model.base_model.model, name)


def task_adapter_name(phase_index: int) -> str:
    """The adapter that phase ``phase_index`` (0-based) trains."""
    return FIRST_ADAPTER if phase_index == 0 else f"task{phase_index}"


def adapter_parameter_names(model: torch.nn.Module) -> dict[str, str]:
    """Qualified name of every per-adapter LoRA tensor of ``model`` -> its adapter's name."""
    owners: dict[str, str] = {}
    for module_name, layer in model.named_modules():
        if not _is_lora_layer(layer):
            continue
        for attribute in layer.adapter_layer_names:
            for adapter, entry in getattr(layer, attribute).items():
                prefix = f"{module_name}.{attribute}.{adapter}"
                if isinstance(entry, torch.nn.Parameter):
                    owners[prefix] = adapter
                else:
                    owners.update({f"{prefix}.{name}": adapter for name, _ in entry.named_parameters()})
    return owners


def _is_lora_layer(module: torch.nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return isinstance(module, BaseTunerLayer) and hasattr(module, "lora_A")


def activate_adapters(
    model: torch.nn.Module, names: list[str], trainable: Optional[str],
    parameters: Optional[dict[str, torch.nn.Parameter]] = None,
) -> None:
    """All ``names`` take part in the forward pass (their deltas add up); only ``trainable`` learns.

    The adapters are set on the LoRA layers themselves: PEFT's model-level ``set_adapter`` also
    switches the head copies, which allow one active adapter only. Trainability is set on the
    model's parameters and on ``parameters`` (by name: the sharded parameters an optimizer holds
    under FSDP, which differ from the module's full copies inside ``full_parameters``).
    """
    for layer in lora_layers(model):
        layer.set_adapter(list(names))
    sources = [dict(model.named_parameters())] + ([parameters] if parameters is not None else [])
    for name, adapter in adapter_parameter_names(model).items():
        for source in sources:
            if name in source:
                source[name].requires_grad_(adapter == trainable)


def orthogonality_loss(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """sum over (A_new [r, d], A_old [r', d]) pairs of |A_new A_old^T|.sum()."""
    total = pairs[0][0].new_zeros(()) if pairs else torch.zeros(())
    for a_new, a_old in pairs:
        total = total + (a_new @ a_old.T).abs().sum()
    return total


def adapter_pairs(model: torch.nn.Module, new: str, old: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(A_new, A_old) weight pairs over every LoRA module and every earlier adapter (whole
    matrices: gathered under FSDP)."""
    pairs = []
    for layer in lora_layers(model):
        if new not in layer.lora_A:
            continue
        a_new = gather_full(layer.lora_A[new].weight)
        for name in old:
            if name in layer.lora_A:
                pairs.append((a_new, gather_full(layer.lora_A[name].weight.detach())))
    return pairs


def adapter_l2(model: torch.nn.Module, name: str) -> torch.Tensor:
    """sum of the L2 (Frobenius) norms of adapter ``name``'s LoRA A and B weights."""
    norms = [
        gather_full(module_dict[name].weight).norm(p=2)
        for layer in lora_layers(model)
        for module_dict in (layer.lora_A, layer.lora_B)
        if name in module_dict
    ]
    return torch.stack(norms).sum() if norms else torch.zeros(())


@register_method
class OLoRA(Method):
    name = "olora"
    summary = "O-LoRA: a new LoRA per task, orthogonal to the frozen earlier ones (enables LoRA)."
    params_class = OLoraParams
    needs_lora = True
    needs_fresh_optimizer = True
    # Every adapter exists before the first preparation, so FSDP and ZeRO-2 see them all.
    distributed = ("no", "multi_gpu", "fsdp", "zero2")
    distributed_refusals = {
        "zero3": "O-LoRA's orthogonality and L2 terms read whole adapter matrices outside the forward pass, "
        "where ZeRO-3 holds only each process's partition of them",
    }
    capabilities = frozenset({CARRIES_KNOWLEDGE, GROWS_PARAMETERS})

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.adapters: list[str] = [FIRST_ADAPTER]
        self._model: Any = None

    def on_setup(self, ctx: "RunContext") -> None:
        from retain.models.loading import is_lora_model

        model = ctx.unwrapped_model()
        if not is_lora_model(model) or FIRST_ADAPTER not in model.peft_config:
            raise MethodError("methods: olora needs the run's PEFT LoRA adapter (model.lora.enabled=true)")
        self._model = model
        # Every task's adapter now, before the first preparation; drawn from a forked generator,
        # so the run's random stream is the one it would be without them.
        with torch.random.fork_rng(devices=[]):
            self._ensure([task_adapter_name(i) for i in range(len(ctx.phases))])
        activate_adapters(model, self.adapters, trainable=FIRST_ADAPTER)

    @property
    def current(self) -> str:
        return self.adapters[-1]

    def _ensure(self, names: list[str]) -> None:
        for name in names:
            if name not in self._model.peft_config:
                add_task_adapter(self._model, name)

    def on_phase_start(self, ctx: "RunContext") -> None:
        name = task_adapter_name(ctx.state.phase_index)
        if name not in self.adapters:
            self.adapters.append(name)
        model = ctx.unwrapped_model()
        missing = [a for a in self.adapters if a not in model.peft_config]
        if missing:  # made at set-up for every phase: a missing one was never prepared
            raise MethodError(f"olora: adapter(s) {', '.join(missing)} were not created at set-up")
        activate_adapters(model, self.adapters, trainable=name, parameters=training_parameters(model))

    def on_loss(self, ctx: "RunContext", batch: "MicroBatch", outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        extra = loss.new_zeros(())
        if self.params.lambda1 and len(self.adapters) > 1:
            pairs = adapter_pairs(self._model, self.current, self.adapters[:-1])
            extra = extra + self.params.lambda1 * orthogonality_loss(pairs)
        if self.params.lambda2:
            extra = extra + self.params.lambda2 * adapter_l2(self._model, self.current)
        if extra.requires_grad:
            ctx.add_shard_term(extra)  # sharded, on gathered matrices: each process takes its own rows' gradient
        return loss + extra

    def state_dict(self) -> dict[str, Any]:
        return {"adapters": list(self.adapters)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Before the runner loads the checkpoint's lora_ tensors into them (and before the model
        # is prepared): the adapters exist from set-up; a checkpoint's extra one is created.
        self.adapters = list(state.get("adapters", [FIRST_ADAPTER]))
        self._ensure(self.adapters)
        activate_adapters(self._model, self.adapters, trainable=None)

    def on_log(self) -> dict[str, float]:
        return {"olora_adapters": float(len(self.adapters))}
