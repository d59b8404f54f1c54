"""A missing or `*/*` Accept reaches a user's output_fn / transform_fn as the default (issue 17, item 6).

sagemaker-inference-toolkit `transformer.py` `Transformer.transform` swaps it for
$SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT (else application/json) before any handler runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from vizsla.serving.handler import Handler, RequestContext
from vizsla.serving.settings import ServeSettings
from vizsla.serving.testing import running_server
from vizsla.serving.toolkit import resolve_accept

STRICT = """
import json

def model_fn(model_dir):
    return lambda values: [2 * v for v in values]

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    return model(data)

def output_fn(prediction, accept):
    if accept == "application/json":
        return json.dumps({"accept": accept, "out": prediction}), accept
    if accept == "text/csv":
        return ",".join(str(v) for v in prediction), accept
    raise ValueError(f"Unsupported accept type: {accept}")
"""

TRANSFORM = """
import json

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    if accept != "application/json":
        raise ValueError(f"Unsupported accept type: {accept}")
    return json.dumps({"accept": accept})
"""


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0")
    return folder


def _settings(model_dir: Path, source: str, tmp_path: Path) -> ServeSettings:
    entry = tmp_path / "inference.py"
    entry.write_text(source)
    return ServeSettings(model_path=model_dir, model_name="strict", handler_path=entry)


def test_resolve_accept_follows_the_toolkit(monkeypatch):
    monkeypatch.delenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", raising=False)
    assert resolve_accept(None) == "application/json"
    assert resolve_accept("") == "application/json"
    assert resolve_accept("*/*") == "application/json"
    assert resolve_accept("text/csv") == "text/csv"
    # the toolkit compares the whole header with */*: a list is passed on as it is
    assert resolve_accept("text/csv, */*") == "text/csv, */*"
    monkeypatch.setenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
    assert resolve_accept("*/*") == "text/csv"


def test_boto3_without_accept_and_star_accept_reach_output_fn_as_json(model_dir, tmp_path, monkeypatch):
    import boto3

    monkeypatch.delenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", raising=False)
    with running_server(_settings(model_dir, STRICT, tmp_path)) as (url, _):
        client = boto3.client(
            "sagemaker-runtime",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="AKIDTEST",
            aws_secret_access_key="s3cret",
        )
        response = client.invoke_endpoint(
            EndpointName="strict", Body=json.dumps([1, 2]), ContentType="application/json"
        )
        assert response["ContentType"] == "application/json"
        assert json.loads(response["Body"].read()) == {"accept": "application/json", "out": [2, 4]}
        for accept in ("*/*", None):
            headers = {"content-type": "application/json"}
            if accept:
                headers["accept"] = accept
            answer = httpx.post(f"{url}/invocations", content=b"[3]", headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"accept": "application/json", "out": [6]}
        explicit = httpx.post(
            f"{url}/invocations",
            content=b"[3]",
            headers={"content-type": "application/json", "accept": "text/csv"},
        )
        assert explicit.status_code == 200 and explicit.text == "6"


def test_default_accept_comes_from_the_environment(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
    handler = Handler(_settings(model_dir, STRICT, tmp_path).handler_path, script=True)
    ctx = RequestContext(labels=[], preprocessing={}, model_name="m")
    assert handler.output([1, 2], "*/*", ctx) == (b"1,2", "text/csv")
    assert handler.output([1, 2], "", ctx) == (b"1,2", "text/csv")


def test_transform_fn_gets_the_default_accept(model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", raising=False)
    with running_server(_settings(model_dir, TRANSFORM, tmp_path)) as (url, _):
        for headers in ({"accept": "*/*"}, {}):
            answer = httpx.post(
                f"{url}/invocations", content=b"{}", headers={"content-type": "application/json", **headers}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"accept": "application/json"}
            assert answer.headers["content-type"].startswith("application/json")
