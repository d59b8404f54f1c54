"""Background threads of the debugger yield the cores to training."""

from __future__ import annotations

import contextlib
import os
import threading

BACKGROUND_NICENESS = 10


def lower_thread_priority(niceness: int = BACKGROUND_NICENESS) -> None:
    """Make the calling thread nicer than the training threads (Linux schedules threads by their own id), so
    writing tensors and evaluating rules take idle CPU first instead of slowing steps; a no-op elsewhere."""
    with contextlib.suppress(AttributeError, OSError, PermissionError):
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + niceness))
