"""What keeps a run folder safe to create, replace and share: a marker, a lock, a guarded delete.

- The marker file, written when retain creates a run folder, is the proof that a folder is a
  retain run folder; ``--overwrite`` (and ``retain demo``) empties only such a folder, and only
  one directly inside ``output_dir``, so a bad name or a stray path can never empty anything else.
- An OS lock (``flock``) on a lock file inside the folder is held for the life of a run, so a
  second run or resume of the same folder stops with the holder's pid instead of both writing.
  The OS drops the lock when the process dies, even by ``kill -9``: there is no stale lock.
- ``--overwrite`` never deletes a finished run before the new one has started: the old content is
  first set aside inside the folder (``.replaced/``), put back if the start-up fails, and deleted
  only once it has passed. A start-up killed outright leaves the set-aside run, which the next
  command on the folder puts back before it looks at anything (:func:`recover_replaced`).
- Symbolic links: a run folder is a real folder. A run name that is a link is followed only to a
  marked run folder directly inside ``output_dir`` (so ``--resume`` through it works), never to
  create or replace a run; a dangling link as the run name or as ``output_dir`` is refused.
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
#: where ``--overwrite`` keeps the run it replaces until the new run's start-up has passed
REPLACED_DIR = ".replaced"
#: the same folder while it is being put back (its name says the new run's files are gone)
RESTORING_DIR = ".restoring"
#: the same folder once the new run has started, while it is being deleted
DISCARDING_DIR = ".replaced.discard"
KEPT_WHEN_CLEARED = (MARKER_FILE, LOCK_FILE)
# how long a lock that is busy for a moment (another process of the same launch checking the
# folder, or putting back a set-aside run) is waited for before it counts as held
_LOCK_PATIENCE_S = 1.0


def is_run_folder(path: Path) -> bool:
    return (path / MARKER_FILE).is_file()


def create_run_folder(run_dir: Path) -> None:
    """Create ``run_dir`` (or take an empty one) and mark it as a retain run folder."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RetainError(f"{run_dir}: cannot create the run folder: a part of that path is a file or a dangling link") from None
    write_json_atomic(run_dir / MARKER_FILE, {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid()})


def check_links(run_dir: Path, output_dir: Path, resume: bool) -> None:
    """Refuse a symbolic link where the run folder or ``output_dir`` should be (module docstring).

    ``output_dir`` may be a link to a real folder (a scratch disk); the run folder itself may be a
    link only for ``--resume``, and only to a marked run folder directly inside ``output_dir``.
    """
    if output_dir.is_symlink() and not output_dir.exists():
        raise RetainError(f"output_dir {output_dir}: a symbolic link to {os.readlink(output_dir)}, which does not exist")
    if output_dir.exists() and not output_dir.is_dir():
        raise RetainError(f"output_dir {output_dir}: exists and is not a folder")
    if not run_dir.is_symlink():
        return
    target = os.readlink(run_dir)
    if not run_dir.exists():
        raise RetainError(f"{run_dir}: a symbolic link to {target}, which does not exist; remove the link or choose another name")
    inside = run_dir.resolve().parent == output_dir.resolve() and is_run_folder(run_dir)
    if not resume or not inside:
        allowed = "" if inside else " (only --resume follows a link, to a marked run folder directly inside output_dir)"
        raise RetainError(
            f"{run_dir}: is a symbolic link to {target}; a run is never created or replaced through a link{allowed}"
        )


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


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _remove_all_but(run_dir: Path, kept: tuple[str, ...]) -> None:
    for entry in run_dir.iterdir():
        if entry.name not in kept:
            _remove(entry)


def set_aside_run_folder(run_dir: Path, output_dir: Path) -> None:
    """Move a marked run folder's content into ``.replaced/`` for ``--overwrite`` (lock held).

    The folder is then empty but for its marker and lock, ready for the new run, and the old run
    is one rename away from coming back (:func:`restore_replaced`).
    """
    check_replaceable(run_dir, output_dir)
    aside = run_dir / REPLACED_DIR
    aside.mkdir()
    for entry in run_dir.iterdir():
        if entry.name not in (*KEPT_WHEN_CLEARED, REPLACED_DIR):
            os.rename(entry, aside / entry.name)


def discard_replaced(run_dir: Path) -> None:
    """The new run has started: delete the run it replaces (renamed first, so a crash midway
    leaves a folder that is only ever deleted, never put back half-empty)."""
    aside = run_dir / REPLACED_DIR
    if aside.is_dir():
        os.rename(aside, run_dir / DISCARDING_DIR)
    shutil.rmtree(run_dir / DISCARDING_DIR, ignore_errors=True)


def restore_replaced(run_dir: Path) -> bool:
    """Put back the run an unfinished ``--overwrite`` set aside; True when there was one.

    Idempotent, so that a crash in the middle is finished by the next call: the new run's files
    go first, then the renamed ``.restoring/`` marks that only moving back is left.
    """
    aside, restoring = run_dir / REPLACED_DIR, run_dir / RESTORING_DIR
    shutil.rmtree(run_dir / DISCARDING_DIR, ignore_errors=True)
    if aside.is_dir():
        _remove_all_but(run_dir, (*KEPT_WHEN_CLEARED, REPLACED_DIR))
        os.rename(aside, restoring)
    if not restoring.is_dir():
        return False
    for entry in restoring.iterdir():
        os.rename(entry, run_dir / entry.name)
    restoring.rmdir()
    return True


def recover_replaced(run_dir: Path) -> Optional[str]:
    """Before any other look at ``run_dir``: put back a run that a killed ``--overwrite`` set aside.

    Nothing happens while another process holds the folder's lock (that overwrite may still be
    starting); the check that follows then reports the folder as in use. Returns what was done.
    """
    if not any((run_dir / name).is_dir() for name in (REPLACED_DIR, RESTORING_DIR, DISCARDING_DIR)):
        return None
    try:
        lock = RunLock(run_dir).acquire(patience=_LOCK_PATIENCE_S)
    except RetainError:
        return None
    try:
        if restore_replaced(run_dir):
            return f"{run_dir}: put back the run that an interrupted --overwrite had set aside"
        return None
    finally:
        lock.release()


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock``; the file holds the holder's pid for messages."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._handle: Optional[IO[str]] = None

    def acquire(self, patience: float = 0.0) -> "RunLock":
        """Take the lock, waiting up to ``patience`` seconds for a holder that lets go at once."""
        if fcntl is None:
            return self
        handle = open(self.path, "a+", encoding="utf-8")
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
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
        # a peer process of the same launch may be probing at this very moment: wait it out
        RunLock(run_dir).acquire(patience=_LOCK_PATIENCE_S).release()

