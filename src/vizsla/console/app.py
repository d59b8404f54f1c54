"""The console's HTTP app: server-rendered pages (Jinja via vizsla.infra.rendering), report files, a form.

Pages: / (training and tuning jobs), /tuning/<path> (one tuning job), /endpoints (endpoints, traffic, the
image form). /files/<path> serves files under the runs folder only (resolved paths, so `..` and symlinks
out of it get 404). The form posts the image here; the console forwards it to the endpoint, as a
user's client would, and shows the prediction with the variant that answered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from vizsla.console.pages import endpoints_page, jobs_page, tuning_page
from vizsla.infra.rendering import render_template

MAX_UPLOAD = 8 * 1024 * 1024  # the form's image; an endpoint takes 6 MiB by default and says so above it


def _page(name: str, title: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """NAME rendered into the page frame (render_template has no loader for `extends`, so two renders)."""
    from markupsafe import Markup

    body = Markup(render_template("vizsla.console", name, {"title": title, **context}))
    html = render_template("vizsla.console", "base.html.j2", {"title": title, "content": body, **context})
    return HTMLResponse(html, status_code=status_code)


def safe_path(runs: Path, relative: str) -> Path | None:
    """RUNS/RELATIVE when it stays inside RUNS after resolving `..` and links, else None."""
    root = runs.resolve()
    try:
        candidate = (root / relative).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return candidate if candidate.is_relative_to(root) else None


def parse_upload(content_type: str, body: bytes) -> dict[str, tuple[str | None, str, bytes]]:
    """multipart/form-data fields as {name: (filename, content type, bytes)} (stdlib email parser)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    fields = {}
    if message.is_multipart():
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                data = part.get_payload(decode=True) or b""
                fields[str(name)] = (part.get_filename(), part.get_content_type(), data)
    return fields


def create_console_app(runs: Path) -> Starlette:
    """The console over the runs folder RUNS and this user's endpoint registry."""

    async def jobs(request: Request) -> Response:
        return _page("jobs.html.j2", "Training jobs", active="jobs", **jobs_page(runs))

    async def tuning(request: Request) -> Response:
        folder = safe_path(runs, request.path_params["path"])
        if folder is None or not (folder / "tune.yaml").is_file():
            return _page("missing.html.j2", "Not found", active="jobs", what="tuning job", status_code=404)
        page = tuning_page(folder, runs)
        return _page("tuning.html.j2", f"Tuning job {page['name']}", active="jobs", job=page)

    async def endpoints(request: Request) -> Response:
        return _page("endpoints.html.j2", "Endpoints", active="endpoints", answer=None, **endpoints_page())

    async def invoke(request: Request) -> Response:
        answer = await _invoke(request)
        return _page("endpoints.html.j2", "Endpoints", active="endpoints", answer=answer, **endpoints_page())

    async def files(request: Request) -> Response:
        path = safe_path(runs, request.path_params["path"])
        if path is None or not path.is_file():
            return _page("missing.html.j2", "Not found", active="jobs", what="file", status_code=404)
        return FileResponse(path)

    return Starlette(
        routes=[
            Route("/", jobs),
            Route("/tuning/{path:path}", tuning),
            Route("/endpoints", endpoints),
            Route("/endpoints/invoke", invoke, methods=["POST"]),
            Route("/files/{path:path}", files),
        ]
    )


async def _invoke(request: Request) -> dict[str, Any]:
    """Forward the form's image to the chosen endpoint; what it answered, or why it could not."""
    import httpx

    from vizsla.endpoints import read_record
    from vizsla.errors import UserError

    body = await request.body()
    if len(body) > MAX_UPLOAD:
        return _result(error=f"the image is over {MAX_UPLOAD // (1024 * 1024)} MiB")
    fields = parse_upload(request.headers.get("content-type", ""), body)
    name = fields.get("endpoint", (None, "", b""))[2].decode("utf-8", "replace").strip()
    filename, kind, image = fields.get("image", (None, "", b""))
    if not name or not image:
        return _result(error="choose an endpoint and an image file")
    try:
        record = read_record(name)
    except UserError as exc:
        return _result(endpoint=name, error=exc.message)
    headers = {"Accept": "application/json"}
    if kind and kind != "application/octet-stream":
        headers["Content-Type"] = kind  # else the endpoint sniffs the bytes, as for boto3's default
    try:
        async with httpx.AsyncClient(timeout=70.0) as client:
            reply = await client.post(f"{record['url']}/invocations", content=image, headers=headers)
    except httpx.HTTPError as exc:
        return _result(endpoint=name, filename=filename, error=f"{record['url']} did not answer: {exc}")
    return _answer(name, filename, reply)


def _answer(name: str, filename: str | None, reply: Any) -> dict[str, Any]:
    answer = _result(
        endpoint=name,
        filename=filename,
        status=reply.status_code,
        variant=reply.headers.get("x-amzn-invoked-production-variant"),
    )
    try:
        payload = reply.json()
    except (json.JSONDecodeError, ValueError):
        payload = None
    if reply.status_code >= 400 or not isinstance(payload, dict):
        answer["error"] = f"{reply.status_code}: {reply.text[:500]}"
        return answer
    predictions = payload.get("predictions") or []
    first = predictions[0] if predictions and isinstance(predictions[0], dict) else {}
    answer["label"] = first.get("label")
    answer["topk"] = [
        {"label": t.get("label"), "probability": f"{100 * float(t.get('probability', 0)):.1f}%"}
        for t in first.get("topk") or []
    ]
    answer["raw"] = json.dumps(payload)[:2000]
    return answer


def _result(**fields: Any) -> dict[str, Any]:
    """What the page shows of one form submission; every key present (the templates are strict)."""
    answer = dict.fromkeys(("endpoint", "filename", "status", "variant", "error", "label", "raw"))
    return {**answer, "topk": [], **fields}
