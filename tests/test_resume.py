"""Resume after a real ``kill -9`` of a child process ends with the same matrix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import tiny_config


def _config(tmp_path: Path, name: str) -> Path:
    config = tiny_config(
        tmp_path, name=name,
        stream={"demo_tasks": 3, "demo_train_size": 48, "demo_eval_size": 12},
        train={"epochs": 2, "reset_optimizer_per_task": False, "scheduler": "linear"},
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _retain(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "retain", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_and_resume_gives_the_same_matrix(tmp_path: Path) -> None:
    reference = _retain("run", str(_config(tmp_path, "reference")), "--quiet")
    assert reference.wait(timeout=300) == 0, reference.stdout.read().decode()

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

    resumed = _retain("run", "--resume", str(victim_dir), "--quiet")
    output = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, output
    expected = json.loads((tmp_path / "runs" / "reference" / "matrix.json").read_text())
    got = json.loads((victim_dir / "matrix.json").read_text())
    assert got["rows"] == expected["rows"]
    assert "resuming" in (victim_dir / "run.log").read_text()
