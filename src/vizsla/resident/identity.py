"""Which commands a resident worker may run, and which worker matches this process.

A worker must behave exactly as a fresh process would. Its imports ran with its environment, interpreter,
sys.path and code, so a worker is only used by a command whose own ones are the same: the socket's name is a
digest of them. Kept free of heavy imports: the client runs this before anything else."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tempfile
from pathlib import Path

SWITCH = "VIZSLA_RESIDENT"  # 0/off/false/no: every command runs in a process of its own
IDLE = "VIZSLA_RESIDENT_IDLE_S"  # seconds without a command after which the worker exits
RUNTIME_DIR = "VIZSLA_RUNTIME_DIR"  # where the sockets and the workers' logs live
DEFAULT_IDLE_S = 600.0

COMMANDS = {"train"}  # long imports, short work: what a warm head-only job is
# Set by torchrun or by `vizsla train --nproc-per-node` for the processes of a distributed job: those are
# started by a launcher that watches them, and stay plain processes.
DISTRIBUTED_VARIABLES = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID", "VIZSLA_LAUNCHER_PID")
# Variables that differ between shells without changing what an import does.
VOLATILE_VARIABLES = {"PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES", "PYTEST_CURRENT_TEST"}


def switched_off() -> bool:
    return os.environ.get(SWITCH, "1").strip().lower() in {"0", "off", "false", "no"}


def eligible(argv: list[str]) -> bool:
    """Whether the command ARGV (without the program name) may run in a resident worker."""
    if not argv or argv[0] not in COMMANDS or switched_off():
        return False
    if any(arg in {"--help", "-h"} or arg.startswith("--nproc-per-node") for arg in argv[1:]):
        return False
    if any(name in os.environ for name in DISTRIBUTED_VARIABLES):
        return False
    return hasattr(os, "fork") and hasattr(os, "getuid") and sys.platform.startswith("linux")


def idle_seconds() -> float:
    try:
        return max(1.0, float(os.environ.get(IDLE, DEFAULT_IDLE_S)))
    except ValueError:
        return DEFAULT_IDLE_S


def runtime_dir() -> Path | None:
    """This user's private folder for the sockets (mode 0700), or None when it cannot be made private."""
    base = os.environ.get(RUNTIME_DIR)
    if base:
        folder = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "vizsla"
    else:
        folder = Path(tempfile.gettempdir()) / f"vizsla-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    # Another user's folder, or one others can write to, could hand our commands to their process.
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        return None
    return folder


def identity() -> str:
    """Digest of what a worker's imports depend on: interpreter, sys.path (and when its package folders
    last changed: a package installed or removed), environment, and vizsla's own source files; and what a
    process inherits from the command that starts it (CPU affinity: torch sizes its thread pool from it,
    niceness, umask), so that a job in a worker's child runs with the command's own."""
    digest = hashlib.sha256()
    env = {k: v for k, v in os.environ.items() if k not in VOLATILE_VARIABLES}
    digest.update(json.dumps([sys.executable, sys.version, sys.path, sorted(env.items())]).encode())
    # -O, -W, -X ...: the worker is started with the same (vizsla.resident.client)
    interpreter = [list(sys.flags), sys.warnoptions, sorted(sys._xoptions.items())]
    digest.update(json.dumps(interpreter, default=str).encode())
    digest.update(json.dumps(_inherited()).encode())
    for entry in sys.path:
        if "site-packages" not in entry and "dist-packages" not in entry:
            continue  # e.g. the working folder of `python -m vizsla`, which every job's output changes
        try:
            digest.update(f"{entry}:{os.stat(entry or '.').st_mtime_ns}".encode())
        except OSError:
            continue
    package = Path(__file__).resolve().parents[1]
    for root, _, files in sorted(os.walk(package)):
        for name in sorted(files):
            if name.endswith((".py", ".j2", ".html")):
                info = os.stat(os.path.join(root, name))
                digest.update(f"{root}/{name}:{info.st_mtime_ns}:{info.st_size}".encode())
    return digest.hexdigest()[:24]


def _inherited() -> list[object]:
    umask = os.umask(0o022)
    os.umask(umask)
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return [affinity, os.getpriority(os.PRIO_PROCESS, 0), umask]


def socket_path() -> Path | None:
    """The socket of the worker that matches this process, or None when no private folder exists."""
    folder = runtime_dir()
    return folder / f"{identity()}.sock" if folder is not None else None
