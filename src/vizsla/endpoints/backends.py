"""The model servers behind an endpoint: one `vizsla serve` process (group) per production variant.

Each backend listens on a free loopback port of its own; only the supervisor's router is public. A
backend runs in its own process group, so stopping it also stops its uvicorn workers, even when its
main process was killed and they were left behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

from vizsla.endpoints.proxy import Backend
from vizsla.endpoints.spec import EndpointConfig, VariantSpec

STOP_S = 30.0  # SageMaker's SIGTERM -> SIGKILL window; `vizsla serve` drains within 25 s
LOG_TAIL = 15  # lines of a backend's output kept to explain why it failed


class StartFailed(Exception):
    """A backend exited or did not answer /ping in time; the message says which and why."""


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(eq=False)
class BackendProcess:
    """A running `vizsla serve` of one variant: its process, its port and the last lines it printed."""

    variant: VariantSpec
    port: int
    process: subprocess.Popen[bytes]
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=LOG_TAIL))
    backend: Backend = field(init=False)

    def __post_init__(self) -> None:
        self.backend = Backend(self.variant.name, f"http://127.0.0.1:{self.port}")

    def exit_reason(self) -> str | None:
        """None while it runs, else how it ended ("exited with code 1", "killed by SIGKILL")."""
        code = self.process.poll()
        if code is None:
            return None
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def explain(self, what: str) -> str:
        last = " | ".join(line for line in self.tail if line.strip())[-600:]
        return f"the server of variant {self.variant.name} ({self.variant.model}) {what}" + (
            f"; its last output: {last}" if last else ""
        )

    def stop(self, timeout_s: float = STOP_S) -> None:
        """SIGTERM its process group (it drains), SIGKILL whatever is left after TIMEOUT_S."""
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def serve_command(name: str, variant: VariantSpec, config: EndpointConfig, port: int) -> list[str]:
    """The `vizsla serve` command line of VARIANT on PORT (the endpoint's name in its runtime path)."""
    command = [
        sys.executable,
        "-m",
        "vizsla",
        "serve",
        variant.model,
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--workers",
        str(config.workers),
        "--runtime",
        config.runtime,
        "--name",
        name,
    ]
    if config.handler:
        command += ["--handler", config.handler]
    if config.source_dir:
        command += ["--source-dir", config.source_dir]
    return command


def start_backend(
    name: str, variant: VariantSpec, config: EndpointConfig, sink: IO[str], lock: threading.Lock
) -> BackendProcess:
    """Start VARIANT's server on a fresh port; its output goes to SINK, each line prefixed by the variant."""
    port = free_port()
    process = subprocess.Popen(
        serve_command(name, variant, config, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    started = BackendProcess(variant, port, process)
    threading.Thread(
        target=_copy_lines, args=(started, sink, lock), name=f"log-{variant.name}", daemon=True
    ).start()
    return started


def _copy_lines(backend: BackendProcess, sink: IO[str], lock: threading.Lock) -> None:
    assert backend.process.stdout is not None
    for raw in backend.process.stdout:
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        backend.tail.append(line)
        with lock:
            sink.write(f"[{backend.variant.name}:{backend.port}] {line}\n")
            sink.flush()


async def wait_healthy(backend: BackendProcess, timeout_s: float, stop: asyncio.Event) -> None:
    """Return once BACKEND answers GET /ping with 200; StartFailed when it exits or TIMEOUT_S passes."""
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:  # SageMaker's /ping timeout
        while not stop.is_set():
            reason = backend.exit_reason()
            if reason is not None:
                await asyncio.sleep(0.2)  # let the log thread read its last lines
                raise StartFailed(backend.explain(reason))
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{backend.backend.url}/ping")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise StartFailed(backend.explain(f"did not answer /ping within {timeout_s:.0f} s"))
            await asyncio.sleep(0.2)
    raise StartFailed("the endpoint was deleted while its servers started")


async def start_variants(
    name: str,
    config: EndpointConfig,
    sink: IO[str],
    lock: threading.Lock,
    timeout_s: float,
    stop: asyncio.Event,
) -> dict[str, BackendProcess]:
    """One healthy backend per variant of CONFIG; on any failure, all of them stopped and StartFailed."""
    started = {v.name: start_backend(name, v, config, sink, lock) for v in config.variants}
    try:
        await asyncio.gather(*(wait_healthy(b, timeout_s, stop) for b in started.values()))
    except BaseException:
        await asyncio.to_thread(stop_all, list(started.values()), 5.0)
        raise
    return started


def stop_all(backends: list[BackendProcess], timeout_s: float = STOP_S) -> None:
    """Stop BACKENDS in parallel threads (each drains on its own)."""
    threads = [threading.Thread(target=b.stop, args=(timeout_s,)) for b in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
