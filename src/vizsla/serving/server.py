"""Run the app under uvicorn: one process, or N worker processes sharing the port; SIGTERM drains requests.

Every server runs the guarded HTTP protocol (vizsla.serving.connections): slow clients are cut off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from vizsla.jobhealth import resolve_target  # noqa: F401 - its home was here; importers keep working
from vizsla.serving.metrics import MULTIPROC_ENV
from vizsla.serving.settings import SETTINGS_ENV, ServeSettings

log = logging.getLogger("vizsla.serving")

DRAIN_S = 25  # SageMaker sends SIGKILL 30 s after SIGTERM


def configure_logging() -> None:
    """vizsla's INFO lines (which model, which export, how long loading took) on stderr, as uvicorn's."""
    logger = logging.getLogger("vizsla")
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def event_loop_and_http() -> tuple[str, str]:
    """uvloop and httptools when installed (faster loop and HTTP parser), else asyncio and h11."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def uvicorn_options(http: str | None = None) -> dict[str, Any]:
    """What every vizsla uvicorn server runs with: the loop, the guarded HTTP protocol (header/body read
    time and connection bounds, vizsla.serving.connections) and graceful draining."""
    from vizsla.serving.connections import guarded_protocol

    loop, default_http = event_loop_and_http()
    return {
        "loop": loop,
        "http": guarded_protocol(http or default_http),
        "ws": "none",  # no websocket routes: skip importing a websocket library
        "access_log": False,
        "timeout_graceful_shutdown": DRAIN_S,
    }


def run_server(
    settings: ServeSettings,
    *,
    host: str,
    port: int,
    workers: int = 1,
    log_level: str = "info",
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted; with several workers each process loads the model itself. ON_LISTENING
    gets the URL once the port answers; with workers each worker logs the URL when it answers instead."""
    configure_logging()
    options = uvicorn_options()
    log.info("uvicorn with the %s event loop and the %s protocol", options["loop"], options["http"].__name__)
    url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
    if workers > 1:
        import shutil
        import tempfile

        from vizsla.serving.app import URL_ENV

        os.environ[SETTINGS_ENV] = settings.to_env()
        os.environ[URL_ENV] = url
        # every worker writes its metrics here and /metrics sums them, whichever worker answers it
        metrics_dir = tempfile.mkdtemp(prefix="vizsla-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
        log.info("starting %d workers; each loads the model and says when it answers", workers)
        try:
            uvicorn.run(
                "vizsla.serving.app:app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
                **options,
            )
        finally:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return
    from vizsla.serving.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, **options)
    server = AnnouncingServer(config, lambda: on_listening(url) if on_listening else None)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl+C ends the server quietly
        server.run()
    if not server.started:  # uvicorn logged why (e.g. the port is taken); its own exit status
        raise SystemExit(STARTUP_FAILURE)


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server that calls back once it listens, so the URL is printed when it answers."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self.announce()
