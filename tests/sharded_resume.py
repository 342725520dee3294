"""Crashes sharded runs in their second task and resumes them, in this process group.

Launched by ``tests/test_sharded.py`` with ``torchrun`` in two gloo processes, on the scenarios of
``tests/ddp_equivalence.py`` (its stream and settings, ``train.sharding`` set). Not a test module.

    python tests/sharded_resume.py MODE OUT STAGE SCENARIO...

STAGE ``straight``: each scenario runs to the end. ``crash``: each process kills itself
(SIGKILL, no clean-up) when the second task's training starts, after its preparation, with the
checkpoint of the first task on disk; one scenario per launch, as the launch dies with it.
``resume``: each scenario's crashed run folder under OUT is resumed to the end. ``straight`` and
``resume`` write ``OUT/<scenario>.json`` (the matrix) and ``OUT/<scenario>.safetensors`` (the
final weights the run checkpointed) from the main process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import ddp_equivalence as driver  # noqa: E402

STAGES = ("straight", "crash", "resume")


def _kill_in_second_task() -> None:
    import retain.engine.runner as runner

    train_phase = runner.train_phase

    def dying(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        if ctx.state.phase_index == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return train_phase(ctx, *args, **kwargs)

    runner.train_phase = dying


def main(mode: str, out: Path, stage: str, scenarios: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    import retain
    import retain.engine.runner as runner

    if stage not in STAGES:
        raise SystemExit(f"stage {stage!r} is not one of {', '.join(STAGES)}")
    driver.TRAIN = {**driver.TRAIN, "sharding": mode}
    runner.ContinualRunner._write_report = lambda self, ctx, methods: None  # type: ignore[method-assign]
    if stage == "crash":
        _kill_in_second_task()
    for name in scenarios:
        config = driver._config(out, name, driver.SCENARIOS[name], 1)
        if stage == "resume":
            result = retain.run(Path(config["output_dir"]) / name, resume=True, quiet=True)
        else:
            result = retain.run(config, quiet=True)
        if not result.is_main:
            continue
        (out / f"{name}.json").write_text(json.dumps({"rows": result.matrix.rows}))
        shutil.copy(result.run_dir / "checkpoint" / "model.safetensors", out / f"{name}.safetensors")


if __name__ == "__main__":
    from retain.engine.collective import end_process_group

    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4:])
    end_process_group()
