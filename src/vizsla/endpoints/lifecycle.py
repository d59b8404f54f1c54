"""Create, update and delete managed endpoints: what `vizsla endpoints` and the notebook API call.

`create_endpoint` registers the endpoint and starts its supervisor detached (its own session, so the
endpoint outlives the shell or notebook that created it, as a SageMaker endpoint does), then waits for
InService or Failed. `update_endpoint` hands the supervisor a pending config (SIGHUP) and waits for the
blue/green switch; `delete_endpoint` stops the supervisor (which drains) and frees the port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vizsla.endpoints import registry
from vizsla.endpoints.spec import EndpointConfig
from vizsla.errors import UserError

WAIT_S = 600.0
DELETE_WAIT_S = 60.0
POLL_S = 0.1
_CHILDREN: list[subprocess.Popen[bytes]] = []  # supervisors started by this process, reaped when they end


def resolve_model(path: str | Path, *, best: bool = False) -> str:
    """The absolute job or model folder a variant serves (a tuning job's best trial with BEST)."""
    from vizsla.serving.server import resolve_target

    target = resolve_target(Path(path), best=best)
    if not target.exists():
        raise UserError(f"model not found: {target} (pass a training job, model or tuning job folder)")
    return str(target.resolve())


def port_free(host: str, port: int) -> bool:
    """Whether HOST:PORT can be bound now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def endpoint_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def create_endpoint(
    name: str,
    config: EndpointConfig,
    *,
    port: int,
    host: str = "127.0.0.1",
    wait: bool = True,
    timeout_s: float = WAIT_S,
    on_status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Register NAME, start its supervisor, (WAIT) return its record once InService; UserError if Failed."""
    registry.check_name(name)
    if not port_free(host, port):
        raise UserError(f"port {port} on {host} is in use: pick another --port")
    folder = registry.write_new_record(
        name,
        {
            "name": name,
            "status": registry.CREATING,
            "failure_reason": None,
            "created": registry.now_iso(),
            "updated": registry.now_iso(),
            "url": endpoint_url(host, port),
            "host": host,
            "port": port,
            "config": config.model_dump(mode="json"),
            "pending_config": None,
            "update_id": 0,
            "restarts": 0,
            "supervisor_pid": None,
            "backends": {},
        },
    )
    env = {**os.environ, registry.HOME_ENV: str(registry.registry_root().parent.resolve())}
    with open(folder.log, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", registry.SUPERVISOR_MODULE, name],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    _CHILDREN.append(process)
    registry.update_record(name, supervisor_pid=process.pid)
    if not wait:
        return registry.read_record(name)
    record = wait_for(name, lambda r: r["status"] != registry.CREATING, timeout_s, on_status)
    if record["status"] == registry.FAILED:
        raise UserError(
            f"endpoint {name} Failed: {record.get('failure_reason')}",
            hint=f"its log: {folder.log}; delete it with `vizsla endpoints delete {name}`",
        )
    return record


def wait_for(
    name: str,
    done: Callable[[dict[str, Any]], bool],
    timeout_s: float,
    on_status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Poll NAME's record until DONE(record) (or its supervisor died: then the record says Failed)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        _reap()
        record = registry.read_record(name)
        if record.get("status") != last and on_status is not None:
            on_status(str(record.get("status")))
        last = record.get("status")
        if done(record) or record.get("status") == registry.FAILED:
            return record
        if record.get("supervisor_pid") and not registry.supervisor_alive(record):
            tail = _log_tail(registry.EndpointDir.of(name).log)
            return registry.update_record(
                name, status=registry.FAILED, failure_reason=f"the supervisor exited; its log ends: {tail}"
            )
        if time.monotonic() > deadline:
            raise UserError(
                f"endpoint {name} is still {last} after {timeout_s:.0f} s",
                hint=f"`vizsla endpoints logs {name}` shows what it is doing",
            )
        time.sleep(POLL_S)


def update_endpoint(
    name: str,
    config: EndpointConfig,
    *,
    timeout_s: float = WAIT_S,
    on_status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Blue/green to CONFIG: returns the record once the old backends are drained and stopped."""
    record = registry.read_record(name)
    if record.get("status") not in (registry.IN_SERVICE, registry.OUT_OF_SERVICE) or not (
        registry.supervisor_alive(record)
    ):
        raise UserError(
            f"endpoint {name} is {record.get('status')}: only an InService endpoint can be updated"
        )
    update_id = int(record.get("update_id") or 0) + 1
    registry.update_record(name, pending_config=config.model_dump(mode="json"), update_id=update_id)
    os.kill(int(record["supervisor_pid"]), signal.SIGHUP)

    def applied(current: dict[str, Any]) -> bool:
        error = current.get("update_error") or {}
        return current.get("applied_update") == update_id or error.get("id") == update_id

    record = wait_for(name, applied, timeout_s, on_status)
    error = record.get("update_error") or {}
    if error.get("id") == update_id:
        raise UserError(
            f"update of {name} failed, it still serves its previous models: {error.get('reason')}"
        )
    return record


def delete_endpoint(name: str, *, timeout_s: float = DELETE_WAIT_S) -> None:
    """Stop NAME's supervisor (requests in flight finish), wait until its port is free, unregister it."""
    import shutil

    record = registry.read_record(name)
    pid = record.get("supervisor_pid")
    clean = not registry.supervisor_alive(record) and record.get("status") == registry.FAILED
    if registry.supervisor_alive(record):
        registry.update_record(name, status=registry.DELETING)
        os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while registry.supervisor_alive(record) and time.monotonic() < deadline:
            _reap()
            time.sleep(POLL_S)
        clean = not registry.supervisor_alive(record)
        if not clean:  # stuck: end its whole session (router and backends)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)
    _reap()
    if not clean:  # a killed supervisor leaves its servers behind: stop them
        for backend in (record.get("backends") or {}).values():
            _kill_server(backend.get("pid"))
    shutil.rmtree(registry.EndpointDir.of(name).root, ignore_errors=True)


def _kill_server(pid: Any) -> None:
    """SIGKILL the process group of the `vizsla serve` PID (checked: pids get reused)."""
    import psutil

    try:
        if "serve" in psutil.Process(int(pid)).cmdline():
            os.killpg(int(pid), signal.SIGKILL)
    except (psutil.Error, OSError, TypeError, ValueError):
        pass


def _reap() -> None:
    for child in list(_CHILDREN):
        if child.poll() is not None:
            _CHILDREN.remove(child)


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
