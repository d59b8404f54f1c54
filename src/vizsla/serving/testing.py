"""A real server on a free loopback port in a background thread: for tests, benchmarks, the page check."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from vizsla.serving.settings import ServeSettings


@contextlib.contextmanager
def running_server(
    settings: ServeSettings, *, start_timeout_s: float = 120.0, http: str | None = None
) -> Iterator[tuple[str, Any]]:
    """Yield (base URL, FastAPI app) of a uvicorn server bound to 127.0.0.1:<free port>; stops on exit.
    It runs what `vizsla serve` runs (the guarded protocol); HTTP picks the parser: httptools or h11."""
    import uvicorn

    from vizsla.serving.app import create_app
    from vizsla.serving.server import uvicorn_options

    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = {**uvicorn_options(http), "timeout_graceful_shutdown": 10}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **options))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="vizsla-server"
    )
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
