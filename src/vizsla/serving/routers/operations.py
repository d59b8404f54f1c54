"""What operators use: Prometheus /metrics, the page at / and its static files.

/metrics asks for the API keys (when configured) as inference does; the page and /static are public. A
refusal is the app's plain `{"error": ...}` body.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute

from vizsla.serving.routers.plumbing import State, authorize
from vizsla.serving.settings import ServeSettings

STATIC_DIR = Path(__file__).parent.parent / "static"

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request, state: State) -> Response:
    await authorize(state, request, b"")
    payload, content_type = state.metrics.render()
    return Response(payload, media_type=content_type)


@router.get("/")
async def index(state: State) -> Response:
    """The page (static/index.html) when there is one, else what this server serves, as JSON."""
    settings = state.settings
    page = (settings.static_dir or STATIC_DIR) / "index.html"
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


def mount_static(app: FastAPI, settings: ServeSettings) -> None:
    """Serve the page's static files under /static when their folder exists."""
    static_dir = settings.static_dir or STATIC_DIR
    if static_dir.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=static_dir), name="static")


ROUTES: list[BaseRoute] = list(router.routes)
