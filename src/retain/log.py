"""Loggers for runs and sweeps (no torch import: sweeps log before any model is built)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional


def make_logger(
    name: str, log_file: Optional[Path], quiet: bool, file_format: str = "%(asctime)s %(levelname)s %(message)s"
) -> logging.Logger:
    """A logger writing to ``log_file`` (None: no file) and, unless quiet, to stderr; never
    propagating, so runs and sweeps in one process keep their lines apart."""
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if log_file is not None:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(logging.Formatter(file_format))
        logger.addHandler(file_handler)
    if not quiet:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)
    return logger
