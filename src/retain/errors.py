"""Errors that are the user's to fix.

Everything raised as a :class:`RetainError` is printed by the CLI as one message (no traceback)
with a non-zero exit. Internal bugs stay ordinary exceptions so that they keep their traceback.
"""

from __future__ import annotations


class RetainError(Exception):
    """A user mistake: bad config, bad data file, impossible method combination."""


class ConfigError(RetainError):
    """The run configuration is invalid; the message names the key."""


class DataError(RetainError):
    """A data file or record is unusable; the message names the file and record."""


class MethodError(RetainError):
    """Methods were combined or configured in a way that cannot work."""
