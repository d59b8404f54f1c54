"""The resident workers of this user: list them, stop them (`vizsla workers`, benchmarks, tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from vizsla.resident import identity


@dataclass(frozen=True)
class Worker:
    pid: int
    socket: Path
    log: Path


def workers(folder: Path | None = None) -> list[Worker]:
    """The live workers whose sockets are in FOLDER (this user's runtime folder by default)."""
    folder = folder if folder is not None else identity.runtime_dir()
    if folder is None or not folder.is_dir():
        return []
    found = []
    for pid_file in sorted(folder.glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if _is_worker(pid):
            found.append(Worker(pid, pid_file.with_suffix(".sock"), pid_file.with_suffix(".log")))
    return found


def stop(folder: Path | None = None, timeout_s: float = 10.0) -> list[int]:
    """SIGTERM every live worker in FOLDER (jobs running in its children go on) and wait for them to
    exit; returns their pids."""
    found = workers(folder)
    for worker in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_is_worker(worker.pid) for worker in found):
        time.sleep(0.05)
    return [worker.pid for worker in found]


def _is_worker(pid: int) -> bool:
    """Whether PID is a live resident worker (not a pid the system gave another process since)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return b"vizsla.resident.server" in command and status != "Z"
