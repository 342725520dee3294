"""How long a config typo takes to be reported: CPU and wall time of ``retain run`` on a bad key.

A mistake should be reported in well under a second, so the validation path (config, method
names, data files, run folder) must not import torch or transformers. This launches the real
console entry point (``python -m retain run typo.yaml``, the same code path as ``retain run``)
several times and records each child's user + system CPU time and wall time, and whether its
stderr was the one expected line.

    python benchmarks/config_error_time.py [--repeats 7] [--name config_error_time]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import write_result


def _one_launch(config: Path) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "retain", "run", str(config)], capture_output=True, text=True, timeout=120,
        cwd=config.parent,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = done.stderr.strip().splitlines()
    return {
        "cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "exit": done.returncode,
        "one_line": len(lines) == 1 and lines[0].startswith("error: train.lrr: unknown key"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--name", default="config_error_time", help="result file name under benchmarks/results/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "typo.yaml"
        config.write_text("train:\n  lrr: 1\n")
        _one_launch(config)  # warm the file cache: every later launch reads the same files
        launches = [_one_launch(config) for _ in range(args.repeats)]
    cpu = [launch["cpu_s"] for launch in launches]
    wall = [launch["wall_s"] for launch in launches]
    summary = {
        "command": "python -m retain run typo.yaml  (typo.yaml: 'train: {lrr: 1}')",
        "repeats": args.repeats,
        "cpu_s_median": round(statistics.median(cpu), 3),
        "wall_s_median": round(statistics.median(wall), 3),
        "all_one_line_exit_2": all(launch["one_line"] and launch["exit"] == 2 for launch in launches),
        "launches": launches,
    }
    path = write_result(args.name, summary)
    print(f"CPU {summary['cpu_s_median']} s, wall {summary['wall_s_median']} s (median of {args.repeats}); "
          f"one line, exit 2 every time: {summary['all_one_line_exit_2']} -> {path}")


if __name__ == "__main__":
    main()
