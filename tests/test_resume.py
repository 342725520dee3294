"""Resume after a real ``kill -9`` of a child process ends with the same matrix, wherever it hit.

The child kills itself at a chosen moment (mid-training, half-way through writing a checkpoint,
in the middle of the checkpoint swap, just before a matrix file is renamed in), so each variant
hits its moment exactly instead of racing a timer. The reference run and the resumes run in this
process (torch is imported once); only the victims are separate processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from retain.cli import main
from retain.engine import checkpoint as ckpt
from tests.conftest import tiny_config


def _config(tmp_path: Path, name: str, small: bool = False) -> Path:
    """Three tasks; ``small``: just enough to exercise every checkpoint write (the kill-point
    variants need no time to aim at), else long enough to kill mid-training."""
    config = tiny_config(
        tmp_path, name=name,
        stream={"demo_tasks": 3, "demo_train_size": 16 if small else 48, "demo_eval_size": 4 if small else 12},
        train={"epochs": 1 if small else 2, "reset_optimizer_per_task": False, "scheduler": "linear"},
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _retain(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "retain", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


# The child: patch one step of the checkpoint / atomic-write path to SIGKILL the process at its
# NTH call, then run the CLI. argv: POINT NTH retain-arguments...
_KILLER = r"""
import os, signal, sys
import retain.engine.checkpoint as checkpoint

point, nth = sys.argv[1], int(sys.argv[2])
calls = [0]

def due():
    calls[0] += 1
    return calls[0] == nth

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_rename, real_replace, real_save_tree = os.rename, os.replace, checkpoint._save_tree

def rename(src, dst):
    real_rename(src, dst)
    if point == "swap-aside" and ".checkpoint.old-" in str(dst) and due():
        die()  # the old checkpoint is aside, the new one not yet in: no checkpoint/ at all
    if point == "swap-in" and ".checkpoint.tmp-" in str(src) and due():
        die()  # the new checkpoint is in, the old copy not yet deleted

def replace(src, dst):
    if point == "matrix" and str(dst).endswith("matrix.json") and due():
        die()  # the new matrix is written to its temp file, not yet renamed in
    real_replace(src, dst)

def save_tree(folder, stem, obj, files):
    if point == "mid-write" and stem == "methods" and due():
        die()  # model.safetensors written into the temp folder, the rest not
    real_save_tree(folder, stem, obj, files)

os.rename, os.replace, checkpoint._save_tree = rename, replace, save_tree
from retain.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _reference(tmp: Path, small: bool) -> dict:
    assert main(["run", str(_config(tmp, "reference", small)), "--quiet"]) == 0
    return json.loads((tmp / "runs" / "reference" / "matrix.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _reference(tmp_path_factory.mktemp("reference"), small=False)


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _reference(tmp_path_factory.mktemp("small_reference"), small=True)


def _resume_and_compare(victim_dir: Path, reference: dict) -> str:
    assert main(["run", "--resume", str(victim_dir), "--quiet"]) == 0
    got = json.loads((victim_dir / "matrix.json").read_text())
    assert got["rows"] == reference["rows"]
    assert not [p.name for p in victim_dir.iterdir() if p.name.startswith(".checkpoint.")], "temp copies left"
    assert not list(victim_dir.rglob(".*.tmp")), "temp files left"
    return (victim_dir / "run.log").read_text()


def test_kill_during_training_and_resume_gives_the_same_matrix(tmp_path: Path, reference: dict) -> None:
    victim_dir = tmp_path / "runs" / "victim"
    victim = _retain("run", str(_config(tmp_path, "victim")), "--quiet")
    state = victim_dir / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        if state.is_file() and json.loads(state.read_text())["completed_phases"] >= 1:
            break
        if victim.poll() is not None:
            break
        time.sleep(0.02)
    assert victim.poll() is None, "the run finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    completed = json.loads(state.read_text())["completed_phases"]
    assert completed < 3

    log = _resume_and_compare(victim_dir, reference)
    assert "resuming" in log


# Checkpoints are saved after row 0 and after each of the 3 tasks; nth counts the calls of the
# patched step (the first save renames no old checkpoint aside), so every variant dies while saving
# the checkpoint or matrix after task 2, and resume must redo task 3 (or task 2). The two slow ones
# run with `pytest -m slow`.
KILL_POINTS = [
    pytest.param("swap-aside", 2, id="swap-aside"),
    pytest.param("mid-write", 3, id="mid-write", marks=pytest.mark.slow),
    pytest.param("swap-in", 3, id="swap-in", marks=pytest.mark.slow),
    pytest.param("matrix", 3, id="matrix", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("point", "nth"), KILL_POINTS)
def test_kill_at_a_checkpoint_moment_and_resume_gives_the_same_matrix(tmp_path: Path, small_reference: dict, point: str, nth: int) -> None:
    victim_dir = tmp_path / "runs" / "victim"
    victim = subprocess.run(
        [sys.executable, "-c", _KILLER, point, str(nth), "run", str(_config(tmp_path, "victim", small=True)), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert victim.returncode == -signal.SIGKILL, f"the victim was not killed at {point}: {victim.stderr[-2000:]}"
    leftovers = [p.name for p in victim_dir.iterdir() if p.name.startswith(".checkpoint.") or p.name.endswith(".tmp")]
    assert leftovers, f"killing at {point} left nothing to clean up: the test did not hit its moment"
    if point == "swap-aside":
        assert not (victim_dir / "checkpoint").exists()
    log = _resume_and_compare(victim_dir, small_reference)
    if point == "swap-aside":
        assert "recovered the checkpoint after 2 phases" in log
    state = ckpt.verify_checkpoint(victim_dir / "checkpoint")
    assert state["completed_phases"] == 3
