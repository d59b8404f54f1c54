"""Malformed protocol payloads and disconnecting clients against a real server: client faults are 4xx (or
499 for a client that left), never `500 model_error`, and never a traceback in the log."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from vizsla.serving.settings import ServeSettings
from vizsla.serving.testing import running_server
from vizsla.testing.cli import RecordingHandler

pytestmark = [pytest.mark.slow, pytest.mark.integration]

NAME = "tiny"
INFER = f"/v2/models/{NAME}/infer"


_Records = RecordingHandler


@pytest.fixture(scope="module")
def server(serving_job: Path) -> Iterator[str]:
    with running_server(ServeSettings(model_path=serving_job, model_name=NAME)) as (url, _):
        yield url


@pytest.fixture
def server_log() -> Iterator[_Records]:
    """Every record of the server's loggers (vizsla's and uvicorn's) while the test runs."""
    handler = _Records()
    loggers = [logging.getLogger(name) for name in ("vizsla.serving", "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield handler
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def _metric(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_a_client_leaving_mid_upload_is_counted_as_client_closed(server, server_log):
    port = int(server.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n"
        + b"\xff\xd8\xff0123456"
    )
    time.sleep(0.3)
    sock.close()  # 10 of 1,000 bytes, then gone
    closed = 'vizsla_errors_total{reason="client_closed",route="/invocations"}'
    deadline = time.monotonic() + 5
    while _metric(metrics := httpx.get(f"{server}/metrics").text, closed) < 1:
        assert time.monotonic() < deadline, "the disconnect was never counted as client_closed"
        time.sleep(0.05)
    assert 'reason="model_error"' not in metrics
    assert 'route="/invocations",status="499"' in metrics
    assert 'status="500"' not in metrics
    lines = [r for r in server_log.records if "closed the connection during the upload" in r.getMessage()]
    assert len(lines) == 1 and "10 of 1000 bytes" in lines[0].getMessage()
    assert not [r for r in server_log.records if r.exc_info or r.levelno >= logging.ERROR]


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "path,body,headers",
    [
        ("/invocations", DEEP, {"Content-Type": "application/json"}),
        ("/invocations", b'{"instances": ' + DEEP + b"}", {"Content-Type": "application/json"}),
        ("/invocations", b"[" * 900 + b"]" * 900, {"Content-Type": "application/json"}),  # parses, too deep
        (f"/endpoints/{NAME}/invocations", DEEP, {"Content-Type": "application/json"}),
        (INFER, DEEP, {}),
        (INFER, b'{"inputs": ' + DEEP + b"}", {}),
    ],
)
def test_deeply_nested_json_is_a_client_error(server, server_log, path, body, headers):
    response = httpx.post(f"{server}{path}", content=body, headers=headers, timeout=30)
    if path.startswith("/endpoints"):  # the runtime API wraps a model's 4xx in 424, as SageMaker does
        assert response.status_code == 424 and response.json()["OriginalStatusCode"] == 400
    else:
        assert response.status_code == 400, response.text
    text = response.text
    assert "RecursionError" not in text and ("nested" in text or "must be" in text), text
    assert not [r for r in server_log.records if r.exc_info or r.levelno >= logging.ERROR]


def _image_input(jpeg: bytes, **changes) -> dict:
    item = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(jpeg).decode()]}
    return {"inputs": [{**item, **changes}]}


def test_v2_holds_requests_to_the_models_declared_inputs(server, jpeg):
    b64 = base64.b64encode(jpeg).decode()
    with httpx.Client(base_url=server) as http:
        assert http.post(INFER, json=_image_input(jpeg)).status_code == 200
        declared = {item["name"] for item in http.get(f"/v2/models/{NAME}").json()["inputs"]}
        assert declared == {"image", "input"}
        wrong_name = http.post(INFER, json=_image_input(jpeg, name="pixels"))
        assert wrong_name.status_code == 400
        assert "'pixels'" in wrong_name.json()["error"] and '"image"' in wrong_name.json()["error"]
        nested = http.post(INFER, json=_image_input(jpeg, shape=[2], data=[[b64], [b64]]))
        assert nested.status_code == 400 and "nest" in nested.json()["error"], nested.text
        deeper = http.post(INFER, json=_image_input(jpeg, shape=[1], data=[[[b64]]]))
        assert deeper.status_code == 400, deeper.text
        rank = http.post(INFER, json=_image_input(jpeg, shape=[1, 1], data=[[b64]]))
        assert rank.status_code == 400 and "[-1]" in rank.json()["error"], rank.text
        tensor = {"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 0]}
        fp32_shape = http.post(INFER, json={"inputs": [tensor]})
        assert fp32_shape.status_code == 400 and "[-1, 3, 32, 32]" in fp32_shape.json()["error"]
        bad_id = http.post(INFER, json={**_image_input(jpeg), "id": {"x": 1}})
        assert bad_id.status_code == 400


def test_v2_and_invocations_agree_on_bad_base64(server):
    not_b64 = "this is not base64!"
    with httpx.Client(base_url=server) as http:
        image = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [not_b64]}
        v2 = http.post(INFER, json={"inputs": [image]})
        invocations = http.post("/invocations", json={"b64": not_b64})
    assert invocations.status_code == 400
    assert v2.status_code == 400, v2.text
    assert "base64" in v2.json()["error"]
    assert json.loads(invocations.text)["error"]
