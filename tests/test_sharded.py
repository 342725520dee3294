"""Sharded training (FSDP2, DeepSpeed ZeRO-2/3) on CPU gloo processes, against one unsharded process.

The launches run ``tests/sharded_equivalence.py`` (the scenarios of ``tests/ddp_equivalence.py``
with ``train.sharding`` set) in two processes with batch B, and the unsharded reference in one
process with batch B and ``grad_accum`` 2 (the same global batch); runs are compared as the
data-parallel ones are (final weights, matrix, micro-batches per task and per process).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from retain.engine import sharding
from retain.errors import MethodError, RetainError
from tests import test_distributed
from tests.ddp_equivalence import SCENARIOS

BIN = Path(sys.executable).parent
needs_torchrun = pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None, reason="torchrun not installed")
DRIVER = Path(__file__).with_name("sharded_equivalence.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ENV.pop("ACCELERATE_USE_CPU", None)  # sharded runs need no CPU flag: the engine forms the group
#: in CI: the methods whose math changes under FSDP (EWC's penalty on local rows, MIGU's row
#: masks on local gradient shards, KIF's gathered importance, fusion written back per shard and
#: masked replay on LoRA rank units, O-LoRA's adapters unfrozen per task and gathered
#: orthogonality loss), EWC at lam 1e6 on 3 tasks, and shares that do not divide (a pad batch;
#: 9 evaluation examples at eval batch 4, which hung in generation); the rest runs under `slow`
FAST_FSDP = ["ewc", "migu", "kif-m-lora", "olora", "reported-ewc", "uneven-seqft", "uneven-ewc", "uneven-olora"]
#: largest weight difference accepted between 2 sharded processes and 1 unsharded: FSDP2
#: reduce-scatters gradients and EWC sums its penalty per shard, in other orders than one process,
#: and the differences grow with every step (measured after 2 tasks,
#: benchmarks/results/sharded_equivalence.json: FSDP at most 4.6e-5, MIGU with a pad batch; ZeRO-2
#: 2.9e-5, LwF; ZeRO-3 2.5e-5, LwF; at the reported settings, 3 tasks at batch 4 over seeds 7, 1,
#: 2, benchmarks/results/equivalence_settings.json: FSDP 5.1e-6, ZeRO-2 1.7e-5, ZeRO-3 3.0e-5,
#: where one process with a learning rate off by one part in 1e7 moves 1.5e-5). A wrong mask,
#: scale or replay count moves weights by about the learning rate (3e-3).
SHARDED_TOLERANCE = 1e-4
#: scenarios whose runs carry rounding further, with their own tolerance: mixed replay under FSDP
#: ends 1.1e-4, 4.9e-5 and 3.6e-5 from one process over seeds 7, 1, 2, where one process with a
#: learning rate off by one part in 1e7 moves 4.8e-5, 1.4e-5 and 2.2e-5
#: (benchmarks/equivalence_settings.py fsdp replay --seeds 7 1 2); still 10 times below a fault
SENSITIVE = {"replay": 3e-4}


def _per_shard_loss(scenario: str) -> bool:
    """Whether a method of ``scenario`` adds a loss term computed per shard under FSDP (EWC's
    penalty: each process's rows), so that a step log record, the mean over processes, holds
    1/N of that term: its loss is not one process's, its gradient norm is."""
    from retain.config import parse_method_list

    return any(spec.name == "ewc" for spec in parse_method_list(SCENARIOS[scenario]))


def _compare(single: Path, double: Path, scenario: str, mode: str = "fsdp") -> None:
    """The data-parallel comparison (weights, matrix, micro-batches, step logs) at the sharded
    tolerance."""
    saved = test_distributed.WEIGHT_TOLERANCE
    test_distributed.WEIGHT_TOLERANCE = max(SHARDED_TOLERANCE, SENSITIVE.get(scenario, 0.0))
    logged = ("train/grad_norm",) if mode == "fsdp" and _per_shard_loss(scenario) else test_distributed.LOGGED
    try:
        test_distributed._compare(single, double, scenario, logged)
    finally:
        test_distributed.WEIGHT_TOLERANCE = saved


def _claims(mode: str) -> list[str]:
    """The scenarios whose every method declares ``mode``."""
    from retain.config import parse_method_list
    from retain.methods.registry import available_methods, supports_mode

    methods = available_methods()
    return [
        name for name, specs in SCENARIOS.items()
        if all(supports_mode(methods[spec.name](), mode) for spec in parse_method_list(specs))
    ]


def _launch(out: Path, mode: str, scenarios: list[str], timeout: int = 900) -> tuple[Path, Path]:
    """The sharded launch (2 processes) and the unsharded reference (1 process), side by side."""
    return test_distributed.launch_side_by_side(
        out, scenarios, [str(DRIVER), mode], ENV, timeout_two=timeout, timeout_one=timeout
    )


# -- choosing and checking the back-end (no launch) ----------------------------------------------


def test_launcher_request_and_config_must_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert sharding.requested_mode("none") == "fsdp"
    assert sharding.requested_mode("fsdp") == "fsdp"
    with pytest.raises(RetainError, match="train.sharding is zero2 but the launcher asked for fsdp"):
        sharding.requested_mode("zero2")
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert sharding.requested_mode("none") == "zero3"
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "1")
    with pytest.raises(RetainError, match="stages 2 and 3"):
        sharding.requested_mode("none")


class _FakeAccelerator:
    def __init__(self, processes: int, kind: str) -> None:
        self.num_processes = processes
        self.distributed_type = kind
        self.state = self


def test_n_independent_runs_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun on a CPU machine without the CPU flag: every process its own one-process run."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RetainError, match=r"launched as 2 processes .* 2 independent runs .* ACCELERATE_USE_CPU=1"):
        sharding.check_launch(_FakeAccelerator(1, "DistributedType.NO"), "none")
    sharding.check_launch(_FakeAccelerator(2, "DistributedType.MULTI_CPU"), "none")


def test_sharding_dropped_by_accelerate_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RetainError, match="train.sharding=fsdp was asked for but Accelerate set up multi_cpu"):
        sharding.check_launch(_FakeAccelerator(2, "DistributedType.MULTI_CPU"), "fsdp")


def test_the_next_run_finds_the_process_groups_own_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU Accelerate writes FSDP into the process-wide state; the next run's Accelerator
    would copy it and skip the FSDP plugin (seen on an H200: every run after the first failed with
    no attribute 'is_fsdp2'). The state is emulated here as Accelerate leaves it on a GPU."""
    import accelerate.state as accelerate_state
    from accelerate.utils import DistributedType

    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(accelerate_state, "get_torch_accelerator_backend", lambda: ("cuda", None))
    monkeypatch.setattr(accelerate_state, "get_distributed_backend", lambda device: "nccl")
    after_fsdp = {"distributed_type": DistributedType.FSDP, "_cpu": False, "backend": "nccl"}
    monkeypatch.setattr(accelerate_state.PartialState, "_shared_state", after_fsdp)
    monkeypatch.setattr(sharding, "_PROMOTED_FROM", [])
    sharding.restore_process_type()
    assert after_fsdp["distributed_type"] == DistributedType.MULTI_GPU
    # a type the process group chose itself is left alone
    sharding.restore_process_type()
    assert after_fsdp["distributed_type"] == DistributedType.MULTI_GPU


def test_sharding_without_a_launcher_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    train: Any = type("Train", (), {"mixed_precision": "no", "grad_accum": 1, "batch_size": 2, "max_grad_norm": 1.0})()
    with pytest.raises(RetainError, match="train.sharding=fsdp needs a process group; launch with `torchrun"):
        sharding.build_accelerator("fsdp", train)


@pytest.mark.parametrize("mode", ["fsdp", "zero2", "zero3"])
def test_every_method_runs_sharded_or_says_why_not(mode: str) -> None:
    """A method either declares the mode or refuses it with a reason the user sees."""
    from retain.methods.registry import available_methods, check_combination, supports_mode

    for name, cls in sorted(available_methods().items()):
        method = cls()
        if supports_mode(method, mode):
            continue
        assert mode in cls.distributed_refusals, f"{name} refuses {mode} without a reason"
        lora = method.needs_lora is True
        with pytest.raises(MethodError, match=f"{name} does not support distributed mode {mode}: .+"):
            check_combination([method], "causal", lora, mode)


def test_refusal_names_the_reason() -> None:
    from retain.methods.registry import available_methods, check_combination

    kif = available_methods()["kif"]()
    with pytest.raises(MethodError, match="unit importance from whole per-parameter gradients"):
        check_combination([kif], "causal", True, "zero2")


def test_a_carried_optimizer_is_refused_under_sharding(tmp_path: Path) -> None:
    import retain
    from tests.conftest import tiny_config

    config = tiny_config(tmp_path, train={"sharding": "fsdp", "reset_optimizer_per_task": False})
    with pytest.raises(RetainError, match="reset_optimizer_per_task=false with sharding fsdp"):
        retain.run(config, quiet=True)
    assert not (tmp_path / "runs" / "run").exists()


def test_local_part_of_an_unsharded_tensor_is_the_tensor() -> None:
    import torch

    full = torch.arange(6.0)
    assert sharding.local_part(full, torch.zeros(6, 2)) is full
    assert sharding.local_tensor(full) is full
    assert sharding.gather_full(full) is full and sharding.gather_full(full, like=torch.zeros(6)) is full
    target = torch.zeros(6)
    sharding.write_full(target, full)
    assert torch.equal(target, full)


def test_unsharded_models_need_no_sharding_services() -> None:
    """Methods call the FSDP services unconditionally; without FSDP2 they are the plain model's."""
    import torch

    model = torch.nn.Linear(2, 2)
    assert sharding.training_parameters(model) == dict(model.named_parameters())
    with sharding.full_parameters(model):
        assert sharding.training_parameters(model)["weight"] is model.weight
        sharding.regather(model)
        with sharding.sharded_steps(model):
            pass


# -- two sharded processes against one unsharded ---------------------------------------------------


@pytest.fixture(scope="module")
def fast_fsdp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _launch(tmp_path_factory.mktemp("fsdp-fast"), "fsdp", FAST_FSDP)


@needs_torchrun
@pytest.mark.parametrize("scenario", FAST_FSDP)
def test_fsdp_two_processes_match_one(fast_fsdp: tuple[Path, Path], scenario: str) -> None:
    _compare(*fast_fsdp, scenario)


@pytest.fixture(scope="module")
def all_fsdp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _launch(tmp_path_factory.mktemp("fsdp-all"), "fsdp", _claims("fsdp"), timeout=1800)


#: scenarios that do not match under FSDP yet, with the reason (none now: EWC's per-shard penalty on
#: a pad micro-batch, 6.7e-3 apart before it was weighted over processes, matches since)
FSDP_KNOWN: dict[str, str] = {}


@needs_torchrun
@pytest.mark.slow
@pytest.mark.parametrize("scenario", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=FSDP_KNOWN[name])) if name in FSDP_KNOWN else name
    for name in _claims("fsdp")
])
def test_every_fsdp_method_matches_one_process(all_fsdp: tuple[Path, Path], scenario: str) -> None:
    _compare(*all_fsdp, scenario)


# -- evaluation sets that do not divide over the processes -----------------------------------------

UNEVEN_DRIVER = Path(__file__).with_name("uneven_eval.py")
#: the variants of ``tests/uneven_eval.py``: the engine's path (rows on gathered parameters) and
#: rows scored on the sharded parameters (padded), by generation and by rank classification
UNEVEN_VARIANTS = ["gathered", "sharded", "sharded-rank"]


@pytest.fixture(scope="module")
def uneven_eval(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """9 evaluation examples per task at batch 4 in 2 FSDP processes (5 and 4: 2 batches and 1)
    beside one unsharded process; each launch under a timeout, so a hang fails the test."""
    out = tmp_path_factory.mktemp("uneven-eval")
    single, double = out / "single", out / "double"
    single.mkdir()
    double.mkdir()
    one = subprocess.Popen(
        [sys.executable, str(UNEVEN_DRIVER), "none", str(single), "gathered", "sharded-rank"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    two = subprocess.Popen(
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(UNEVEN_DRIVER), "fsdp", str(double),
         *UNEVEN_VARIANTS],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    code_two, err_two = _finish(two, 240)
    code_one, err_one = _finish(one, 240)
    assert code_two == 0, err_two[-3000:]
    assert code_one == 0, err_one[-3000:]
    return single, double


@needs_torchrun
@pytest.mark.parametrize("variant", UNEVEN_VARIANTS)
def test_fsdp_evaluation_of_uneven_shares_finishes_with_the_single_process_scores(
    uneven_eval: tuple[Path, Path], variant: str
) -> None:
    """Hung before at the first row: generation on an FSDP module synchronised every token with
    a process that had no batch left. Matrix and every prediction are one process's."""
    single, double = uneven_eval
    reference = "sharded-rank" if variant.endswith("-rank") else "gathered"
    one = json.loads((single / f"{reference}.json").read_text())
    two = json.loads((double / f"{variant}.json").read_text())
    assert two["rows"] == one["rows"], f"{variant}: matrices differ"
    assert len(two["rows"]) == 3 and any(score for row in two["rows"] for score in row)  # learned something
    assert two["predictions"] == one["predictions"], f"{variant}: predictions differ"


# -- a sharded run crashed in its second task, resumed ---------------------------------------------

RESUME_DRIVER = Path(__file__).with_name("sharded_resume.py")
#: full fine-tuning (every weight in the checkpoint; KIF's importance and the replay buffer in the
#: method states) and O-LoRA (adapters made at set-up, then loaded from the checkpoint)
RESUME_SCENARIOS = ["kif-m", "olora"]


def _torchrun(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(RESUME_DRIVER), *args],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _finish(process: subprocess.Popen, timeout: int) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err


@pytest.fixture(scope="module")
def fsdp_resumed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The uninterrupted runs, beside each scenario crashed (one launch each) and resumed."""
    out = tmp_path_factory.mktemp("fsdp-resume")
    straight, crashed = out / "straight", out / "crashed"
    straight.mkdir()
    crashed.mkdir()
    reference = _torchrun(["fsdp", str(straight), "straight", *RESUME_SCENARIOS])
    try:
        for scenario in RESUME_SCENARIOS:
            code, err = _finish(_torchrun(["fsdp", str(crashed), "crash", scenario]), 300)
            state = json.loads((crashed / "runs" / scenario / "checkpoint" / "state.json").read_text())
            assert code != 0 and state["completed_phases"] == 1, f"{scenario}: not killed in its second task: {err[-2000:]}"
        code, err = _finish(_torchrun(["fsdp", str(crashed), "resume", *RESUME_SCENARIOS]), 600)
        assert code == 0, err[-3000:]
    finally:
        code, err = _finish(reference, 600)
    assert code == 0, err[-3000:]
    return straight, crashed


@needs_torchrun
@pytest.mark.slow
@pytest.mark.parametrize("scenario", RESUME_SCENARIOS)
def test_a_crashed_fsdp_run_resumes_to_the_uninterrupted_result(fsdp_resumed: tuple[Path, Path], scenario: str) -> None:
    from safetensors.torch import load_file

    straight, crashed = fsdp_resumed
    run_dir = crashed / "runs" / scenario
    assert "resuming" in (run_dir / "run.log").read_text()
    assert json.loads((crashed / f"{scenario}.json").read_text()) == json.loads((straight / f"{scenario}.json").read_text())
    resumed, uninterrupted = load_file(str(crashed / f"{scenario}.safetensors")), load_file(str(straight / f"{scenario}.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    diff = max(float((resumed[k].float() - uninterrupted[k].float()).abs().max()) for k in resumed)
    assert diff <= SHARDED_TOLERANCE, f"{scenario}: resumed weights differ by {diff:.3g}"


def _deepspeed_available() -> bool:
    try:
        import deepspeed  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means: not here
        return False
    return True


needs_deepspeed = pytest.mark.skipif(not _deepspeed_available(), reason="deepspeed not installed (pip install -e .[deepspeed])")


@pytest.fixture(scope="module")
def zero_launches(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path]]:
    """The 2-process and 1-process runs of every claiming scenario, one launch per ZeRO stage
    (made on first use). The first DeepSpeed launch on a machine compiles its CPU communication
    op (minutes)."""
    launched: dict[str, tuple[Path, Path]] = {}

    def launch(mode: str) -> tuple[Path, Path]:
        if mode not in launched:
            launched[mode] = _launch(tmp_path_factory.mktemp(f"{mode}-all"), mode, _claims(mode), timeout=2400)
        return launched[mode]

    return launch


@needs_torchrun
@needs_deepspeed
@pytest.mark.slow
@pytest.mark.parametrize("mode, scenario", [(m, s) for m in ("zero2", "zero3") for s in _claims(m)])
def test_every_zero_method_matches_one_process(
    zero_launches: Callable[[str], tuple[Path, Path]], mode: str, scenario: str
) -> None:
    """Under ZeRO-3 DeepSpeed partitions parameters out of the module: the model must be built
    whole (not inside ``deepspeed.zero.Init``, which initialises it differently) and evaluation
    and statistics passes run on gathered parameters (the one-example buffers: shares of
    different sizes)."""
    _compare(*zero_launches(mode), scenario, mode)


# -- the GPU script, on the CPU ----------------------------------------------------------------


@needs_torchrun
def test_gpu_scaleout_cpu_smoke(tmp_path: Path) -> None:
    """benchmarks/gpu_scaleout.py --cpu-smoke: two FSDP cells train (one with O-LoRA's per-task adapters)."""

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_scaleout.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--cpu-smoke"],
        env=ENV, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads((tmp_path / "gpu_scaleout.json").read_text())
    cells = {(c["mode"], c["method"]): c for c in payload["cells"]}
    assert cells[("fsdp", "seqft")]["status"] == "ok", cells[("fsdp", "seqft")]
    assert len(cells[("fsdp", "seqft")]["rows"]) == 3  # before training, after each of 2 tasks
    olora = cells[("fsdp", "olora")]
    assert olora["status"] == "ok", olora
    assert len(olora["rows"]) == 3
