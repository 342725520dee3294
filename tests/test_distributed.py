"""Data parallelism through Accelerate: two CPU processes (gloo) launched with torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_config


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="torchrun not installed")
def test_two_processes_shard_batches_and_write_once(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, stream={"demo_train_size": 32, "demo_eval_size": 8}, train={"batch_size": 4})
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "retain", "run", str(path), "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run folder:") == 1, "results printed by more than one process"
    run_dir = tmp_path / "runs" / "run"
    log = (run_dir / "run.log").read_text()
    assert "4 micro-batches" in log  # 32 examples / batch 4 = 8 batches, 4 on each process
    assert log.count("phase 1/2") == 1
    matrix = json.loads((run_dir / "matrix.json").read_text())
    assert len(matrix["rows"]) == 3
