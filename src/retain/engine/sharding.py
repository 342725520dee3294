"""Sharded training: which back-end a run asked for, the Accelerator that provides it, and the
services methods need on sharded parameters.

A run asks for sharding with ``train.sharding`` (``fsdp``: FSDP2 through Accelerate; ``zero2`` /
``zero3``: DeepSpeed ZeRO stage 2 / 3) or with the flags ``accelerate launch`` sets in the
environment (``ACCELERATE_USE_FSDP``, ``ACCELERATE_USE_DEEPSPEED``); both at once must agree.

Why the engine checks what Accelerate built: on a machine without a GPU Accelerate quietly
drops the request. Under ``torchrun`` without ``ACCELERATE_USE_CPU`` every process becomes its
own single-process run (N unsharded runs writing one folder); with it, FSDP and DeepSpeed
become plain DDP. The first is refused (:func:`check_launch`); for FSDP the second is turned
into the FSDP it was asked to be (Accelerate's FSDP2 path runs on gloo CPU processes unchanged),
so CPU tests exercise the same engine code path as a GPU run.

Under FSDP2 a forward all-gathers parameters, a collective, so processes must run the same
number of forwards. Statistics passes and evaluation divide their batches over processes with
shares that may differ by one (:mod:`retain.engine.collective`); they run inside
:func:`full_parameters`, which gathers every parameter once and switches the collectives of
forward and backward off until the pass is over. Under ZeRO-3 DeepSpeed's module hooks all-gather
each submodule's parameters before its forward: :func:`full_parameters` gathers every parameter
once and takes the hooks off for the pass. The model is built whole (not partitioned inside
``deepspeed.zero.Init``) and partitioned by the first task's preparation
(:func:`_unregister_from_transformers`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Optional

import torch

from retain.errors import RetainError

#: the sharding modes a run may ask for (train.sharding); "none": data parallelism or one process
SHARDING_MODES = ("none", "fsdp", "zero2", "zero3")


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes")


def launcher_mode() -> str:
    """The sharding ``accelerate launch`` asked for through the environment ("none" if none)."""
    if _flag("ACCELERATE_USE_FSDP"):
        return "fsdp"
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2").strip()
        return f"zero{stage}"
    return "none"


def requested_mode(configured: str) -> str:
    """The run's sharding: ``train.sharding`` and the launcher's request, which must agree."""
    launched = launcher_mode()
    if launched not in SHARDING_MODES:
        raise RetainError(
            f"accelerate launch asked for DeepSpeed ZeRO stage {launched[4:]}; retain runs stages 2 and 3 "
            "(train.sharding: zero2 | zero3)"
        )
    if configured != "none" and launched != "none" and configured != launched:
        raise RetainError(
            f"train.sharding is {configured} but the launcher asked for {launched}; "
            "set one of them (or make them agree)"
        )
    return configured if configured != "none" else launched


def _world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _has_accelerator_device() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def build_accelerator(mode: str, train: Any, log_with: Optional[list[Any]] = None) -> Any:
    """An Accelerator for ``mode`` and the run's ``train`` settings (see the module docstring),
    refusing a silent degrade. ``log_with``: the run's trackers (:mod:`retain.engine.trackers`)."""
    from accelerate import Accelerator

    restore_process_type()
    launched = "LOCAL_RANK" in os.environ or _world_size() > 1
    if mode != "none" and not launched:
        raise RetainError(
            f"train.sharding={mode} needs a process group; launch with "
            "`torchrun --nproc_per_node N -m retain run ...` (N=1 for one process) or `accelerate launch`"
        )
    # Without a GPU Accelerate only forms a process group when told to run on the CPU, and then
    # it drops the sharding plugins: the engine puts them back (promote below).
    cpu = launched and not _has_accelerator_device() and (mode != "none" or _flag("ACCELERATE_USE_CPU"))
    kwargs: dict[str, Any] = {"mixed_precision": train.mixed_precision, "gradient_accumulation_steps": train.grad_accum,
                              "log_with": log_with or None}
    plugin: Any = None
    if mode == "fsdp":
        plugin = fsdp_plugin()
    elif mode in ("zero2", "zero3"):
        plugin = deepspeed_plugin(int(mode[4:]), train)
    if cpu:
        kwargs["cpu"] = True
    elif plugin is not None:
        kwargs["fsdp_plugin" if mode == "fsdp" else "deepspeed_plugin"] = plugin
    accelerator = Accelerator(**kwargs)
    if cpu and plugin is not None:
        _promote(accelerator, mode, plugin)
    check_launch(accelerator, mode)
    if mode == "zero3":
        _unregister_from_transformers()
    return accelerator


def _unregister_from_transformers() -> None:
    """Keep Transformers from treating the process as a ZeRO-3 one (the engine does that itself).

    Selecting a ZeRO-3 plugin registers its config with Transformers (Accelerate does so
    whatever ``zero3_init_flag`` says), and Transformers then (1) builds every model inside
    ``deepspeed.zero.Init``: partitioned at construction and initialised by another path than
    one process takes (tiny-llama, seed 7, 2 processes: initial weights up to 0.13 apart, the
    cause of ZeRO-3's measured 0.14 final-weight difference), where the engine needs the whole
    model until the first task's preparation partitions it (the row scored before training and a
    resumed run's weights; a partitioned module's forward outside the engine fails with
    ``'weight' must be 2-D``); and (2) synchronises ``generate`` across processes (an all-reduce
    per token), which hangs when processes score shares of different sizes. Evaluation and
    statistics passes run on gathered parameters instead (:func:`full_parameters`).
    """
    try:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config
    except ImportError:  # pragma: no cover - transformers without its DeepSpeed integration
        return
    unset_hf_deepspeed_config()


#: the process group's own type, kept when :func:`_promote` changed it (several runs per process)
_PROMOTED_FROM: list[Any] = []


def restore_process_type() -> None:
    """Give the process group back its own distributed type before the next run's Accelerator.

    An Accelerator for FSDP or DeepSpeed writes that type into the process-wide ``PartialState``
    (Accelerate does on a GPU, :func:`_promote` does on the CPU), and the AcceleratorState of the
    next run in the same process copies it. Accelerate only applies an FSDP plugin to a
    data-parallel type, so a second FSDP run would get no plugin (on an H200, every run after the
    first: ``'AcceleratorState' object has no attribute 'is_fsdp2'``). The type the process group
    chose for itself is put back first: the one :func:`_promote` replaced, else the one Accelerate's
    own back-end choice gives for this launch.
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    shared = PartialState._shared_state
    if _PROMOTED_FROM:
        shared["distributed_type"] = _PROMOTED_FROM.pop()
    elif shared.get("distributed_type") in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        state = PartialState()
        _, own = state._prepare_backend(state._cpu, False, state.backend)
        shared["distributed_type"] = own


def _promote(accelerator: Any, mode: str, plugin: Any) -> None:
    """Turn a CPU process group's DDP into the FSDP2 / DeepSpeed run that was asked for.

    Accelerate's FSDP2 and DeepSpeed paths run on gloo CPU processes unchanged; it only keeps them
    for accelerator devices. Both shared states are set: a later ``AcceleratorState()`` copies
    ``PartialState``'s type over its own.
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    precision = accelerator.mixed_precision  # read before the type changes: DeepSpeed's reads its plugin
    kind = DistributedType.FSDP if mode == "fsdp" else DistributedType.DEEPSPEED
    _PROMOTED_FROM.append(PartialState._shared_state["distributed_type"])
    PartialState._shared_state["distributed_type"] = kind
    accelerator.state.distributed_type = kind
    if mode == "fsdp":
        if precision != "no":
            plugin.set_mixed_precision(precision)
        accelerator.state.fsdp_plugin = plugin
        return
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")  # joins the process group Accelerate formed
    if precision != "no":
        plugin.set_mixed_precision(precision)
    accelerator.state.deepspeed_plugins = {"default": plugin}
    plugin.select(_from_accelerator_state=True)
    accelerator.deepspeed_engine_wrapped = None


def fsdp_plugin() -> Any:
    """FSDP2, full state dicts for checkpoints, one shard group per transformer block."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        state_dict_type="FULL_STATE_DICT",
        auto_wrap_policy="transformer_based_wrap",
        reshard_after_forward=True,
        cpu_ram_efficient_loading=False,
    )


def deepspeed_plugin(stage: int, train: Any) -> Any:
    """ZeRO ``stage`` with the engine's own AdamW and schedule; ZeRO-3 gathers full weights for
    checkpoints (``zero3_save_16bit_model``: the weights in their training dtype)."""
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(
        zero_stage=stage,
        gradient_accumulation_steps=train.grad_accum,
        gradient_clipping=train.max_grad_norm if train.max_grad_norm is not None else 0.0,
        zero3_save_16bit_model=True,
        zero3_init_flag=False,
    )
    # The engine feeds micro-batches from its own plan, not a DataLoader Accelerate could read.
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = train.batch_size
    return plugin


def forget_engine(accelerator: Any) -> None:
    """Before a task's DeepSpeed preparation: drop the finished task's engine.

    Accelerate keeps the first engine it built for every later backward; a task's new
    optimizer gets a new engine, so the old one is destroyed (its partitioned optimizer state
    freed) and forgotten.
    """
    engine = getattr(accelerator, "deepspeed_engine_wrapped", None)
    if engine is not None:
        engine.engine.destroy()
        accelerator.deepspeed_engine_wrapped = None


def check_launch(accelerator: Any, mode: str) -> None:
    """Refuse a launch Accelerate did not honour (N independent runs, or sharding dropped)."""
    world = _world_size()
    if world > 1 and accelerator.num_processes != world:
        raise RetainError(
            f"launched as {world} processes (WORLD_SIZE={world}) but Accelerate set up "
            f"{accelerator.num_processes} in its process group: {world} independent runs would train "
            "unsharded and write one run folder. On a machine without a GPU set ACCELERATE_USE_CPU=1 "
            "(accelerate launch --cpu)"
        )
    got = distributed_mode(accelerator)
    if mode != "none" and got != mode:
        raise RetainError(f"train.sharding={mode} was asked for but Accelerate set up {got}; the run would not be sharded")


def distributed_mode(accelerator: Any) -> str:
    """The run's mode for the methods' checks: Accelerate's type in lower case, with DeepSpeed
    named by its ZeRO stage (``zero2``, ``zero3``), as methods support the stages differently."""
    name = str(accelerator.distributed_type).split(".")[-1].lower()
    if name == "deepspeed":
        plugin = accelerator.state.deepspeed_plugin
        stage = plugin.zero_stage if plugin is not None else 0
        return f"zero{stage}"
    return name


# -- FSDP2 services -------------------------------------------------------------------------------


def fsdp_modules(model: torch.nn.Module) -> list[Any]:
    """The FSDP2-sharded modules of ``model`` (empty when it is not sharded by FSDP2)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        return []
    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def is_sharded(model: torch.nn.Module) -> bool:
    return bool(fsdp_modules(model))


#: attribute of a model inside :func:`full_parameters`: its sharded parameters by name, as they
#: were when the context was entered (see :func:`training_parameters`)
_SHARDED_BY_NAME = "_retain_sharded_parameters"


def _enter_full(modules: list[Any]) -> None:
    root = modules[0]
    root.set_reshard_after_forward(False)
    root.set_reshard_after_backward(False)
    root.set_requires_gradient_sync(False)
    for module in modules:  # the same order on every process: the all-gathers pair up
        module.unshard()


def _leave_full(model: torch.nn.Module, modules: list[Any]) -> None:
    root = modules[0]
    for module in modules:
        module.reshard()
    for parameter in model.parameters():
        parameter.grad = None
    root.set_requires_gradient_sync(True)
    root.set_reshard_after_backward(True)
    root.set_reshard_after_forward(True)


def zero3_engine(accelerator: Any) -> Any:
    """The DeepSpeed engine that partitions the model under ZeRO-3 (None before the first
    task's preparation, when the model is whole, and in any other mode)."""
    if distributed_mode(accelerator) != "zero3":
        return None
    wrapped = getattr(accelerator, "deepspeed_engine_wrapped", None)
    return wrapped.engine if wrapped is not None else None


@contextlib.contextmanager
def _zero3_full(engine: Any) -> Iterator[None]:
    """ZeRO-3's :func:`full_parameters`: every parameter gathered once (the same all-gathers on
    every process), and the engine's module hooks off until the pass is over. Those hooks
    all-gather a submodule's parameters before its forward and compare the module order across
    processes after the model's forward: collectives, which hang when processes run different
    numbers of forwards. On exit the hooks are registered again (DeepSpeed re-records its
    prefetch trace at the next forward) and the parameters partitioned again from the main
    process's full tensors (a broadcast): a method that writes weights inside (``single``'s reset
    at a phase's start, before the phase's optimizer is built) writes the same on every process,
    and without it DeepSpeed would keep the partitions from before the pass."""
    import deepspeed

    offload = engine.optimizer.parameter_offload
    parameters = list(engine.module.parameters())
    with deepspeed.zero.GatheredParameters(parameters, modifier_rank=0):
        offload._remove_module_hooks()
        try:
            yield
        finally:
            offload.setup_zero_stage3_hooks()
            for parameter in parameters:
                parameter.grad = None


@contextlib.contextmanager
def full_parameters(model: torch.nn.Module, engine: Any = None) -> Iterator[None]:
    """Every parameter gathered on every process, and no collective in forward or backward.

    Inside, ``named_parameters()`` returns the full (unsharded) tensors and processes may run
    different numbers of forwards (a share of a statistics pass, generation of different
    lengths). Gradients taken inside stay local (no reduce-scatter) and are dropped on exit.
    The sharded parameters stay the weights' source of truth: a method that changes weights
    inside writes them with :func:`write_full` and calls :func:`regather`; the parameters an
    optimizer holds are :func:`training_parameters`. Not re-entrant; a no-op for a model FSDP2
    does not shard and no ``engine`` partitions.

    ``engine``: the DeepSpeed engine partitioning the model under ZeRO-3 (:func:`zero3_engine`).
    There the FSDP2 notes above do not apply: the module's parameters are the gathered full
    tensors, writes into them reach the partitions on exit (all processes must write the same),
    and no parameter gradient may be taken inside (DeepSpeed's reduce hooks stay on; the methods
    that need parameter gradients in a pass refuse ZeRO-3).
    """
    if engine is not None:
        with _zero3_full(engine):
            yield
        return
    modules = fsdp_modules(model)
    if not modules:
        yield
        return
    for module in modules:  # sharded on entry, so the names below map to the sharded parameters
        module.reshard()
    setattr(model, _SHARDED_BY_NAME, dict(model.named_parameters()))
    _enter_full(modules)
    try:
        yield
    finally:
        _leave_full(model, modules)
        delattr(model, _SHARDED_BY_NAME)


def training_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters an optimizer holds, by name: FSDP2's sharded parameters, also inside
    :func:`full_parameters` (where the module attributes are temporary full copies); elsewhere
    ``named_parameters()``. What a method binds to when it tracks, freezes or rewrites tensors."""
    sharded = getattr(model, _SHARDED_BY_NAME, None)
    return dict(sharded) if sharded is not None else dict(model.named_parameters())


def regather(model: torch.nn.Module) -> None:
    """Inside :func:`full_parameters`, after shards were written: gather the full parameters
    again so that later forwards in the context see the new weights (a collective); a no-op
    outside or without FSDP2."""
    modules = fsdp_modules(model)
    if not modules or getattr(model, _SHARDED_BY_NAME, None) is None:
        return
    for module in modules:
        module.reshard()
    for module in modules:
        module.unshard()


@contextlib.contextmanager
def sharded_steps(model: torch.nn.Module) -> Iterator[None]:
    """Optimizer steps from inside :func:`full_parameters` (KIF-M's replay at a phase's end):
    the model is sharded with its collectives on for the steps (the optimizer updates the shards
    and FSDP2 reduce-scatters gradients into them), then gathered again. A no-op outside."""
    modules = fsdp_modules(model)
    if not modules or getattr(model, _SHARDED_BY_NAME, None) is None:
        yield
        return
    _leave_full(model, modules)
    try:
        yield
    finally:
        _enter_full(modules)


def gather_full(tensor: torch.Tensor, like: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The full tensor of a sharded one, on every process (a collective; differentiable: the
    gradient of the full tensor comes back as this process's rows, unaveraged), or ``tensor``
    itself when nothing is sharded.

    ``like``: ``tensor`` is this process's local part (a plain tensor, e.g. a statistic kept
    per shard) of a tensor sharded like ``like``, a parameter or gradient.
    """
    from torch.distributed.tensor import DTensor

    if isinstance(tensor, DTensor):
        return tensor.full_tensor()
    if isinstance(like, DTensor):
        return DTensor.from_local(
            tensor, like.device_mesh, like.placements, run_check=False, shape=like.shape, stride=like.stride()
        ).full_tensor()
    return tensor


@torch.no_grad()
def write_full(param: torch.Tensor, full: torch.Tensor) -> None:
    """Copy the full tensor ``full`` into ``param``: this process's rows into its shard (no
    collective), or the whole tensor when ``param`` is not sharded."""
    local = local_tensor(param)
    local.copy_(local_part(full, param).to(local.device, local.dtype))


def local_part(full: torch.Tensor, like: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The part of ``full`` (a per-unit vector along ``dim`` of ``like``'s global shape) that this
    process holds of ``like``, a parameter or gradient FSDP2 shards by rows; ``full`` itself when
    ``like`` is not sharded or not along ``dim``."""
    from torch.distributed.tensor import DTensor, Shard

    if not isinstance(like, DTensor):
        return full
    for mesh_dim, placement in enumerate(like.placements):
        if isinstance(placement, Shard) and placement.dim == dim:
            mesh = like.device_mesh
            chunks = torch.chunk(full, mesh.size(mesh_dim), dim=0)
            index = mesh.get_local_rank(mesh_dim)
            return chunks[index] if index < len(chunks) else full[:0]
    return full


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of a sharded tensor (a differentiable view), or the tensor itself."""
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def full_state_dict(accelerator: Any, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's full state dict on every process (a collective under sharding: call it on all).

    FSDP2-sharded tensors are gathered one by one into CPU tensors (the main process writes
    them; the others drop them); anything else goes through Accelerate (DeepSpeed's ZeRO-3
    consolidation, or the plain state dict).
    """
    from torch.distributed.tensor import DTensor

    if not is_sharded(model):
        if distributed_mode(accelerator).startswith("zero") and not hasattr(model, "zero_optimization_stage"):
            # DeepSpeed before its first engine (the row before training): a plain module
            return {name: tensor.detach().cpu() for name, tensor in accelerator.unwrap_model(model).state_dict().items()}
        return accelerator.get_state_dict(model)
    gathered: dict[str, torch.Tensor] = {}
    for name, tensor in accelerator.unwrap_model(model).state_dict().items():
        full = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
        gathered[name] = full.detach().cpu()
    return gathered


@torch.no_grad()
def load_full_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy full tensors (a full state dict, or part of one) into ``model``, sharded or not.

    Under FSDP2 each process copies its own rows into its shard (no collective), also inside
    :func:`full_parameters`, where the shards stay the weights' source of truth; elsewhere it is
    ``load_state_dict(strict=False)``.
    """
    from torch.distributed.tensor import DTensor

    if not is_sharded(model):
        model.load_state_dict(tensors, strict=False)
        return
    targets = model.state_dict()  # FSDP2 hands out the sharded tensors, aliasing the shards
    for name, full in tensors.items():
        target = targets.get(name)
        if target is None:
            continue
        if isinstance(target, DTensor):
            local = target.to_local()
            local.copy_(local_part(full, target).to(local.device, local.dtype))
        else:
            target.copy_(full.to(target.device, target.dtype))
