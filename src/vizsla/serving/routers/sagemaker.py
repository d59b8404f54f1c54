"""SageMaker's contracts: the container's /ping, /execution-parameters, /invocations, and the runtime API.

`POST /endpoints/{name}/invocations` is shaped as the SageMaker runtime API, so boto3's `invoke_endpoint`
(and the SDK's Predictor) can call this server as if it were a SageMaker endpoint: its errors carry the
x-amzn-ErrorType header and the JSON body boto3 parses into a ClientError. /invocations answers a failure
as `{"error": message, "code": status}`.
"""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from vizsla.serving.errors import RequestError
from vizsla.serving.routers.plumbing import ErrorMappedRoute, State, read_authorized_body, state_of
from vizsla.serving.state import ServerState


class _ContainerRoute(ErrorMappedRoute):
    """/invocations: a failure is `{"error", "code"}` JSON with its status."""

    label = "/invocations"

    @staticmethod
    def answer(error: RequestError) -> Response:
        body = {"error": error.message, "code": error.status}
        return JSONResponse(body, error.status, headers=error.headers)


class _RuntimeRoute(ErrorMappedRoute):
    """The runtime API: a failure is what boto3 parses from SageMaker, with a request id of its own."""

    label = "/endpoints/{name}/invocations"
    failure_prefix = ""  # the ModelError wrapper of _aws_error says it is the model's

    @staticmethod
    def answer(error: RequestError) -> Response:
        return _aws_error(error, str(uuid.uuid4()))


router = APIRouter()  # health and parameters: nothing in them fails
container = APIRouter(route_class=_ContainerRoute)
runtime = APIRouter(route_class=_RuntimeRoute)


@router.get("/ping")
async def ping(state: State) -> Response:
    return JSONResponse({"status": "Healthy"}) if state.ready else JSONResponse({"status": "Unhealthy"}, 503)


@router.get("/execution-parameters")
async def execution_parameters(state: State) -> Response:
    return JSONResponse(
        {
            "MaxConcurrentTransforms": 1,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": max(1, state.settings.max_payload_bytes // (1024 * 1024)),
        }
    )


async def _invoke(state: ServerState, request: Request, *, aws: bool) -> tuple[bytes, str]:
    """The answer and its content type for one invocation, read, authorized and run under the timeout."""
    body = await read_authorized_body(state, request, aws=aws)
    context = state.context(dict(request.query_params))
    return await state.with_timeout(
        state.invoke(
            body, request.headers.get("content-type", ""), request.headers.get("accept", ""), context
        )
    )


@container.post("/invocations")
async def invocations(request: Request) -> Response:
    payload, content_type = await _invoke(state_of(request), request, aws=False)
    return Response(payload, media_type=content_type)


@runtime.post("/endpoints/{name}/invocations")
async def invoke_endpoint(name: str, request: Request) -> Response:
    """boto3's invoke_endpoint: this server is the endpoint named as its model, with one variant."""
    state = state_of(request)
    if name != state.settings.model_name:
        raise RequestError(400, f"Endpoint {name} not found.", aws_code="ValidationError")
    payload, content_type = await _invoke(state, request, aws=True)
    return Response(
        payload,
        media_type=content_type,
        headers={"x-Amzn-Invoked-Production-Variant": "AllTraffic", "x-amzn-RequestId": str(uuid.uuid4())},
    )


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


ROUTES: list[BaseRoute] = [*router.routes, *container.routes, *runtime.routes]
