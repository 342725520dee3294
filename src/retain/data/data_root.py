"""The folder a named benchmark reads (``stream.data_root``), checked before any model is loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from retain.config import StreamConfig
from retain.errors import ConfigError


def benchmark_folder(config: StreamConfig, hint: str, noun: str, missing: Callable[[Path], list[str]]) -> Path:
    """``stream.data_root`` as a folder; ``missing(root)`` lists what the stream needs there and is
    not there (``noun``: task files or folders), all named in one error so that one fix covers them."""
    if not config.data_root:
        raise ConfigError(f"stream.data_root: required for benchmark {config.benchmark} ({hint})")
    root = Path(config.data_root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"stream.data_root: {root} is not a folder ({hint})")
    absent = missing(root)
    if absent:
        raise ConfigError(f"stream.data_root: {root} has no {noun} {', '.join(absent)} ({hint})")
    return root


__all__ = ["benchmark_folder"]
