"""Opening a data file the way its messages need: say what a path really is, never block on it.

``path.is_file()`` is False for a folder, a named pipe and a missing file alike, so "file not
found" used to be the message for all three. Here a path that is not a regular file is named by
its kind, and a file is opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open handle:
a named pipe (FIFO) put where a file was expected can never hang a run waiting for a writer,
even if it replaced the file after the check.
"""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path
from typing import Optional, Union

from retain.errors import DataError

PathLike = Union[str, "os.PathLike[str]"]

#: Bytes decoded at a time when looking for the first byte that is not UTF-8.
_CHUNK = 1 << 20


def _kind_of_mode(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a folder"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    if stat.S_ISCHR(mode):
        return "is a character device"
    if stat.S_ISBLK(mode):
        return "is a block device"
    return "is not a regular file"


def file_problem(path: PathLike, what: str = "file") -> Optional[str]:
    """Why ``path`` cannot be read as a ``what`` (a regular file), or None when it can.

    'file not found', 'is a folder, not a file', 'is a named pipe (FIFO), not a regular file',
    'is a symbolic link to ..., which does not exist'. Never opens the path.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"{what} not found (a symbolic link to {os.readlink(path)}, which does not exist)"
        return f"{what} not found"
    except NotADirectoryError:
        return f"{what} not found (a part of the path is a file, not a folder)"
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if stat.S_ISREG(mode):
        return None
    kind = _kind_of_mode(mode)
    return f"{kind}, not a {what}" if stat.S_ISDIR(mode) else f"{kind}, not a regular file"


def check_regular_file(path: PathLike, what: str = "file") -> Path:
    """``path`` as a Path; a DataError naming it and its real kind when it is no regular file."""
    problem = file_problem(path, what)
    if problem is not None:
        raise DataError(f"{path}: {problem}")
    return Path(path)


def check_folder(path: PathLike, what: str = "task folder") -> Path:
    """``path`` as a Path; a DataError naming it when it is missing or is a file, pipe, ... instead."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{path}: {what} not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    if not stat.S_ISDIR(mode):
        kind = "is a file" if stat.S_ISREG(mode) else _kind_of_mode(mode)
        raise DataError(f"{path}: {kind}, not a {what}")
    return path


def exists(path: PathLike) -> bool:
    """Whether anything is at ``path`` (a broken symbolic link counts: it is named, not skipped)."""
    return os.path.lexists(path)


def read_bytes(path: PathLike, what: str = "file") -> bytes:
    """The bytes of a regular file, opened without blocking (a FIFO is refused, never waited on)."""
    check_regular_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):  # replaced between the check and the open
            raise DataError(f"{path}: {_kind_of_mode(mode)}, not a regular file")
        return handle.read()


def utf8_error(path: PathLike, data: bytes, err: UnicodeDecodeError) -> DataError:
    """'<path>: not UTF-8 text (byte 17, line 2: b'\\xe9'); ...' for a failed decode of ``data``."""
    line = data.count(b"\n", 0, err.start) + 1
    shown = data[err.start:err.end]
    return DataError(
        f"{path}: not UTF-8 text (byte {err.start}, line {line}: {shown!r}); "
        "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


def read_text(path: PathLike, what: str = "file") -> str:
    """A regular file's text as UTF-8; a DataError naming the first bad byte and its line."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise utf8_error(path, data, err) from None


def check_utf8(path: PathLike) -> None:
    """Decode a (possibly large) file in chunks; a DataError at its first byte that is not UTF-8.

    For files another library reads (the ``datasets`` builders), whose own message for this is a
    generic "An error occurred while generating the dataset".
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with open(check_regular_file(path), "rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                # the decoder may hold up to 3 bytes of an unfinished character from the last chunk
                held = len(err.object) - len(chunk)
                start = offset + err.start - held
                line += chunk.count(b"\n", 0, max(err.start - held, 0))
                shown = err.object[err.start:err.end]
                raise DataError(
                    f"{path}: not UTF-8 text (byte {start}, line {line}: {shown!r}); "
                    "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None
            if not chunk:
                return
            offset += len(chunk)
            line += chunk.count(b"\n")


__all__ = ["check_folder", "check_regular_file", "check_utf8", "exists", "file_problem", "read_bytes", "read_text", "utf8_error"]
