"""The Open Inference Protocol (KServe v2): server and model metadata, health, readiness and infer.

Every refusal here is `{"error": message}` with its status (v2's error body): the metadata routes leave it
to the app's RequestError handler, the infer routes map their failures themselves and count them. The
tensor contract (inputs, outputs, binary data) lives in serving/v2.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from vizsla import __version__
from vizsla.serving import v2
from vizsla.serving.errors import RequestError
from vizsla.serving.handler import RequestContext, decode_to_array
from vizsla.serving.routers.plumbing import (
    ErrorMappedRoute,
    State,
    authorize,
    error_response,
    read_authorized_body,
    state_of,
)
from vizsla.serving.state import ServerState


class _InferRoute(ErrorMappedRoute):
    """v2 infer, versioned or not: failures are v2 error bodies, counted under one route label."""

    label = "/v2/models/{name}/infer"
    failure_log = "inference failed"

    @staticmethod
    def answer(error: RequestError) -> Response:
        return v2_error(error)


def v2_error(error: RequestError) -> Response:
    """v2's error body: `{"error": message}`, the same as the server's plain refusal."""
    return error_response(error)


router = APIRouter()  # metadata and health: a RequestError goes to the app's handler
infer = APIRouter(route_class=_InferRoute)


@router.get("/v2")
async def v2_server() -> Response:
    return JSONResponse(v2.server_metadata(__version__))


@router.get("/v2/health/live")
async def v2_live() -> Response:
    return JSONResponse({"live": True})


@router.get("/v2/health/ready")
async def v2_ready(state: State) -> Response:
    return JSONResponse({"ready": state.ready}, 200 if state.ready else 503)


@router.get("/v2/models")
async def v2_models(request: Request, state: State) -> Response:
    await authorize(state, request, b"")
    return JSONResponse({"models": [state.settings.model_name]})


def _known_model(state: ServerState, name: str) -> None:
    """404 for another model's name, 400 for a script-mode endpoint (no tensor contract to offer)."""
    model_name = state.settings.model_name
    if name != model_name:
        raise RequestError(404, f"unknown model {name!r}; this server serves {model_name!r}")
    if state.script:
        raise RequestError(
            400,
            "the v2 protocol needs a vizsla model's tensor contract; this script-mode endpoint answers "
            f"/invocations and /endpoints/{model_name}/invocations",
        )


@router.get("/v2/models/{name}")
@router.get("/v2/models/{name}/versions/{version}")
async def v2_model(name: str, request: Request, state: State, version: str | None = None) -> Response:
    await authorize(state, request, b"")
    _known_model(state, name)
    return JSONResponse(v2.model_metadata(name, state.labels, state.preprocessing, state.runtime))


@router.get("/v2/models/{name}/ready")
@router.get("/v2/models/{name}/versions/{version}/ready")
async def v2_model_ready(name: str, request: Request, state: State, version: str | None = None) -> Response:
    await authorize(state, request, b"")
    _known_model(state, name)
    return JSONResponse({"name": name, "ready": state.ready}, 200 if state.ready else 503)


@infer.post("/v2/models/{name}/infer")
@infer.post("/v2/models/{name}/versions/{version}/infer")
async def v2_infer(name: str, request: Request, version: str | None = None) -> Response:
    state = state_of(request)
    # a wrong model name is refused before the upload, after the credentials
    body = await read_authorized_body(state, request, before=lambda: _known_model(state, name))
    parsed, kind, data = v2.parse_infer(body, request.headers.get(v2.HEADER_LENGTH), state.v2_inputs)
    context = state.context({})
    scores = np.asarray(await state.with_timeout(_forward(state, kind, data, context)), dtype=np.float32)
    payload, headers = await state.in_pool(v2.build_response, parsed, scores, state.labels, name)
    return Response(payload, headers=headers)


async def _forward(state: ServerState, kind: str, data: Any, context: RequestContext) -> Any:
    """Scores for a parsed request: image bytes are decoded in the pool first, a tensor goes as it is."""
    if kind == v2.INPUT_IMAGE:
        limit = state.settings.max_images_per_request
        if not data:
            raise RequestError(400, "no images in the request")
        if len(data) > limit:
            raise RequestError(413, f"{len(data)} images in one request; the limit is {limit}")
        arrays = await asyncio.gather(*(state.decode(decode_to_array, item, context) for item in data))
        images = np.stack(arrays)
    else:
        images = data
    return await state.predict(images, context)


ROUTES: list[BaseRoute] = [*router.routes, *infer.routes]
