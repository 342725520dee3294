"""Errors that are the user's to fix.

Everything raised as a :class:`RetainError` is printed by the CLI as one message (no traceback)
with a non-zero exit. Internal bugs stay ordinary exceptions so that they keep their traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path


class RetainError(Exception):
    """A user mistake: bad config, bad data file, impossible method combination."""


class ConfigError(RetainError):
    """The run configuration is invalid; the message names the key."""


class DataError(RetainError):
    """A data file or record is unusable; the message names the file and record."""


class MethodError(RetainError):
    """Methods were combined or configured in a way that cannot work."""


@contextlib.contextmanager
def os_errors_named(where: Path) -> Iterator[None]:
    """I/O failures inside (a full disk ...) surface as an OSError naming ``where``.

    safetensors writes from Rust and reports "... (os error 28)" in a generic exception, which
    the command line could not tell from a bug; this turns it into the OSError it reports as one line.
    """
    try:
        yield
    except OSError:
        raise
    except Exception as err:
        found = re.search(r"os error (\d+)", str(err))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(where)) from None
