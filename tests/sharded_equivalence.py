"""Runs registered methods under a sharding mode, one after another, in this process group.

Launched by ``tests/test_sharded.py`` with ``torchrun`` in two gloo processes (batch B,
``grad_accum`` 1); the reference is the unsharded single-process run of the same scenarios
(batch B, ``grad_accum`` 2: the same global batch) written by ``tests/ddp_equivalence.py``,
whose scenarios, stream and outputs this driver shares. Not a test module itself.

    python tests/sharded_equivalence.py MODE OUT GRAD_ACCUM SCENARIO...
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import ddp_equivalence as driver  # noqa: E402


def main(mode: str, out: Path, grad_accum: int, scenarios: list[str]) -> None:
    driver.TRAIN = {**driver.TRAIN, "sharding": mode}
    driver.main(out, grad_accum, scenarios)


if __name__ == "__main__":
    from retain.engine.collective import end_process_group

    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
    end_process_group()
