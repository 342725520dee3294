"""A two-process ``retain run`` with its ranks stuck, for the signal tests (tests/test_signals.py).

Launched by torchrun as ``python -m tests.stuck_rank FOLDER CONFIG MODE``: the real command line
(``retain.cli.main()``) checks the config and starts, but the run itself is replaced by a
deliberate hang, after each rank has written its pid to ``FOLDER/rank<N>.pid``:

- ``python``: rank 1 loops in Python, rank 0 waits in an all-reduce for it;
- ``c``: both ranks are blocked in C with the stop signals masked in their main thread, as a
  process stuck inside a collective is: no Python signal handler can run there.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def _stuck_run(folder: Path, mode: str) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    if mode == "c":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    (folder / f"rank{rank}.pid").write_text(str(os.getpid()))
    if mode == "c":
        time.sleep(600)  # one C call; the masked signals go to the watchdog's thread
    elif rank == 1:
        while True:
            time.sleep(0.2)
    dist.all_reduce(torch.ones(4))  # rank 1 never arrives


def main() -> int:
    folder, config, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    from retain.engine import runner

    runner.ContinualRunner.run = lambda self: _stuck_run(folder, mode)  # type: ignore[method-assign]
    sys.argv = ["retain", "run", config, "--quiet"]
    from retain.cli import main as retain_main

    return retain_main()


if __name__ == "__main__":
    sys.exit(main())
