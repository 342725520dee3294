"""Ctrl-C and SIGTERM end the process within seconds, even one stuck in a collective.

The CLI turns SIGTERM into an exception, so an interrupted run unwinds and cleans up like Ctrl-C.
But Python runs a signal handler only between bytecodes: a process blocked inside a C call (a
data-parallel process waiting in an all-reduce for a peer that will never arrive) never sees it,
and ignores ``timeout``'s TERM or a scheduler's cancel until its collective times out (30 minutes).
So the CLI also arms this watchdog: the interpreter's C-level handler writes each signal to a pipe
(``signal.set_wakeup_fd``), which a thread reads even while the main thread is blocked; if the
process is still alive ``grace`` seconds after a stop signal, the thread ends it with
``os._exit``. A process that handles the signal in time never notices the watchdog. (A second
signal does not shorten the wait: under a launcher one Ctrl-C reaches a worker twice, from the
terminal and forwarded by the launcher, and the unwinding it starts must be left to finish.)

A launched worker (torchrun, ``accelerate launch``) also asks the kernel for SIGTERM when its
launcher dies (``PR_SET_PDEATHSIG``), so killing the launcher, even with ``kill -9``, does not
leave its workers running as orphans.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Optional

#: seconds between a stop signal and the forced exit: enough for the usual unwinding (closing the
#: trackers, removing a folder that never got a checkpoint), short enough to be "at once"; the
#: environment variable RETAIN_STOP_GRACE (seconds) changes it
GRACE_SECONDS = 10.0
GRACE_VARIABLE = "RETAIN_STOP_GRACE"
#: the exit status of a process ended by the watchdog (128 + SIGTERM, as a shell reports it)
FORCED_EXIT_STATUS = 143
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1


def launched_by_a_launcher() -> bool:
    """This process is one worker of a distributed launch (torchrun / ``accelerate launch``)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def die_with_parent() -> bool:
    """Ask Linux to send SIGTERM to this process when its parent (the launcher) dies.

    Returns whether that was arranged.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    return True


class StopWatchdog:
    """The thread that ends the process ``grace`` seconds after a stop signal (module docstring)."""

    def __init__(self, grace: float = GRACE_SECONDS) -> None:
        self.grace = grace
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous_fd: Optional[int] = None
        self._thread = threading.Thread(target=self._watch, name="retain-stop-watchdog", daemon=True)

    def arm(self) -> "StopWatchdog":
        """Start watching; only from the main thread (a signal API rule)."""
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._thread.start()
        return self

    def disarm(self) -> None:
        """Stop forwarding signals to the pipe (the thread then waits forever, harmlessly)."""
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._previous_fd = None

    def _wait_for_a_stop_signal(self) -> None:
        stops = {int(s) for s in _STOP_SIGNALS}
        while not stops.intersection(os.read(self._read_fd, 64)):
            pass

    def _watch(self) -> None:
        self._wait_for_a_stop_signal()
        time.sleep(self.grace)
        try:
            sys.stderr.write(
                f"\nretain (pid {os.getpid()}): still running {self.grace:g} s after a stop signal "
                "(stuck waiting for another process?); exiting now\n"
            )
            sys.stderr.flush()
        finally:
            os._exit(FORCED_EXIT_STATUS)


def grace_seconds() -> float:
    """The grace period: RETAIN_STOP_GRACE when it is a positive number, else the default."""
    try:
        value = float(os.environ.get(GRACE_VARIABLE, GRACE_SECONDS))
    except ValueError:
        return GRACE_SECONDS
    return value if value > 0 else GRACE_SECONDS


def arm_stop_watchdog(grace: Optional[float] = None) -> Optional[StopWatchdog]:
    """For a process's own command line: the watchdog armed and, under a launcher, the parent's
    death forwarded. None where signals cannot be set (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if launched_by_a_launcher():
        die_with_parent()
    return StopWatchdog(grace_seconds() if grace is None else grace).arm()


__all__ = ["FORCED_EXIT_STATUS", "GRACE_SECONDS", "GRACE_VARIABLE", "grace_seconds", "StopWatchdog", "arm_stop_watchdog", "die_with_parent"]
