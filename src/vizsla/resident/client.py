"""The command's side: hand the command to the matching resident worker, started first when none runs.

Runs before any heavy import. The worker's child answers with its pid (signals the user sends to this process
are passed on to it: Ctrl-C stops the job exactly as it would stop a local one) and then with the exit code.
Nothing is ever run twice: the child starts the job only after telling its pid, and a child whose client went
away (killed, closed terminal) kills itself, like a process of the command would have died with it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vizsla.resident import identity, protocol

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# The worker may still be importing (it started seconds ago): waiting costs no more than importing here.
ANSWER_TIMEOUT_S = 120.0
LISTEN_TIMEOUT_S = 5.0  # from starting a worker to its socket listening (before its imports)


def run_in_worker(argv: list[str]) -> int | None:
    """Run the command ARGV in the matching worker, starting it when none runs (the first command then
    waits for its imports, which it would have done itself), and return the exit code; None when no worker
    runs it (none can be started or reached, or this process has no stdin/stdout/stderr to hand over)."""
    path = identity.socket_path()
    if path is None or not _has_standard_streams() or path.with_suffix(".refused").exists():
        return None  # a worker of this identity found it cannot serve (server.py): no second try
    conn = _connect(path) if path.exists() else None
    if conn is None:
        conn = _start_worker(path)
    if conn is None:
        return None
    with conn:
        try:
            conn.settimeout(ANSWER_TIMEOUT_S)
            protocol.send(conn, _request(argv), fds=[0, 1, 2])
            answer, _ = protocol.receive(conn)
            pid = int(answer["pid"])
        except (OSError, protocol.ProtocolError, KeyError, TypeError, ValueError):
            return None  # the child never started the job (it does only after telling its pid)
        conn.settimeout(None)
        previous = {sig: signal.signal(sig, _forward_to(pid)) for sig in FORWARDED_SIGNALS}
        try:
            return _exit_code(conn, path)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _start_worker(path: Path) -> socket.socket | None:
    """Start the worker of PATH in the background and connect to it (it listens before its imports)."""
    log = path.with_suffix(".log")
    try:
        with open(log, "ab") as output:
            worker = subprocess.Popen(
                [sys.executable, *_interpreter_flags(), "-m", "vizsla.resident.server", str(path),
                 json.dumps(sys.path)],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, cwd="/",
                start_new_session=True, close_fds=True,
            )
    except OSError:
        return None
    deadline = time.monotonic() + LISTEN_TIMEOUT_S
    while time.monotonic() < deadline and worker.poll() in (None, 0):
        # No stale-socket cleanup here: the new worker may be between its bind and its listen.
        conn = _connect(path, remove_stale=False) if path.exists() else None
        if conn is not None:
            minutes = identity.idle_seconds() / 60
            print(
                f"vizsla: started a resident worker (pid {worker.pid}) that keeps torch, timm and MLflow "
                f"loaded: this command runs in it, and the next `vizsla train` skips their ~5 s of imports. "
                f"It exits after {minutes:g} min without work ({identity.SWITCH}=0 turns it off; log: {log})",
                file=sys.stderr,
            )
            return conn
        time.sleep(0.02)
    return None


def _interpreter_flags() -> list[str]:
    """This interpreter's command-line flags (-O, -W ..., -X ...), as multiprocessing passes them on."""
    try:
        return list(subprocess._args_from_interpreter_flags())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a Python without it: the identity still tells the flags apart
        return []


def _request(argv: list[str]) -> dict[str, Any]:
    from vizsla.infra.process import process_start_time

    return {
        "argv0": sys.argv[0],
        "argv": argv,
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "started": process_start_time() or time.time(),  # the job's time counts from this process's start
    }


def _connect(path: Path, *, remove_stale: bool = True) -> socket.socket | None:
    """A connection to the worker at PATH; None when none listens there (REMOVE_STALE: then its socket
    file, left behind by a worker that died, is removed)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(5.0)
        conn.connect(str(path))
        return conn
    except ConnectionRefusedError:  # a worker that died: its socket is left behind
        conn.close()
        if remove_stale:
            with contextlib.suppress(OSError):
                path.unlink()
        return None
    except OSError:
        conn.close()
        return None


def _has_standard_streams() -> bool:
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            return False
    return True


def _forward_to(pid: int) -> Any:
    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    return forward


def _exit_code(conn: socket.socket, path: Path) -> int:
    while True:
        try:
            answer, _ = protocol.receive(conn)
        except (OSError, protocol.ProtocolError):
            print(
                "vizsla: the resident worker's process of this command ended without an exit status "
                f"(killed?); the worker's log: {path.with_suffix('.log')}",
                file=sys.stderr,
            )
            return 1
        if "exit" in answer:
            return int(answer["exit"])
