"""The supervisor of one endpoint: `python -m vizsla.endpoints.supervisor NAME`, started in the background.

It binds the endpoint's public port for its router (vizsla.endpoints.proxy), starts one `vizsla serve`
backend per production variant, marks the endpoint InService once every backend answers /ping (Failed
with the reason otherwise), restarts a backend that dies (with backoff, counted in the record), applies
updates blue/green on SIGHUP and drains and stops everything on SIGTERM. Its output is the endpoint's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from vizsla.endpoints import registry
from vizsla.endpoints.backends import (
    BackendProcess,
    StartFailed,
    start_backend,
    start_variants,
    stop_all,
    wait_healthy,
)
from vizsla.endpoints.capture import Capture
from vizsla.endpoints.proxy import EndpointMetrics, ProxyApp, Router, drain
from vizsla.endpoints.spec import EndpointConfig

START_TIMEOUT_ENV = "VIZSLA_ENDPOINT_START_TIMEOUT"
DRAIN_S = 25.0  # in-flight requests of a replaced backend may take this long before it is stopped
MAX_BACKOFF_S = 30.0
MAX_FAILED_RESTARTS = 5  # restarts in a row that never became healthy before the endpoint is Failed


def backoff_s(failures: int) -> float:
    """Wait before restart number FAILURES in a row: 0.5 s, 1 s, 2 s, ... capped at MAX_BACKOFF_S."""
    return min(0.5 * 2 ** max(failures - 1, 0), MAX_BACKOFF_S)


def say(message: str) -> None:
    print(f"[supervisor] {time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


class Supervisor:
    """Owns one endpoint's router, backends and record while the endpoint lives."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.folder = registry.EndpointDir.of(name)
        record = registry.read_record(name)
        self.host, self.port = str(record["host"]), int(record["port"])
        self.config = EndpointConfig.model_validate(record["config"])
        self.start_timeout_s = float(os.environ.get(START_TIMEOUT_ENV, "600"))
        self.router = Router(self.config.seed)
        self.metrics = EndpointMetrics()
        self.capture = Capture(self.config.capture, self.folder.capture, seed=self.config.seed)
        self.app = ProxyApp(self.router, self.metrics, self.capture)
        self.backends: dict[str, BackendProcess] = {}
        self.stop = asyncio.Event()
        self.update_requested = asyncio.Event()
        self.restarts = int(record.get("restarts") or 0)
        self.log_lock = threading.Lock()

    def mark(self, status: str, reason: str | None = None, **changes: Any) -> None:
        say(f"status {status}" + (f": {reason}" if reason else ""))
        registry.update_record(self.name, status=status, failure_reason=reason, **changes)

    def backend_rows(self) -> dict[str, Any]:
        return {
            n: {"port": b.port, "pid": b.process.pid, "model": b.variant.model}
            for n, b in self.backends.items()
        }

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.update_requested.set)
        registry.update_record(self.name, supervisor_pid=os.getpid())
        try:
            sock = bind(self.host, self.port)
        except OSError as exc:
            self.mark(registry.FAILED, f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}")
            return 1
        server = QuietServer(self.app, sock)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            return await self._serve()
        finally:
            if self.stop.is_set():
                self.mark(registry.DELETING)
            server.should_exit = True  # uvicorn stops accepting and lets requests in flight finish
            with contextlib.suppress(Exception):  # uvicorn logged it; the backends must still stop
                await serving
            sock.close()
            await asyncio.to_thread(stop_all, list(self.backends.values()))
            self.capture.close()
            say("stopped: the port is free")

    async def _serve(self) -> int:
        say(f"starting {len(self.config.variants)} variant(s) behind {self.host}:{self.port}")
        try:
            self.backends = await self._start(self.config)
        except StartFailed as exc:
            self.mark(registry.FAILED, str(exc))
            return 1
        self.router.swap({n: b.backend for n, b in self.backends.items()}, self.config.weights())
        self.mark(registry.IN_SERVICE, backends=self.backend_rows())
        while not self.stop.is_set():
            if self.update_requested.is_set():
                self.update_requested.clear()
                await self._update()
            dead = [b for b in self.backends.values() if b.exit_reason() is not None]
            for backend in dead:
                if not await self._restart(backend):
                    return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.25)
        return 0

    async def _start(self, config: EndpointConfig) -> dict[str, BackendProcess]:
        return await start_variants(
            self.name, config, sys.stdout, self.log_lock, self.start_timeout_s, self.stop
        )

    async def _restart(self, dead: BackendProcess) -> bool:
        """Replace the dead backend DEAD (backoff between failed tries); False when the endpoint Failed."""
        reason = dead.explain(dead.exit_reason() or "exited")
        await asyncio.to_thread(dead.stop, 1.0)  # its worker processes, if its main process was killed
        for failures in range(1, MAX_FAILED_RESTARTS + 1):
            self.restarts += 1
            delay = backoff_s(failures)
            self.mark(
                registry.OUT_OF_SERVICE,
                f"{reason}; restart {self.restarts} in {delay:.1f} s",
                restarts=self.restarts,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
            if self.stop.is_set():
                return True
            fresh = start_backend(self.name, dead.variant, self.config, sys.stdout, self.log_lock)
            try:
                await wait_healthy(fresh, self.start_timeout_s, self.stop)
            except StartFailed as exc:
                reason = str(exc)
                await asyncio.to_thread(fresh.stop, 5.0)
                continue
            self.router.replace(fresh.backend)
            self.backends[dead.variant.name] = fresh
            self.mark(registry.IN_SERVICE, backends=self.backend_rows())
            return True
        self.mark(registry.FAILED, f"{reason} (after {MAX_FAILED_RESTARTS} restarts in a row)")
        return False

    async def _update(self) -> None:
        """Blue/green: start the pending config's backends, switch traffic, drain and stop the old ones."""
        record = registry.read_record(self.name)
        pending, update_id = record.get("pending_config"), record.get("update_id")
        if not pending:
            return
        config = EndpointConfig.model_validate(pending)
        self.mark(registry.UPDATING)
        try:
            fresh = await self._start(config)
        except StartFailed as exc:  # SageMaker keeps serving the old config when an update fails
            self.mark(
                registry.IN_SERVICE, pending_config=None, update_error={"id": update_id, "reason": str(exc)}
            )
            return
        old_backends = list(self.backends.values())
        old = self.router.swap({n: b.backend for n, b in fresh.items()}, config.weights())
        self.backends, self.config = fresh, config
        if config.capture != self.capture.spec:
            previous, self.capture = (
                self.capture,
                Capture(config.capture, self.folder.capture, seed=config.seed),
            )
            self.app.capture = self.capture
            await asyncio.to_thread(previous.close)
        say(f"traffic switched to update {update_id}; draining {len(old)} old backend(s)")
        drained = await drain(old, DRAIN_S)
        await asyncio.to_thread(stop_all, old_backends)
        say(f"old backends stopped ({'drained' if drained else 'drain timed out'})")
        self.mark(
            registry.IN_SERVICE,
            config=config.model_dump(mode="json"),
            pending_config=None,
            applied_update=update_id,
            backends=self.backend_rows(),
        )


def bind(host: str, port: int) -> socket.socket:
    """The endpoint's listening socket (bound here, so a taken port fails before any model loads)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


class QuietServer:
    """uvicorn serving the router without touching signals (the supervisor owns SIGTERM and SIGHUP)."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):  # type: ignore[no-untyped-def]
                yield

            def install_signal_handlers(self) -> None:  # uvicorn before 0.29's capture_signals
                return None

        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=int(DRAIN_S),
            server_header=False,  # the backend's Server and Date headers are forwarded as they are
            date_header=False,
        )
        self.server = _Server(config)

    @property
    def should_exit(self) -> bool:
        return bool(self.server.should_exit)

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self.server.should_exit = value

    async def serve(self, sockets: list[socket.socket]) -> None:
        await self.server.serve(sockets=sockets)


def main(argv: list[str] | None = None) -> int:
    """Supervise the endpoint named by the one argument until SIGTERM."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m vizsla.endpoints.supervisor NAME", file=sys.stderr)
        return 2
    name = args[0]
    try:
        return asyncio.run(Supervisor(name).run())
    except Exception as exc:  # a bug: the record says so (the traceback is in the log)
        with contextlib.suppress(Exception):
            registry.update_record(
                name, status=registry.FAILED, failure_reason=f"supervisor crashed: {exc!r}"
            )
        raise


if __name__ == "__main__":
    sys.exit(main())
