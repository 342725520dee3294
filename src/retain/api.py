"""Python entry point: ``retain.run(config)``."""

from __future__ import annotations

from retain.engine.runner import RunResult, run

__all__ = ["run", "RunResult"]
