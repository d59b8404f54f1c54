"""When this process started: a command's time counts from it (interpreter start and imports included)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def process_start_time() -> float | None:
    """This process's start in epoch seconds; None when the system cannot tell."""
    try:  # Linux: start tick (field 22 of /proc/self/stat) on the boot clock; psutil's rounds to 1 s
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - no start time: the caller counts from now
        return None
