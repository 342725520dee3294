"""retain: continual learning of language models on one engine."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def run(config: Any = None, overrides: list[str] | None = None, resume: bool = False) -> Any:
    """Run an experiment from a YAML path, a dict or a RunConfig; returns the run result."""
    from retain.api import run as _run

    return _run(config, overrides=overrides, resume=resume)


__all__ = ["run", "__version__"]
