"""What every router shares: the ServerState dependency, authorized body reading and error mapping.

A request is authenticated (when keys are configured) before its body is read; the body is read under the
payload limit (and under the read-time bounds of serving/connections.py). A client that leaves mid-upload is
counted as 499 client_closed, not as a model error. Failures become responses in two places only: the app's
RequestError handler (the plain `{"error": ...}` refusal) and `ErrorMappedRoute`, the route class of the
inference routes, which answers in its protocol's shape and counts each failure in vizsla_errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, ClassVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from vizsla.serving.connections import CUT_KEY
from vizsla.serving.errors import RequestError
from vizsla.serving.security import check_auth, signs_body
from vizsla.serving.state import ServerState

log = logging.getLogger("vizsla.serving")

# the routes that answer without credentials (health checks and the page)
PUBLIC_PATHS = {"/ping", "/v2/health/live", "/v2/health/ready", "/"}


def state_of(request: Request) -> ServerState:
    """The app's ServerState, set once by create_app."""
    return request.app.state.vizsla


async def get_state(request: Request) -> ServerState:
    """state_of as a dependency (async: a sync dependency would hop to a thread and back)."""
    return request.app.state.vizsla


# The routes' way to the state. The inference routes call state_of(request) instead: FastAPI solves a
# Depends on every request (15-30 us measured, a fifth of a /ping), which they would pay on every image.
State = Annotated[ServerState, Depends(get_state)]


def error_response(error: RequestError) -> Response:
    """The plain refusal: `{"error": message}` with the error's status and headers."""
    return JSONResponse({"error": error.message}, error.status, headers=error.headers)


async def handle_request_error(_: Request, exc: RequestError) -> Response:
    """The app's RequestError handler: routes without a mapping of their own refuse plainly."""
    return error_response(exc)


def as_request_error(exc: Exception) -> RequestError | None:
    """A failure that is the request's fault although not raised as a RequestError (else None)."""
    if isinstance(exc, RecursionError):  # a payload nested deeper than any decoder walks
        return RequestError(400, "the request is nested too deeply to process", reason="bad_request")
    return None


class ErrorMappedRoute(APIRoute):
    """A route that answers its failures in its protocol's shape and counts them under LABEL.

    The one try/except around the endpoint, instead of one in each route: a RequestError keeps its status,
    a failure that is the client's becomes a 400, anything else is the model's or the user handler's fault:
    logged with its traceback and answered 500, never crashing the server. Subclasses set `answer`.
    """

    label: ClassVar[str]  # the route label of the vizsla_errors counter
    failure_log: ClassVar[str] = "handler failed"
    failure_prefix: ClassVar[str] = "model error: "  # before "<type>: <message>" of a model failure

    @staticmethod
    def answer(error: RequestError) -> Response:
        """The protocol's response to ERROR."""
        raise NotImplementedError

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def mapped(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # the user's handler or the model failed: report, never crash
                return self.failed(request, exc)

        return mapped

    def failed(self, request: Request, exc: Exception) -> Response:
        """EXC as the protocol's answer, counted by reason (model_error when it is not the client's)."""
        errors = state_of(request).metrics.errors
        error = exc if isinstance(exc, RequestError) else as_request_error(exc)
        if error is not None:
            errors.labels(self.label, error.reason).inc()
            return self.answer(error)
        log.error(self.failure_log, exc_info=exc)
        errors.labels(self.label, "model_error").inc()
        return self.answer(RequestError(500, f"{self.failure_prefix}{type(exc).__name__}: {exc}"))


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
