"""What keeps a run folder safe to create, replace and share: a marker, a lock, a guarded delete.

- The marker file, written when retain creates a run folder, is the proof that a folder is a
  retain run folder; ``--overwrite`` (and ``retain demo``) empties only such a folder, and only
  one directly inside ``output_dir``, so a bad name or a stray path can never empty anything else.
- An OS lock (``flock``) on a lock file inside the folder is held for the life of a run, so a
  second run or resume of the same folder stops with the holder's pid instead of both writing.
  The OS drops the lock when the process dies, even by ``kill -9``: there is no stale lock.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import IO, Optional

from retain.errors import RetainError
from retain.reporting.atomic import write_json_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - platforms without flock run unlocked
    fcntl = None  # type: ignore[assignment]

MARKER_FILE = ".retain-run"
LOCK_FILE = ".lock"
KEPT_WHEN_CLEARED = (MARKER_FILE, LOCK_FILE)


def is_run_folder(path: Path) -> bool:
    return (path / MARKER_FILE).is_file()


def create_run_folder(run_dir: Path) -> None:
    """Create ``run_dir`` (or take an empty one) and mark it as a retain run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / MARKER_FILE, {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid()})


def check_replaceable(run_dir: Path, output_dir: Path) -> None:
    """Refuse to empty ``run_dir`` unless it is a marked run folder directly inside ``output_dir``."""
    if run_dir.is_symlink():
        raise RetainError(f"{run_dir}: is a symbolic link; not replacing it (remove it yourself if it should go)")
    if run_dir.resolve().parent != output_dir.resolve():
        raise RetainError(f"{run_dir}: not directly inside output_dir {output_dir}; not replacing it")
    if not is_run_folder(run_dir):
        raise RetainError(
            f"{run_dir}: exists but is not a retain run folder (no {MARKER_FILE} marker); "
            "not replacing it: choose another name or remove the folder yourself"
        )


def clear_run_folder(run_dir: Path, output_dir: Path) -> None:
    """Empty a marked run folder for ``--overwrite``, keeping its marker and lock file."""
    check_replaceable(run_dir, output_dir)
    for entry in run_dir.iterdir():
        if entry.name in KEPT_WHEN_CLEARED:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock``; the file holds the holder's pid for messages."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._handle: Optional[IO[str]] = None

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RetainError(
                f"{self.path.parent}: in use by another retain process (pid {holder}); "
                "wait for it to finish or stop it, then try again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def probe_lock(run_dir: Path) -> None:
    """Fail fast (before slow imports) when another process holds the run folder's lock."""
    if (run_dir / LOCK_FILE).is_file():
        RunLock(run_dir).acquire().release()

