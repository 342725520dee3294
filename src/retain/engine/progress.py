"""Progress bars and timed log lines for every pass of a run.

Training, each evaluation row and the methods' passes over data (EWC's Fisher, LwF's and DER's
teacher outputs, SEEKR's attention and head-importance passes, KIF's replay steps) each get a
tqdm bar and, when done, a log line with their time. Bars are drawn on the local main process
only, never when stderr is not a terminal (tqdm's own test), and not with ``output.progress:
false``, ``RETAIN_PROGRESS=0`` or ``--quiet``: logs and CI output stay free of bar redraws, while
the timed log lines are always written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, Optional, TypeVar

from tqdm.auto import tqdm

#: set to 0 to turn every bar off (e.g. in CI), whatever the config says
ENV_SWITCH = "RETAIN_PROGRESS"

T = TypeVar("T")


def bars_allowed(config: Any, quiet: bool, is_main: bool) -> bool:
    """Whether this process may draw bars (tqdm still leaves them out when not on a terminal)."""
    return (
        not quiet and is_main and bool(config.output.progress)
        and os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")
    )


def progress_bar(allowed: bool, total: Optional[int], desc: str, leave: bool = False) -> tqdm:
    """A tqdm bar; ``disable=None`` lets tqdm turn it off when stderr is not a terminal."""
    return tqdm(total=total, desc=desc, disable=None if allowed else True, leave=leave, dynamic_ncols=True)


def timed_pass(ctx: Any, items: Iterable[T], total: int, name: str) -> Iterator[T]:
    """Yield ``items`` under a bar named ``name``; log the pass's time when it ends."""
    bar = progress_bar(getattr(ctx, "show_progress", False), total, name)
    started = time.perf_counter()
    done = 0
    try:
        for item in items:
            yield item
            done += 1
            bar.update(1)
    finally:
        bar.close()
        ctx.logger.info("%s: %d/%d batches, %.1fs", name, done, total, time.perf_counter() - started)
