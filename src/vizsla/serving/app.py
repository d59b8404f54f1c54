"""The FastAPI app: SageMaker container and runtime routes, Open Inference Protocol v2, /metrics and the page.

`create_app(settings)` loads the handler and the model, then serves. Every request is authenticated (when
keys are configured) before its body is read; the body is read under the payload limit (and under the
read-time bounds of serving/connections.py), decoded in a thread pool off the event loop, predicted through
the dynamic batcher (one inference thread) and encoded (on the loop when the answer is small and the encoder
ours, else in the pool), all under the request timeout. A client that leaves mid-upload is counted as 499
client_closed, not as a model error. Starting needs no torch for a vizsla model on ONNX Runtime: the model
folder is read directly and images go through serving/preprocess.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.requests import ClientDisconnect

from vizsla import __version__
from vizsla.errors import UserError
from vizsla.serving import v2
from vizsla.serving.batching import DynamicBatcher
from vizsla.serving.connections import (
    CUT_KEY,
    STATE_KEY,
    ConnectionGuard,
    ConnectionLimitMiddleware,
)
from vizsla.serving.errors import RequestError
from vizsla.serving.handler import Handler, RequestContext, decode_to_array
from vizsla.serving.metrics import MetricsMiddleware, ServingMetrics
from vizsla.serving.runtime import ServedModel, load_served_model
from vizsla.serving.security import UrlFetcher, check_auth, signs_body
from vizsla.serving.settings import ServeSettings
from vizsla.serving.toolkit import has_model_file, is_vizsla_model, resolve_artefact_dir
from vizsla.serving.warmup import WarmUp, warm_up_now, warm_up_pending

# answers of up to this many scores are encoded on the event loop (~0.1 ms), larger ones in the pool
INLINE_ENCODE_VALUES = 4096

log = logging.getLogger("vizsla.serving")

URL_ENV = "VIZSLA_SERVE_URL"  # set by `vizsla serve --workers N`: each worker says when it answers there
STATIC_DIR = Path(__file__).parent / "static"
PUBLIC_PATHS = {"/ping", "/v2/health/live", "/v2/health/ready", "/"}


class ServerState:
    """Everything a request needs: settings, handler, model, pools, batcher, metrics."""

    def __init__(self, settings: ServeSettings) -> None:
        from vizsla.data.transforms import draft_size_for
        from vizsla.data.validate import available_cores
        from vizsla.serving.preprocess import EvalTransform

        self.settings = settings
        log.info("loading the model from %s (runtime %s)", settings.model_path, settings.runtime)
        # A script's own artefact (served by the inference toolkit's rules): an entry point was given, or
        # the folder holds a TorchScript model.pt rather than a vizsla model.
        self.script = not is_vizsla_model(settings.model_path) and (
            settings.handler_path is not None or has_model_file(settings.model_path)
        )
        self.handler = Handler(
            settings.handler_path, source_dir=settings.handler_source_dir, script=self.script
        )
        self.labels: list[str] = []
        self.preprocessing: dict[str, Any] = {}
        if self.script:  # a script's own artefact: its model_fn loads whatever it saved
            self.model_dir = resolve_artefact_dir(settings.model_path)
        else:
            self.model_dir, config = _model_dir_and_config(settings.model_path)
            self.labels = list(config["labels"])
            self.preprocessing = dict(config["preprocessing"])
        if self.script or "model_fn" in self.handler.custom:
            self.model = self.load_user_model()
        else:
            self.model = load_served_model(
                self.model_dir,
                runtime=settings.runtime,
                threads=settings.inference_threads,
                check_inputs=settings.onnx_check_inputs,
            )
        if isinstance(self.model, ServedModel):
            self.labels, self.preprocessing = self.model.labels, self.model.preprocessing
        self.runtime = self.model.runtime if isinstance(self.model, ServedModel) else "custom"
        self.transform = None if self.script else EvalTransform(self.preprocessing)
        self.draft_size = None if self.script else draft_size_for(self.preprocessing)
        self.fetcher = (
            UrlFetcher(
                allow_hosts=settings.url_allow_hosts,
                allow_private=settings.url_allow_private,
                max_bytes=settings.url_max_bytes,
                timeout_s=settings.url_timeout_s,
            )
            if settings.allow_url_fetch
            else None
        )
        self.decode_pool = ThreadPoolExecutor(
            settings.decode_threads or available_cores(), thread_name_prefix="vizsla-decode"
        )
        self.infer_pool = ThreadPoolExecutor(1, thread_name_prefix="vizsla-infer")
        self.metrics = ServingMetrics()
        self.batcher: DynamicBatcher | None = None
        self.decoding = 0  # requests in input_fn now: the batcher waits for them only
        self.inline_output = not self.script and "output_fn" not in self.handler.custom
        self.ready = False
        self.warm_up: WarmUp | None = None
        if isinstance(self.model, ServedModel):  # no request pays the runtime's first run at its batch size
            log.info("warming up %s at batch sizes up to %d", self.model.runtime, settings.max_batch_size)
            self.warm_up = warm_up_now(self.model.predict, self.model.input_hw, settings.max_batch_size)

    def load_user_model(self) -> Any:
        """The entry point's model_fn(model_dir); a failure is a user error, without a traceback."""
        context = RequestContext(
            labels=self.labels, preprocessing=self.preprocessing, model_name=self.settings.model_name
        )
        try:
            return self.handler.model(str(self.model_dir), context)
        except UserError:  # the default model_fn's own message
            raise
        except Exception as exc:
            raise UserError(
                f"model_fn in {self.handler.source} failed on {self.model_dir}: {type(exc).__name__}: {exc}",
                hint="model_dir is the folder the training script saved into (SM_MODEL_DIR).",
            ) from None

    @property
    def batchable(self) -> bool:
        return self.handler.default_predict and isinstance(self.model, ServedModel)

    def context(self, query: dict[str, str]) -> RequestContext:
        """A request's context; `?topk=K` and `?verbose=full` (or `?full=true`) shape the JSON answer."""
        topk = self.settings.default_topk
        if "topk" in query:
            try:
                topk = int(query["topk"])
            except ValueError:
                raise RequestError(400, "topk must be an integer") from None
            if topk < 1:
                raise RequestError(400, "topk must be at least 1")
        full = query.get("verbose", "").lower() == "full" or query.get("full", "").lower() in (
            "1",
            "true",
            "yes",
        )
        return RequestContext(
            labels=self.labels,
            preprocessing=self.preprocessing,
            model_name=self.settings.model_name,
            topk=min(topk, len(self.labels)) if self.labels else topk,
            full=full,
            max_pixels=self.settings.max_pixels,
            max_images=self.settings.max_images_per_request,
            fetch_url=self.fetcher,
            transform=self.transform,
            draft_size=self.draft_size,
        )

    async def in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, fn, *args)

    async def decode(self, fn: Callable[..., Any], *args: Any) -> Any:
        """FN in the pool, counted while it runs: a batch waits for requests still decoding, not in vain."""
        self.decoding += 1
        try:
            return await self.in_pool(fn, *args)
        finally:
            self.decoding -= 1

    async def predict(self, data: Any, context: RequestContext) -> Any:
        """Batched forward pass for our model and a standard batch; the user's predict_fn otherwise."""
        if self.batchable and isinstance(data, np.ndarray) and data.dtype == np.float32 and data.ndim == 4:
            assert isinstance(self.model, ServedModel) and self.batcher is not None
            height, width = self.model.input_hw
            if data.shape[1:] != (3, height, width):
                raise RequestError(
                    400, f"expected images of shape [3, {height}, {width}], got {list(data.shape[1:])}"
                )
            return await self.batcher.submit(data)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.infer_pool, self.handler.predict, data, self.model, context)

    async def invoke(
        self, body: bytes, content_type: str, accept: str, context: RequestContext
    ) -> tuple[bytes, str]:
        """input_fn -> predict_fn -> output_fn (or the user's transform_fn) for one request."""
        if "transform_fn" in self.handler.custom:
            return await self.in_pool(self.handler.transform, self.model, body, content_type, accept, context)
        data = await self.decode(self.handler.input, body, content_type, context)
        prediction = await self.predict(data, context)
        small = isinstance(prediction, np.ndarray) and prediction.size <= INLINE_ENCODE_VALUES
        if self.inline_output and small:  # a hop to the pool and back costs more than encoding it here
            return self.handler.output(prediction, accept, context)
        return await self.in_pool(self.handler.output, prediction, accept, context)

    async def with_timeout(self, work: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                return await work
        except TimeoutError:
            raise RequestError(
                504, f"inference did not finish within {self.settings.request_timeout_s:g} s"
            ) from None

    def shutdown_pools(self) -> None:
        self.decode_pool.shutdown(wait=True, cancel_futures=False)
        self.infer_pool.shutdown(wait=True, cancel_futures=False)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as Content-Length or the streamed bytes pass LIMIT."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise RequestError(400, "invalid Content-Length") from None
        if too_big:
            raise RequestError(413, f"payload of {declared} bytes exceeds the {limit}-byte limit")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"payload exceeds the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect:
        raise _disconnect_error(request, size) from None
    return b"".join(chunks)


def _disconnect_error(request: Request, received: int) -> RequestError:
    """408 when the server cut a too slow upload (the connection guard logged it), else 499: the client
    went away (one log line, no traceback: nothing failed on this side)."""
    cut = request.scope.get(CUT_KEY)
    if cut is not None:
        reason, message = cut
        return RequestError(408, message, reason=reason)
    client = request.client
    who = f"{client.host}:{client.port}" if client else "a client"
    announced = request.headers.get("content-length", "?")
    log.info(
        "%s closed the connection during the upload of %s %s (%d of %s bytes received)",
        who,
        request.method,
        request.url.path,
        received,
        announced,
    )
    return RequestError(499, "the client closed the connection during the upload", reason="client_closed")


def _request_url(request: Request) -> str:
    scope = request.scope
    host = request.headers.get("host", "")
    path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")


async def authorize(state: ServerState, request: Request, body: bytes | None, *, aws: bool = False) -> None:
    """401/403 unless the request carries a configured API key or a valid SigV4 signature; with BODY
    None (before the body is read) all but the SigV4 signature over the body."""
    settings = state.settings
    if not settings.auth_enabled:
        return
    headers = {k.lower(): v for k, v in request.headers.items()}
    check_auth(
        request.method,
        _request_url(request),
        headers,
        body,
        api_keys=settings.api_keys,
        sigv4=settings.sigv4_credentials,
        max_skew_s=settings.sigv4_max_skew_s,
        aws=aws,
    )


async def read_authorized_body(
    state: ServerState, request: Request, *, aws: bool = False, before: Callable[[], None] | None = None
) -> bytes:
    """The body of an authorized request: credentials are checked before any of it is read (401/403
    cost an unauthenticated client nothing to send and the server nothing to hold), a SigV4 signature
    again over the body. BEFORE runs between the two (a check that needs no body, e.g. the model name)."""
    await authorize(state, request, None, aws=aws)
    if before is not None:
        before()
    body = await read_body(request, state.settings.max_payload_bytes)
    if state.settings.auth_enabled and signs_body(
        {k.lower(): v for k, v in request.headers.items()}, state.settings.sigv4_credentials
    ):
        await authorize(state, request, body, aws=aws)
    return body


def _error_label(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, RequestError) else "model_error"


def _as_request_error(exc: Exception) -> RequestError | None:
    """A failure that is the request's fault although not raised as a RequestError (else None)."""
    if isinstance(exc, RecursionError):  # a payload nested deeper than any decoder walks
        return RequestError(400, "the request is nested too deeply to process", reason="bad_request")
    return None


def create_app(settings: ServeSettings) -> FastAPI:
    """The app for SETTINGS: loads the handler and model now, starts the batcher with the event loop."""
    started = time.perf_counter()
    state = ServerState(settings)
    load_s = time.perf_counter() - started

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        warming: asyncio.Task[None] | None = None
        if state.batchable:
            assert isinstance(state.model, ServedModel)
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
            if state.warm_up is not None and state.warm_up.pending:
                warming = asyncio.get_running_loop().create_task(
                    warm_up_pending(
                        state.warm_up, state.model.predict, state.model.input_hw, state.infer_pool
                    )
                )
        state.ready = True
        gc.freeze()  # what start-up allocated is never garbage: full collections skip it (shorter pauses)
        log.info(
            "serving %s (%s, %d classes) as %r; model ready in %.2f s",
            state.model_dir,
            state.runtime,
            len(state.labels),
            settings.model_name,
            load_s,
        )
        announce = os.environ.get(URL_ENV)
        if announce:  # a worker of `vizsla serve --workers N`: the parent bound the port long ago
            log.info("worker %d answers on %s", os.getpid(), announce)
        guard = ConnectionGuard(settings.connection_limits, state.metrics.cut_connection)
        try:
            yield {STATE_KEY: guard}  # lifespan state: uvicorn hands it to every connection's protocol
        finally:  # uvicorn has drained in-flight requests before this runs
            state.ready = False
            if warming is not None:
                warming.cancel()
            if state.batcher is not None:
                await state.batcher.stop()
            state.shutdown_pools()

    app = FastAPI(
        title="vizsla serve",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.vizsla = state
    app.add_middleware(ConnectionLimitMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)  # outermost: counts the 503s too

    def count_error(route: str, exc: BaseException) -> None:
        state.metrics.errors.labels(route, _error_label(exc)).inc()

    # ------------------------------------------------------------ SageMaker container contract

    @app.get("/ping")
    async def ping() -> Response:
        return (
            JSONResponse({"status": "Healthy"}) if state.ready else JSONResponse({"status": "Unhealthy"}, 503)
        )

    @app.get("/execution-parameters")
    async def execution_parameters() -> Response:
        return JSONResponse(
            {
                "MaxConcurrentTransforms": 1,
                "BatchStrategy": "MULTI_RECORD",
                "MaxPayloadInMB": max(1, settings.max_payload_bytes // (1024 * 1024)),
            }
        )

    async def run_invocation(request: Request, *, aws: bool) -> tuple[bytes, str]:
        body = await read_authorized_body(state, request, aws=aws)
        context = state.context(dict(request.query_params))
        return await state.with_timeout(
            state.invoke(
                body, request.headers.get("content-type", ""), request.headers.get("accept", ""), context
            )
        )

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        try:
            payload, content_type = await run_invocation(request, aws=False)
        except RequestError as exc:
            count_error("/invocations", exc)
            return JSONResponse({"error": exc.message, "code": exc.status}, exc.status, headers=exc.headers)
        except Exception as exc:  # the user's handler or the model failed: report, never crash
            client_fault = _as_request_error(exc)
            if client_fault is not None:
                count_error("/invocations", client_fault)
                return JSONResponse({"error": client_fault.message, "code": 400}, 400)
            log.exception("handler failed")
            count_error("/invocations", exc)
            return JSONResponse({"error": f"model error: {type(exc).__name__}: {exc}", "code": 500}, 500)
        return Response(payload, media_type=content_type)

    # ------------------------------------------------ SageMaker runtime API (boto3 invoke_endpoint)

    @app.post("/endpoints/{name}/invocations")
    async def invoke_endpoint(name: str, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        route = "/endpoints/{name}/invocations"
        try:
            if name != settings.model_name:
                raise RequestError(400, f"Endpoint {name} not found.", aws_code="ValidationError")
            payload, content_type = await run_invocation(request, aws=True)
        except RequestError as exc:
            count_error(route, exc)
            return _aws_error(exc, request_id)
        except Exception as exc:
            client_fault = _as_request_error(exc)
            if client_fault is not None:
                count_error(route, client_fault)
                return _aws_error(client_fault, request_id)
            log.exception("handler failed")
            count_error(route, exc)
            return _aws_error(RequestError(500, f"{type(exc).__name__}: {exc}"), request_id)
        return Response(
            payload,
            media_type=content_type,
            headers={"x-Amzn-Invoked-Production-Variant": "AllTraffic", "x-amzn-RequestId": request_id},
        )

    # ------------------------------------------------------------ Open Inference Protocol v2

    def v2_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"error": message}, status, headers=headers)

    @app.get("/v2")
    async def v2_server() -> Response:
        return JSONResponse(v2.server_metadata(__version__))

    @app.get("/v2/health/live")
    async def v2_live() -> Response:
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready")
    async def v2_ready() -> Response:
        return JSONResponse({"ready": state.ready}, 200 if state.ready else 503)

    @app.get("/v2/models")
    async def v2_models(request: Request) -> Response:
        await authorize(state, request, b"")
        return JSONResponse({"models": [settings.model_name]})

    def known_model(name: str) -> None:
        if name != settings.model_name:
            raise RequestError(404, f"unknown model {name!r}; this server serves {settings.model_name!r}")
        if state.script:
            raise RequestError(
                400,
                "the v2 protocol needs a vizsla model's tensor contract; this script-mode endpoint answers "
                f"/invocations and /endpoints/{settings.model_name}/invocations",
            )

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def v2_model(name: str, request: Request, version: str | None = None) -> Response:
        try:
            await authorize(state, request, b"")
            known_model(name)
        except RequestError as exc:
            return v2_error(exc.status, exc.message, exc.headers)
        return JSONResponse(v2.model_metadata(name, state.labels, state.preprocessing, state.runtime))

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_model_ready(name: str, request: Request, version: str | None = None) -> Response:
        try:
            await authorize(state, request, b"")
            known_model(name)
        except RequestError as exc:
            return v2_error(exc.status, exc.message, exc.headers)
        return JSONResponse({"name": name, "ready": state.ready}, 200 if state.ready else 503)

    v2_inputs: list[dict[str, Any]] = []  # the inputs v2 metadata declares; a request must name one
    if not state.script:
        metadata = v2.model_metadata(settings.model_name, state.labels, state.preprocessing, state.runtime)
        v2_inputs = metadata["inputs"]

    async def v2_predict(request: Request, name: str) -> tuple[bytes, dict[str, str]]:
        # a wrong model name is refused before the upload, after the credentials
        body = await read_authorized_body(state, request, before=lambda: known_model(name))
        parsed, kind, data = v2.parse_infer(body, request.headers.get(v2.HEADER_LENGTH), v2_inputs)
        context = state.context({})

        async def work() -> Any:
            if kind == v2.INPUT_IMAGE:
                if not data:
                    raise RequestError(400, "no images in the request")
                if len(data) > settings.max_images_per_request:
                    raise RequestError(
                        413,
                        f"{len(data)} images in one request; the limit is {settings.max_images_per_request}",
                    )
                arrays = await asyncio.gather(
                    *(state.decode(decode_to_array, item, context) for item in data)
                )
                images = np.stack(arrays)
            else:
                images = data
            return await state.predict(images, context)

        scores = np.asarray(await state.with_timeout(work()), dtype=np.float32)
        return await state.in_pool(v2.build_response, parsed, scores, state.labels, name)

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def v2_infer(name: str, request: Request, version: str | None = None) -> Response:
        try:
            payload, headers = await v2_predict(request, name)
        except RequestError as exc:
            count_error("/v2/models/{name}/infer", exc)
            return v2_error(exc.status, exc.message, exc.headers)
        except Exception as exc:
            client_fault = _as_request_error(exc)
            if client_fault is not None:
                count_error("/v2/models/{name}/infer", client_fault)
                return v2_error(client_fault.status, client_fault.message)
            log.exception("inference failed")
            count_error("/v2/models/{name}/infer", exc)
            return v2_error(500, f"model error: {type(exc).__name__}: {exc}")
        return Response(payload, headers=headers)

    # ------------------------------------------------------------ metrics and the page

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        try:
            await authorize(state, request, b"")
        except RequestError as exc:
            return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)
        payload, content_type = state.metrics.render()
        return Response(payload, media_type=content_type)

    static_dir = settings.static_dir or STATIC_DIR

    @app.get("/")
    async def index() -> Response:
        page = static_dir / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return JSONResponse(
            {
                "model": settings.model_name,
                "labels": len(state.labels),
                "routes": [
                    "/ping",
                    "/invocations",
                    f"/endpoints/{settings.model_name}/invocations",
                    f"/v2/models/{settings.model_name}/infer",
                    "/metrics",
                ],
            }
        )

    if static_dir.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=static_dir), name="static")

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> Response:
        return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)

    return app


def _model_dir_and_config(path: Path) -> tuple[Path, dict[str, Any]]:
    """The model folder and its config.json, read without torch; vizsla.models.io names any problem."""
    from vizsla.serving.composed import CONFIG_FILE, find_model_dir, read_json

    model_dir = find_model_dir(path)
    config = read_json(model_dir / CONFIG_FILE) if model_dir is not None else None
    if model_dir is None or not isinstance(config, dict) or not {"labels", "preprocessing"} <= set(config):
        from vizsla.models.io import read_config, resolve_model_dir

        model_dir = resolve_model_dir(path)
        config = read_config(model_dir)
    return model_dir, config


def _aws_error(exc: RequestError, request_id: str) -> Response:
    """Runtime-API errors as boto3 parses them: service faults keep their code, model faults: ModelError."""
    headers = {"x-amzn-RequestId": request_id, **exc.headers}
    if exc.aws_code is not None or exc.status in (401, 403, 413, 503):
        code = exc.aws_code or {413: "ValidationError", 503: "ServiceUnavailable"}.get(
            exc.status, "AccessDenied"
        )
        headers["x-amzn-ErrorType"] = code
        return JSONResponse({"__type": code, "message": exc.message}, exc.status, headers=headers)
    side = "client" if exc.status < 500 else "server"
    message = (
        f'Received {side} error ({exc.status}) from primary with message "{exc.message}". '
        f"See the vizsla server log for details."
    )
    if exc.status == 504:
        message = (
            f"Your invocation timed out while waiting for a response from container primary: {exc.message}"
        )
    headers["x-amzn-ErrorType"] = "ModelError"
    body = {
        "ErrorCode": f"{side.upper()}_ERROR_FROM_MODEL",
        "Message": message,
        "message": message,
        "OriginalStatusCode": exc.status,
        "OriginalMessage": json.dumps({"error": exc.message}),
        "LogStreamArn": "",
    }
    return JSONResponse(body, 424, headers=headers)


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: settings come from VIZSLA_SERVE_SETTINGS."""
    from vizsla.serving.server import configure_logging

    configure_logging()
    started = time.perf_counter()
    app = create_app(ServeSettings.from_env())
    log.info("worker ready in %.1f s", time.perf_counter() - started)
    return app
