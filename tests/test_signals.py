"""SIGTERM and Ctrl-C end every process of a run within seconds, even one stuck in C (a
collective waiting for a peer), and killing the launcher never leaves its workers running.

The distributed cases launch ``tests/stuck_rank.py`` under torchrun (two CPU processes, gloo):
the real ``retain run`` command line, with the run replaced by a deliberate hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, tiny_config

GRACE = 2  # RETAIN_STOP_GRACE for these tests: seconds before the watchdog ends a stuck process


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], limit: float) -> float:
    """Seconds until every pid has exited; fails after ``limit``."""
    started = time.monotonic()
    while any(_alive(p) for p in pids):
        if time.monotonic() - started > limit:
            pytest.fail(f"still running {limit:.0f} s after the signal: {[p for p in pids if _alive(p)]}")
        time.sleep(0.1)
    return time.monotonic() - started


WATCHED = """
import signal, sys, time
from retain.stop_watchdog import arm_stop_watchdog
signal.signal(signal.SIGTERM, lambda *a: sys.exit(130))
arm_stop_watchdog()
if {masked}:
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM, signal.SIGINT}})
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(("masked", "status", "limit"), [(True, 143, GRACE + 3), (False, 130, 2)], ids=["stuck-in-c", "responsive"])
def test_the_watchdog_ends_only_a_process_that_cannot_unwind(masked: bool, status: int, limit: float) -> None:
    env = {**os.environ, "RETAIN_STOP_GRACE": str(GRACE)}
    child = subprocess.Popen([sys.executable, "-c", WATCHED.format(masked=masked)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        seconds = _wait_gone([child.pid], limit)
        _, err = child.communicate(timeout=5)
    finally:
        child.kill()
    assert child.returncode == status, err
    assert ("still running 2 s after a stop signal" in err) == masked, err
    if masked:
        assert seconds >= GRACE - 0.5


@pytest.fixture
def stuck_launch(tmp_path: Path) -> Iterator[tuple[Path, list[str], dict[str, str]]]:
    """(folder, torchrun command without the mode, environment); kills any leftover afterwards."""
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tmp_path, stream={"benchmark": "demo", "demo_tasks": 2,
                                                                   "demo_train_size": 8, "demo_eval_size": 4})))
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", "-m", "tests.stuck_rank", str(tmp_path), str(config)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "RETAIN_STOP_GRACE": str(GRACE), "OMP_NUM_THREADS": "1"}
    yield tmp_path, command, env
    for pid_file in tmp_path.glob("rank*.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _launch_until_stuck(folder: Path, command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], list[int]]:
    launcher = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    while len(list(folder.glob("rank*.pid"))) < 2 or any(not p.read_text() for p in folder.glob("rank*.pid")):
        if launcher.poll() is not None:
            pytest.fail(f"the launch ended early: {launcher.stderr.read() if launcher.stderr else ''}")
        if time.monotonic() - started > 120:
            launcher.kill()
            pytest.fail("the ranks never got stuck")
        time.sleep(0.2)
    time.sleep(0.5)
    return launcher, [int(p.read_text()) for p in sorted(folder.glob("rank*.pid"))]


def test_sigterm_ends_a_launch_whose_ranks_are_stuck_in_c(stuck_launch: tuple[Path, list[str], dict[str, str]]) -> None:
    """The launcher forwards SIGTERM; ranks that cannot run a handler are ended by the watchdog,
    long before the launcher's own 30 s escalation to SIGKILL."""
    folder, command, env = stuck_launch
    launcher, ranks = _launch_until_stuck(folder, [*command, "c"], env)
    launcher.send_signal(signal.SIGTERM)
    seconds = _wait_gone([launcher.pid, *ranks], GRACE + 12)
    err = launcher.stderr.read() if launcher.stderr else ""
    assert err.count("after a stop signal (stuck waiting for another process?); exiting now") == 2, err
    assert seconds < 20


def test_killing_the_launcher_leaves_no_orphan(stuck_launch: tuple[Path, list[str], dict[str, str]]) -> None:
    folder, command, env = stuck_launch
    launcher, ranks = _launch_until_stuck(folder, [*command, "python"], env)
    launcher.kill()
    launcher.wait(timeout=10)
    _wait_gone(ranks, GRACE + 10)
