"""Script-mode serving: a training script's model.pth behind the script's own inference.py, via boto3."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vizsla.errors import UserError
from vizsla.serving.handler import Handler
from vizsla.serving.settings import ServeSettings
from vizsla.serving.testing import running_server
from vizsla.serving.toolkit import (
    body_for_user,
    resolve_artefact_dir,
    toolkit_input_fn,
    toolkit_output_fn,
)

SCRIPTS = Path(__file__).parent / "scripts"
NAME = "dogbreeds"


def _boto(url: str):
    import boto3

    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="s3cret",
    )


@pytest.fixture(scope="module")
def script_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hpo.py run as SageMaker runs it (SM_* channels, model dir): a job folder whose model/ has model.pth."""
    from vizsla.testing.images import make_image_folder

    root = tmp_path_factory.mktemp("served-script")
    data = make_image_folder(root / "data", classes=("cat", "dog"), per_class=8, seed=0)
    job = root / "job"
    (job / "model").mkdir(parents=True)
    (job / "output").mkdir()
    env = {
        **os.environ,
        "SM_CHANNEL_TRAINING": str(data / "train"),
        "SM_CHANNEL_TEST": str(data / "valid"),
        "SM_MODEL_DIR": str(job / "model"),
        "PYTHONUNBUFFERED": "1",
    }
    done = subprocess.run(
        [sys.executable, "hpo.py", "--epochs", "2", "--lr", "0.01"],
        cwd=SCRIPTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Test set: Average loss:" in done.stdout
    return job


def _jpeg(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 32), color).save(buffer, "JPEG")
    return buffer.getvalue()


def _expected(job: Path, body: bytes) -> list[float]:
    """The probabilities the script's own functions give in-process (what the endpoint must return)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import importlib

        inference = importlib.import_module("inference")
        model = inference.model_fn(str(job / "model"))
        out = inference.output_fn(inference.predict_fn(inference.input_fn(body, "image/jpeg"), model))
    finally:
        sys.path.remove(str(SCRIPTS))
    return json.loads(out[0])["probabilities"]


def test_boto3_invoke_endpoint_through_the_scripts_inference_py(script_job):
    from botocore.exceptions import ClientError

    settings = ServeSettings(
        model_path=script_job,
        model_name=NAME,
        handler_path=Path("inference.py"),
        handler_source_dir=SCRIPTS,
        max_payload_bytes=200_000,
    )
    with running_server(settings) as (url, app):
        state = app.state.vizsla
        assert state.script and state.model_dir == (script_job / "model").resolve()
        client = _boto(url)
        for color in ((230, 40, 40), (40, 40, 230)):
            body = _jpeg(color)
            response = client.invoke_endpoint(
                EndpointName=NAME, Body=body, ContentType="image/jpeg", Accept="application/json"
            )
            assert response["ContentType"] == "application/json"
            answer = json.loads(response["Body"].read())
            assert answer["label"] in ("cat", "dog")
            assert answer["probabilities"] == pytest.approx(_expected(script_job, body), abs=1e-6)
        # JSON reaches input_fn as str (json.loads of the decoded text)
        response = client.invoke_endpoint(
            EndpointName=NAME, Body=json.dumps({"color": [10, 200, 10]}), ContentType="application/json"
        )
        assert len(json.loads(response["Body"].read())["probabilities"]) == 2
        # the script raises for a type it does not handle: boto3's ModelError (424), message, no traceback
        with pytest.raises(ClientError) as info:
            client.invoke_endpoint(EndpointName=NAME, Body=b"a,b", ContentType="text/csv")
        error = info.value.response
        assert error["Error"]["Code"] == "ModelError"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
        assert "unsupported ContentType" in error["Error"]["Message"]
        assert "Traceback" not in json.dumps(error)
        # the endpoint's own limits still apply before the script runs
        with pytest.raises(ClientError) as info:
            client.invoke_endpoint(EndpointName=NAME, Body=b"\xff" * 300_000, ContentType="image/jpeg")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
        # and it keeps serving
        ok = client.invoke_endpoint(EndpointName=NAME, Body=_jpeg((1, 2, 3)), ContentType="image/jpeg")
        assert ok["ResponseMetadata"]["HTTPStatusCode"] == 200
        import httpx

        plain = httpx.post(f"{url}/invocations", content=b"x", headers={"content-type": "text/plain"})
        assert plain.status_code == 500 and "unsupported ContentType" in plain.json()["error"]
        assert httpx.post(f"{url}/v2/models/{NAME}/infer", json={}).status_code == 400


def test_missing_model_fn_and_failing_model_fn_are_user_errors(script_job, tmp_path):
    from vizsla.serving.app import ServerState

    no_model = tmp_path / "no_model_fn.py"
    no_model.write_text("def predict_fn(data, model):\n    return model(data)\n")
    # the default model_fn (the toolkit's) loads TorchScript only; hpo.py saved a state_dict
    with pytest.raises(UserError, match="model.pth is not a TorchScript file"):
        ServerState(ServeSettings(model_path=script_job, handler_path=no_model))
    broken = tmp_path / "broken_model_fn.py"
    broken.write_text(
        "import os\n\ndef model_fn(model_dir):\n    return open(os.path.join(model_dir, 'x.pt'))\n"
    )
    with pytest.raises(UserError, match="model_fn in .* failed on .*FileNotFoundError"):
        ServerState(ServeSettings(model_path=script_job, handler_path=broken))


def test_toolkit_defaults_and_str_bodies(script_job, tmp_path):
    """Only model_fn defined: the toolkit's JSON/CSV/NPY decode, model(data), JSON/CSV/NPY encode."""
    import torch

    from vizsla.serving.app import ServerState
    from vizsla.serving.errors import RequestError
    from vizsla.serving.handler import RequestContext

    entry = tmp_path / "linear.py"
    entry.write_text(
        "import torch\n\ndef model_fn(model_dir, context):\n"
        "    layer = torch.nn.Linear(2, 1, bias=False)\n"
        "    layer.weight.data[:] = torch.tensor([[1.0, 2.0]])\n    return layer\n"
    )
    state = ServerState(ServeSettings(model_path=script_job / "model", handler_path=entry))
    ctx = RequestContext(labels=[], preprocessing={}, model_name="m")
    handler = state.handler
    data = handler.input(b"[[1, 1], [2, 3]]", "application/json", ctx)
    prediction = handler.predict(data, state.model, ctx)
    assert handler.output(prediction, "application/json", ctx) == (b"[[3.0], [8.0]]", "application/json")
    body, ctype = handler.output(
        handler.predict(handler.input(b"1,1\n2,3\n", "text/csv", ctx), state.model, ctx), "text/csv", ctx
    )
    assert ctype == "text/csv" and body.decode().split() == ["3.0", "8.0"]
    buffer = io.BytesIO()
    np.save(buffer, np.ones((1, 2), np.float32))
    npy = handler.output(
        handler.predict(handler.input(buffer.getvalue(), "application/x-npy", ctx), state.model, ctx),
        "application/x-npy",
        ctx,
    )
    assert np.load(io.BytesIO(npy[0])).tolist() == [[3.0]]
    with pytest.raises(RequestError) as info:
        toolkit_input_fn(b"\xff\xd8", "image/jpeg")
    assert info.value.status == 415
    with pytest.raises(RequestError) as info:
        toolkit_output_fn(torch.zeros(1), "text/html")
    assert info.value.status == 406
    # a user's input_fn sees str for JSON and CSV, bytes otherwise (the toolkit's UTF8_TYPES)
    echo = tmp_path / "echo.py"
    echo.write_text(
        "def model_fn(model_dir):\n    return None\n\n"
        "def input_fn(body, content_type):\n    return type(body).__name__\n\n"
        "def predict_fn(data, model):\n    return data\n\n"
        "def output_fn(prediction, accept):\n    return prediction\n"
    )
    echo_handler = Handler(echo, script=True)
    assert echo_handler.input(b"{}", "application/json; charset=utf-8", ctx) == "str"
    assert echo_handler.input(b"1,2", "text/csv", ctx) == "str"
    assert echo_handler.input(b"\xff\xd8", "image/jpeg", ctx) == "bytes"
    assert body_for_user(b"{}", "application/x-npy") == b"{}"
    with pytest.raises(RequestError):
        body_for_user(b"\xff\xfe", "application/json")


def test_artefact_dir_and_export_refusal(script_job, tmp_path):
    from vizsla.serving.export import export_model

    assert resolve_artefact_dir(script_job) == (script_job / "model").resolve()
    assert resolve_artefact_dir(script_job / "model") == (script_job / "model").resolve()
    with pytest.raises(UserError, match="not found"):
        resolve_artefact_dir(tmp_path / "missing")
    with pytest.raises(UserError, match="cannot be exported to ONNX"):
        export_model(script_job)


def test_cli_entry_point_alias_and_help():
    from typer.testing import CliRunner

    from vizsla.cli.app import app

    result = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--entry-point" in result.output and "--source-dir" in result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "no ONNX export is possible" in text


def test_torchscript_model_pt_is_served_without_an_entry_point(tmp_path):
    """The PyTorch toolkit's default model_fn: a script that saved TorchScript model.pt needs no inference.py;
    the SDK's default NPY body and JSON both work through a real endpoint (boto3)."""
    import torch

    job = tmp_path / "job"
    (job / "model").mkdir(parents=True)
    (job / "output").mkdir()
    layer = torch.nn.Linear(2, 1, bias=False)
    layer.weight.data[:] = torch.tensor([[1.0, 2.0]])
    torch.jit.save(torch.jit.script(layer), str(job / "model" / "model.pt"))
    with running_server(ServeSettings(model_path=job, model_name=NAME)) as (url, _app):
        client = _boto(url)
        answer = client.invoke_endpoint(
            EndpointName=NAME, Body=b"[[1, 1], [2, 3]]", ContentType="application/json"
        )
        assert json.loads(answer["Body"].read()) == [[3.0], [8.0]]
        buffer = io.BytesIO()
        np.save(buffer, np.ones((1, 2), np.float32))
        answer = client.invoke_endpoint(
            EndpointName=NAME, Body=buffer.getvalue(), ContentType="application/x-npy",
            Accept="application/x-npy",
        )  # fmt: skip
        assert np.load(io.BytesIO(answer["Body"].read())).tolist() == [[3.0]]


def test_default_model_fn_names_what_it_cannot_load(tmp_path):
    import torch

    from vizsla.serving.toolkit import toolkit_model_fn

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(torch.nn.Linear(2, 1).state_dict(), pickled / "model.pth")
    with pytest.raises(UserError, match="model.pth is not a TorchScript file") as info:
        toolkit_model_fn(str(pickled))
    assert "model_fn(model_dir)" in info.value.hint
    several = tmp_path / "several"
    several.mkdir()
    (several / "a.pt").write_bytes(b"x")
    (several / "b.pth").write_bytes(b"y")
    with pytest.raises(UserError, match="found a.pt, b.pth"):
        toolkit_model_fn(str(several))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no TorchScript model file"):
        toolkit_model_fn(str(empty))


def test_handler_imports_smdebug_and_sagemaker_and_finds_this_python_first(script_job, tmp_path):
    """SageMaker's inference containers ship smdebug and the SDK, and their Python's bin leads PATH: a handler
    that imports both at the top and shells out to `python` (as `pip install` in model_fn does) gets them."""
    from vizsla.serving.app import ServerState

    handler = tmp_path / "inference.py"
    handler.write_text(
        "import json, shutil, subprocess\n"
        "import smdebug.pytorch as smd\n"
        "from smdebug import modes\n"
        "import sagemaker\n"
        "from sagemaker.debugger import DebuggerHookConfig\n\n"
        "def model_fn(model_dir):\n"
        "    out = subprocess.run(['python', '-c', 'import sys; print(sys.prefix)'],\n"
        "                         capture_output=True, text=True, check=True).stdout.strip()\n"
        "    return {'prefix': out, 'mode': str(modes.TRAIN)}\n\n"
        "def predict_fn(data, model):\n"
        "    return [model['prefix'], model['mode']]\n"
    )
    previous_path, previous_sys_path = os.environ["PATH"], list(sys.path)
    previous_modules = set(sys.modules)
    # a PATH whose first python is another interpreter (as on a machine with a system Python first)
    os.environ["PATH"] = os.pathsep.join(["/usr/bin", previous_path])
    try:
        state = ServerState(ServeSettings(model_path=script_job, handler_path=handler))
        prefix, mode = state.handler.fns["predict_fn"](None, state.model)
    finally:
        # this test process is not a handler process: the shims leave its path again
        os.environ["PATH"], sys.path[:] = previous_path, previous_sys_path
        for name in set(sys.modules) - previous_modules:
            if name.split(".")[0] in ("smdebug", "sagemaker"):
                del sys.modules[name]
    assert prefix == sys.prefix
    assert "TRAIN" in mode
