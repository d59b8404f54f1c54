"""Run the app under uvicorn: one process, or N worker processes sharing the port; SIGTERM drains requests."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from vizsla.errors import UserError
from vizsla.serving.metrics import MULTIPROC_ENV
from vizsla.serving.settings import SETTINGS_ENV, ServeSettings

log = logging.getLogger("vizsla.serving")

DRAIN_S = 25  # SageMaker sends SIGKILL 30 s after SIGTERM


def resolve_target(path: Path, *, best: bool) -> Path:
    """The job or model folder to serve; with BEST, the best trial's job of a tuning job (DIR/result.json)."""
    path = Path(path).expanduser()
    if not best:
        return path
    result_file = path / "result.json"
    try:
        result = json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(
            f"--best needs a tuning job's result.json: cannot read {result_file}: {exc}"
        ) from None
    best_trial = result.get("best") if isinstance(result, dict) else None
    job_dir = best_trial.get("job_dir") if isinstance(best_trial, dict) else None
    if not job_dir:
        raise UserError(f"{result_file} names no best trial (no finished trial yet?)")
    job_path = Path(job_dir)
    return job_path if job_path.is_absolute() else path / job_path


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


def run_server(
    settings: ServeSettings, *, host: str, port: int, workers: int = 1, log_level: str = "info"
) -> None:
    """Serve until interrupted; with several workers each process loads the model itself."""
    import uvicorn

    configure_logging()
    loop, http = event_loop_and_http()
    log.info("uvicorn with the %s event loop and the %s HTTP parser", loop, http)
    if workers > 1:
        import shutil
        import tempfile

        os.environ[SETTINGS_ENV] = settings.to_env()
        # every worker writes its metrics here and /metrics sums them, whichever worker answers it
        metrics_dir = tempfile.mkdtemp(prefix="vizsla-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
        try:
            uvicorn.run(
                "vizsla.serving.app:app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
                timeout_graceful_shutdown=DRAIN_S,
                access_log=False,
                loop=loop,
                http=http,
                ws="none",
            )
        finally:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return
    from vizsla.serving.app import create_app

    app = create_app(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=DRAIN_S,
        access_log=False,
        loop=loop,
        http=http,
        ws="none",  # no websocket routes: skip importing a websocket library
    )
