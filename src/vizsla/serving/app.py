"""The FastAPI app: SageMaker container and runtime routes, Open Inference Protocol v2, /metrics and the page.

`create_app(settings)` loads the handler and the model (serving/state.py), then serves the routes of
serving/routers/. Every request is authenticated (when keys are configured) before its body is read; the
body is read under the payload limit (and under the read-time bounds of serving/connections.py), decoded in
a thread pool off the event loop, predicted through the dynamic batcher (one inference thread) and encoded
(on the loop when the answer is small and the encoder ours, else in the pool), all under the request
timeout. A client that leaves mid-upload is counted as 499 client_closed, not as a model error. Starting
needs no torch for a vizsla model on ONNX Runtime: the model folder is read directly and images go through
serving/preprocess.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute

from vizsla import __version__
from vizsla.serving.batching import DynamicBatcher
from vizsla.serving.connections import STATE_KEY, ConnectionGuard, ConnectionLimitMiddleware
from vizsla.serving.errors import RequestError
from vizsla.serving.metrics import MetricsMiddleware
from vizsla.serving.routers import kserve_v2, operations, sagemaker
from vizsla.serving.routers.plumbing import handle_request_error
from vizsla.serving.runtime import ServedModel
from vizsla.serving.settings import ServeSettings
from vizsla.serving.state import ServerState
from vizsla.serving.warmup import warm_up_pending

__all__ = ["URL_ENV", "ServerState", "app_from_env", "create_app"]

log = logging.getLogger("vizsla.serving")

URL_ENV = "VIZSLA_SERVE_URL"  # set by `vizsla serve --workers N`: each worker says when it answers there

# The routers' routes go straight into the app's list rather than through include_router: FastAPI 0.16x
# matches a request against an included router twice (~30 us a request, measured), a flat list once.
ROUTES: list[BaseRoute] = [*sagemaker.ROUTES, *kserve_v2.ROUTES, *operations.ROUTES]


def create_app(settings: ServeSettings) -> FastAPI:
    """The app for SETTINGS: loads the handler and model now, starts the batcher with the event loop."""
    started = time.perf_counter()
    state = ServerState(settings)
    load_s = time.perf_counter() - started
    app = FastAPI(
        title="vizsla serve",
        version=__version__,
        lifespan=functools.partial(_serving, state, load_s),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        routes=ROUTES,
    )
    app.state.vizsla = state  # what the routers' State dependency reads
    app.add_middleware(ConnectionLimitMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)  # outermost: counts the 503s too
    operations.mount_static(app, settings)
    app.add_exception_handler(RequestError, handle_request_error)
    return app


@contextlib.asynccontextmanager
async def _serving(state: ServerState, load_s: float, _: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """The app's lifespan: batching and ready on start; on shutdown (uvicorn has drained in-flight
    requests by then) not ready, the batcher stopped and the pools closed."""
    warming = _start_batching(state)
    state.ready = True
    gc.freeze()  # what start-up allocated is never garbage: full collections skip it (shorter pauses)
    log.info(
        "serving %s (%s, %d classes) as %r; model ready in %.2f s",
        state.model_dir,
        state.runtime,
        len(state.labels),
        state.settings.model_name,
        load_s,
    )
    announce = os.environ.get(URL_ENV)
    if announce:  # a worker of `vizsla serve --workers N`: the parent bound the port long ago
        log.info("worker %d answers on %s", os.getpid(), announce)
    guard = ConnectionGuard(state.settings.connection_limits, state.metrics.cut_connection)
    try:
        yield {STATE_KEY: guard}  # lifespan state: uvicorn hands it to every connection's protocol
    finally:
        state.ready = False
        if warming is not None:
            warming.cancel()
        if state.batcher is not None:
            await state.batcher.stop()
        state.shutdown_pools()


def _start_batching(state: ServerState) -> asyncio.Task[None] | None:
    """Start the dynamic batcher on this loop when the model batches; return the task warming up the
    batch sizes start-up left pending, if any."""
    if not state.batchable:
        return None
    assert isinstance(state.model, ServedModel)
    settings = state.settings
    state.batcher = DynamicBatcher(
        state.model.predict,
        max_batch=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        executor=state.infer_pool,
        observe=state.metrics.observe_batch,
        arriving=lambda: state.decoding,
    )
    state.batcher.start()
    if state.warm_up is None or not state.warm_up.pending:
        return None
    return asyncio.get_running_loop().create_task(
        warm_up_pending(state.warm_up, state.model.predict, state.model.input_hw, state.infer_pool)
    )


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: settings come from VIZSLA_SERVE_SETTINGS."""
    from vizsla.serving.server import configure_logging

    configure_logging()
    started = time.perf_counter()
    app = create_app(ServeSettings.from_env())
    log.info("worker ready in %.1f s", time.perf_counter() - started)
    return app
