"""A real server on a real port: boto3 invoke_endpoint, KServe v2, every refusal, auth, metrics."""

from __future__ import annotations

import base64
import csv
import io
import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from vizsla.serving.settings import ServeSettings
from vizsla.serving.testing import running_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]

NAME = "tiny"


@pytest.fixture(scope="module")
def served_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny job (3 classes, 32 px test model) with model/, spec.yaml and data/split.csv."""
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec
    from vizsla.testing.images import make_image_folder
    from vizsla.testing.jobs import tiny_spec_dict

    root = tmp_path_factory.mktemp("served")
    data = make_image_folder(root / "data", classes=("cat", "dog", "fox"), per_class=10, seed=0)
    result = run_job(build_spec(tiny_spec_dict(data, root / "job", epochs=6)), progress=False)
    assert result["status"] == "Completed", result
    return root / "job"


@pytest.fixture(scope="module")
def server(served_job: Path):
    settings = ServeSettings(
        model_path=served_job, model_name=NAME, max_payload_bytes=100_000, allow_url_fetch=True
    )
    with running_server(settings) as (url, app):
        yield url, app


def _split(job: Path, split: str) -> list[tuple[Path, str]]:
    import yaml

    root = Path(yaml.safe_load((job / "spec.yaml").read_text())["data"]["root"])
    with open(job / "data" / "split.csv", newline="") as handle:
        return [(root / r["path"], r["label"]) for r in csv.DictReader(handle) if r["split"] == split]


def _in_process_labels(job: Path, images: list[bytes]) -> list[str]:
    import torch

    import vizsla
    from vizsla.data.decode import decode_image
    from vizsla.data.transforms import create_transform, draft_size_for

    model = vizsla.load_model(job)
    transform = create_transform(model.preprocessing, train=False, augment=False, hflip=False)
    draft = draft_size_for(model.preprocessing)
    batch = torch.stack([transform(decode_image(b, max_pixels=10**8, draft_size=draft)) for b in images])
    with torch.inference_mode():
        return [model.labels[i] for i in model(batch).argmax(1).tolist()]


def _boto(url: str, **kw):
    import boto3

    options = {
        "region_name": "us-east-1",
        "aws_access_key_id": "AKIDTEST",
        "aws_secret_access_key": "s3cret",
        **kw,
    }
    return boto3.client("sagemaker-runtime", endpoint_url=url, **options)


def _jpegs(job: Path, count: int = 6) -> list[bytes]:
    return [p.read_bytes() for p, _ in _split(job, "test") if p.suffix == ".jpg"][:count]


def test_boto3_invoke_endpoint_matches_load_model(server, served_job):
    url, app = server
    assert app.state.vizsla.runtime == "onnx"
    images = _jpegs(served_job)
    expected = _in_process_labels(served_job, images)
    client = _boto(url)
    got = []
    for body in images:
        response = client.invoke_endpoint(
            EndpointName=NAME, Body=body, ContentType="image/jpeg", Accept="application/json"
        )
        assert response["ContentType"] == "application/json"
        assert response["InvokedProductionVariant"] == "AllTraffic"
        got.append(json.loads(response["Body"].read())["predictions"][0]["label"])
    assert got == expected
    # no ContentType at all (boto3's default): the server sniffs the JPEG
    sniffed = json.loads(client.invoke_endpoint(EndpointName=NAME, Body=images[0])["Body"].read())
    assert sniffed["predictions"][0]["label"] == expected[0]


def test_v2_infer_json_binary_and_tensor(server, served_job):
    url, _ = server
    images = _jpegs(served_job, 3)
    expected = _in_process_labels(served_job, images)
    labels = ["cat", "dog", "fox"]
    with httpx.Client(base_url=url) as http:
        assert http.get("/v2/health/live").json() == {"live": True}
        assert http.get("/v2/health/ready").json() == {"ready": True}
        assert http.get(f"/v2/models/{NAME}/ready").status_code == 200
        meta = http.get(f"/v2/models/{NAME}").json()
        assert meta["outputs"][0]["shape"] == [-1, 3]
        request = {
            "id": "r1",
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [3],
                    "data": [base64.b64encode(b).decode() for b in images],
                }
            ],
        }
        answer = http.post(f"/v2/models/{NAME}/infer", json=request).json()
        assert answer["id"] == "r1"
        scores = np.asarray(answer["outputs"][0]["data"]).reshape(answer["outputs"][0]["shape"])
        assert [labels[i] for i in scores.argmax(1)] == expected
        # raw binary request: the body is the JPEG, the answer a JSON header + FP32 tensor
        raw = http.post(
            f"/v2/models/{NAME}/infer", content=images[0], headers={"Inference-Header-Content-Length": "0"}
        )
        size = int(raw.headers["inference-header-content-length"])
        probs = np.frombuffer(raw.content[size:], "<f4")
        assert labels[int(probs.argmax())] == expected[0]
        # binary extension with BYTES elements, classification output
        blob = b"".join(struct.pack("<I", len(b)) + b for b in images)
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "BYTES",
                        "shape": [3],
                        "parameters": {"binary_data_size": len(blob)},
                    }
                ],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 1}}],
            }
        ).encode()
        classified = http.post(
            f"/v2/models/{NAME}/infer",
            content=header + blob,
            headers={
                "Inference-Header-Content-Length": str(len(header)),
                "Content-Type": "application/octet-stream",
            },
        ).json()
        assert [s.split(":")[2] for s in classified["outputs"][0]["data"]] == expected
        # FP32 tensor, already preprocessed
        tensor = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).round(2).astype(np.float32)
        fp32 = http.post(
            f"/v2/models/{NAME}/infer",
            json={
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": [1, 3, 32, 32],
                        "data": tensor.reshape(-1).tolist(),
                    }
                ]
            },
        )
        assert fp32.status_code == 200 and fp32.json()["outputs"][0]["shape"] == [1, 3]
        for bad, status in ((b"{", 400), (json.dumps({"inputs": []}).encode(), 400)):
            error = http.post(f"/v2/models/{NAME}/infer", content=bad)
            assert error.status_code == status and "error" in error.json()
        assert http.post("/v2/models/other/infer", json=request).status_code == 404


def test_boto3_error_codes_and_the_server_keeps_serving(server, served_job):
    from botocore.exceptions import ClientError

    url, _ = server
    client = _boto(url)
    good = _jpegs(served_job, 1)[0]
    cases = [
        (
            dict(EndpointName=NAME, Body=b"\xff\xd8\xff\xe0 not really", ContentType="image/jpeg"),
            "ModelError",
            400,
        ),
        (dict(EndpointName=NAME, Body=b"hello", ContentType="text/csv"), "ModelError", 415),
        (dict(EndpointName=NAME, Body=good, ContentType="image/jpeg", Accept="text/html"), "ModelError", 406),
        (
            dict(EndpointName=NAME, Body=b"\xff\xd8\xff" + b"0" * 200_000, ContentType="image/jpeg"),
            "ValidationError",
            None,
        ),
        (dict(EndpointName="nope", Body=good, ContentType="image/jpeg"), "ValidationError", None),
    ]
    for kwargs, code, original in cases:
        with pytest.raises(ClientError) as info:
            client.invoke_endpoint(**kwargs)
        error = info.value.response
        assert error["Error"]["Code"] == code, error
        if original is not None:
            assert error["OriginalStatusCode"] == original
            assert f"({original})" in error["Error"]["Message"]
            assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
        assert (
            client.invoke_endpoint(EndpointName=NAME, Body=good)["ResponseMetadata"]["HTTPStatusCode"] == 200
        )


def test_container_route_statuses_and_the_server_keeps_serving(server, served_job):
    url, _ = server
    good = _jpegs(served_job, 1)[0]

    def chunks():
        for _ in range(30):
            yield b"0" * 10_000

    bomb = io.BytesIO()
    from PIL import Image

    Image.new("L", (9000, 9000)).save(bomb, "PNG")  # 81 MP > the 40 MP limit, ~80 kB on the wire
    cases = [
        ({"content": b"\xff\xd8\xff" + b"0" * 100_001, "headers": {"Content-Type": "image/jpeg"}}, 413),
        ({"content": chunks(), "headers": {"Content-Type": "image/jpeg"}}, 413),  # chunked: no Content-Length
        ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"content": b"GIF89a" + b"0" * 50, "headers": {"Content-Type": "image/gif"}}, 415),
        ({"content": b"\x89PNG\r\n\x1a\n broken", "headers": {"Content-Type": "image/png"}}, 400),
        ({"content": bomb.getvalue(), "headers": {"Content-Type": "image/png"}}, 400),
        ({"json": {"url": "http://127.0.0.1:1/cat.jpg"}}, 400),
        ({"json": {"url": "http://169.254.169.254/latest/meta-data/"}}, 400),
        ({"content": good, "headers": {"Accept": "text/csv"}}, 406),
        ({"content": good, "params": {"topk": "x"}}, 400),
    ]
    with httpx.Client(base_url=url, timeout=30) as http:
        for kwargs, status in cases:
            response = http.post("/invocations", **kwargs)
            assert response.status_code == status, (kwargs.get("headers"), response.text)
            assert response.json()["error"]
            ok = http.post("/invocations", content=good, params={"topk": 2})
            assert ok.status_code == 200 and len(ok.json()["predictions"][0]["topk"]) == 2
        refused = http.post("/invocations", json={"url": "http://127.0.0.1:1/cat.jpg"}).json()["error"]
        assert "loopback" in refused
        bomb_reason = http.post("/invocations", content=bomb.getvalue()).json()["error"]
        assert "decompression bomb" in bomb_reason
        npy = io.BytesIO()
        np.save(npy, np.zeros((2, 3, 32, 32), np.float32))
        answer = http.post(
            "/invocations",
            content=npy.getvalue(),
            headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"},
        )
        assert np.load(io.BytesIO(answer.content)).shape == (2, 3)
        full = http.post("/invocations?verbose=full", content=good).json()
        assert len(full["predictions"][0]["scores"]) == 3 and full["labels"] == ["cat", "dog", "fox"]
        assert http.get("/ping").status_code == 200


def test_metrics_count_requests_and_batches(server, served_job):
    url, _ = server
    good = _jpegs(served_job, 1)[0]

    def value(text: str, prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    with httpx.Client(base_url=url) as http:
        before = http.get("/metrics").text
        for _ in range(3):
            http.post("/invocations", content=good)
        http.post("/invocations", content=b"nope", headers={"Content-Type": "text/plain"})
        after = http.get("/metrics").text
    ok = 'vizsla_requests_total{method="POST",route="/invocations",status="200"}'
    refused = 'vizsla_requests_total{method="POST",route="/invocations",status="415"}'
    assert value(after, ok) - value(before, ok) == 3
    assert value(after, refused) - value(before, refused) == 1
    assert value(after, "vizsla_batch_size_count") - value(before, "vizsla_batch_size_count") >= 3
    assert value(after, 'vizsla_errors_total{reason="unsupported_type"') >= 1
    assert "vizsla_request_duration_seconds_bucket" in after


def test_api_key_and_sigv4_auth(served_job):
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError

    settings = ServeSettings(
        model_path=served_job, model_name=NAME, api_keys=["k3y"], sigv4_credentials={"AKIDTEST": "s3cret"}
    )
    good = _jpegs(served_job, 1)[0]
    with running_server(settings) as (url, _), httpx.Client(base_url=url) as http:
        assert http.get("/ping").status_code == 200
        assert http.post("/invocations", content=good).status_code == 401
        assert http.post("/invocations", content=good, headers={"X-Api-Key": "bad"}).status_code == 403
        assert http.post("/invocations", content=good, headers={"X-Api-Key": "k3y"}).status_code == 200
        assert (
            http.post("/invocations", content=good, headers={"Authorization": "Bearer k3y"}).status_code
            == 200
        )
        assert http.get("/metrics").status_code == 401
        signed = _boto(url).invoke_endpoint(EndpointName=NAME, Body=good, ContentType="image/jpeg")
        assert signed["ResponseMetadata"]["HTTPStatusCode"] == 200
        for client, code, status in (
            (_boto(url, aws_secret_access_key="wrong"), "InvalidSignatureException", 403),
            (_boto(url, aws_access_key_id="AKIDOTHER"), "UnrecognizedClientException", 403),
            (
                _boto(url, config=Config(signature_version=UNSIGNED)),
                "MissingAuthenticationTokenException",
                401,
            ),
        ):
            with pytest.raises(ClientError) as info:
                client.invoke_endpoint(EndpointName=NAME, Body=good, ContentType="image/jpeg")
            assert info.value.response["Error"]["Code"] == code
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_handler_file_with_only_output_fn(served_job, tmp_path):
    handler = tmp_path / "inference.py"
    handler.write_text(
        "import json\n\n\ndef output_fn(prediction, accept):\n"
        "    return json.dumps({'best': int(prediction.argmax(1)[0]), 'n': len(prediction)}), "
        "'application/json'\n"
    )
    good = _jpegs(served_job, 1)[0]
    expected = ["cat", "dog", "fox"].index(_in_process_labels(served_job, [good])[0])
    settings = ServeSettings(model_path=served_job, model_name=NAME, handler_path=handler, runtime="torch")
    with running_server(settings) as (url, app), httpx.Client(base_url=url) as http:
        assert app.state.vizsla.batchable  # input_fn and predict_fn stay ours: still batched
        assert http.post("/invocations", content=good).json() == {"best": expected, "n": 1}


def test_onnx_runtime_and_torch_agree_on_the_test_split(served_job):
    from vizsla.serving.export import accuracy
    from vizsla.serving.runtime import load_served_model

    onnx = load_served_model(served_job, runtime="onnx")
    torch_model = load_served_model(served_job, runtime="torch")
    assert onnx.runtime == "onnx" and onnx.check["agree"] and torch_model.runtime == "torch"
    items = _split(served_job, "test")
    predictions = {}
    for name, model in (("onnx", onnx), ("torch", torch_model)):
        seen: list[int] = []
        accuracy(
            lambda batch, m=model, s=seen: (s.extend(m.predict(batch).argmax(1).tolist()), m.predict(batch))[
                1
            ],
            items,
            model.labels,
            model.preprocessing,
        )
        predictions[name] = seen
    assert len(predictions["onnx"]) == len(items) == 30
    assert predictions["onnx"] == predictions["torch"]


def test_export_cli_int8_reports_accuracy_change(served_job, tmp_path):
    import typer
    from typer.testing import CliRunner

    from vizsla.cli.serve import export

    app = typer.Typer()
    app.command()(export)
    result = CliRunner().invoke(
        app,
        [
            str(served_job),
            "--format",
            "onnx",
            "--quantize",
            "int8",
            "--output",
            str(tmp_path / "m.int8.onnx"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "test accuracy on 30 images: fp32" in result.output and "int8" in result.output
    assert (tmp_path / "m.int8.onnx").stat().st_size > 0


def test_predictor_client_and_predict_cli(server, served_job):
    import typer
    from typer.testing import CliRunner

    import vizsla.serving.client as client_module
    from vizsla.cli.serve import predict

    url, _ = server
    path = _split(served_job, "test")[0][0]
    expected = _in_process_labels(served_job, [path.read_bytes()])[0]
    with client_module.Predictor(url) as client:
        assert client.health()
        assert client.predict(path, topk=2)["label"] == expected
        with pytest.raises(client_module.PredictionError) as info:
            client.predict(b"garbage")
        assert info.value.status == 415
    app = typer.Typer()
    app.command()(predict)
    result = CliRunner().invoke(app, ["--endpoint", url, "--topk", "3", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{path}: {expected} ")


def test_request_timeout_and_a_failing_handler(served_job, tmp_path):
    from botocore.exceptions import ClientError

    handler = tmp_path / "slow.py"
    handler.write_text(
        "import time\n\n\ndef predict_fn(data, model):\n"
        "    if len(data) > 1:\n        raise RuntimeError('two is too many')\n"
        "    time.sleep(1.5)\n    return model.predict(data)\n"
    )
    good = _jpegs(served_job, 2)
    settings = ServeSettings(
        model_path=served_job, model_name=NAME, handler_path=handler, runtime="torch", request_timeout_s=0.5
    )
    with running_server(settings) as (url, app), httpx.Client(base_url=url, timeout=30) as http:
        assert not app.state.vizsla.batchable
        slow = http.post("/invocations", content=good[0])
        assert slow.status_code == 504 and "0.5 s" in slow.json()["error"]
        with pytest.raises(ClientError) as info:
            _boto(url).invoke_endpoint(EndpointName=NAME, Body=good[0], ContentType="image/jpeg")
        assert info.value.response["Error"]["Code"] == "ModelError"
        assert info.value.response["OriginalStatusCode"] == 504
        import base64

        time.sleep(3.5)  # the timed-out calls still occupy the one inference thread until they finish
        two = {"instances": [{"b64": base64.b64encode(b).decode()} for b in good]}
        failed = http.post("/invocations", json=two)
        assert failed.status_code == 500 and "two is too many" in failed.json()["error"]
        assert "Traceback" not in failed.text
        assert http.get("/ping").status_code == 200


def test_serve_best_trial_and_sigterm_drains_in_flight_requests(tmp_path):
    """`vizsla serve TUNE_DIR --best` serves the best trial's model; SIGTERM lets a request in flight finish
    (uvicorn's graceful shutdown) before the server exits."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import threading

    import yaml

    from vizsla.testing.images import make_image_folder
    from vizsla.testing.jobs import tiny_spec_dict

    data = make_image_folder(tmp_path / "data", classes=("cat", "dog", "fox"), per_class=10, seed=0)
    training = tiny_spec_dict(data, tmp_path / "unused", epochs=3)
    training.pop("output")
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {"ranges": {"lr": {"type": "Continuous", "min": 1e-3, "max": 1e-1, "scaling": "Logarithmic"}},
             "training": training}
        )  # fmt: skip
    )
    tune = tmp_path / "tune"
    done = subprocess.run(
        [sys.executable, "-m", "vizsla", "tune", "--space", str(space), "--output", str(tune),
         "--max-jobs", "2", "--strategy", "Random", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    from vizsla.tuning.job import read_tune_result

    best = read_tune_result(tune)["best"]  # trial paths are relative to the tuning folder on disk

    slow = tmp_path / "slow.py"  # keeps one request in flight long enough to stop the server under it
    slow.write_text(
        "import time\n\n\ndef predict_fn(data, model):\n    time.sleep(2.0)\n    return model.predict(data)\n"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vizsla", "serve", str(tune), "--best", "--port", str(port),
             "--host", "127.0.0.1", "--handler", str(slow), "--runtime", "torch"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "500"},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.25)
        image = _jpegs(Path(best["job_dir"]), 1)[0]
        answers: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{url}/invocations", content=image, timeout=30))
        )
        request.start()
        time.sleep(0.5)  # the request is in predict_fn now
        proc.send_signal(signal.SIGTERM)
        request.join(timeout=30)
        # uvicorn drains, then re-raises the signal so a supervisor sees how the server ended
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()[-3000:]
        assert "Finished server process" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answers and answers[0].status_code == 200, answers  # answered, though SIGTERM came first
    served = Path(best["job_dir"])
    assert f"serving {served}" in log.read_text()
    assert answers[0].json()["predictions"][0]["label"] == _in_process_labels(served, [image])[0]


def test_int8_export_is_served_and_scores_what_the_export_measured(served_job):
    from vizsla.errors import UserError
    from vizsla.serving.export import export_model
    from vizsla.serving.runtime import INT8_FILE, INT8_REPORT, load_served_model

    model_dir = served_job / "model"
    for leftover in (INT8_FILE, INT8_REPORT):
        (model_dir / leftover).unlink(missing_ok=True)
    with pytest.raises(UserError, match="no int8 model") as refused:
        load_served_model(served_job, runtime="onnx-int8")
    assert "--quantize int8" in str(refused.value)
    cli = subprocess.run(
        [sys.executable, "-m", "vizsla", "serve", str(served_job), "--runtime", "onnx-int8", "--port", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 2 and "has no int8 model" in cli.stderr and "Traceback" not in cli.stderr

    report = export_model(served_job, quantize="int8", echo=lambda _: None)
    assert report["output"] == str(model_dir / INT8_FILE) and report["split"] == "test"
    test_images = _split(served_job, "test")
    settings = ServeSettings(model_path=served_job, model_name=NAME, runtime="onnx-int8")
    with running_server(settings) as (url, _), httpx.Client(base_url=url, timeout=30) as http:
        assert http.get(f"/v2/models/{NAME}").json()["platform"] == "onnxruntime_onnx"
        labels = [
            http.post("/invocations", content=path.read_bytes()).json()["predictions"][0]["label"]
            for path, _ in test_images
        ]
    right = sum(got == want for got, (_, want) in zip(labels, test_images, strict=True))
    served_accuracy = right / len(labels)
    assert served_accuracy == pytest.approx(report["int8_accuracy"])  # the export measured what is served

    saved = json.loads((model_dir / INT8_REPORT).read_text())
    (model_dir / INT8_REPORT).write_text(json.dumps({**saved, "model_digest": "0" * 64}))
    with pytest.raises(UserError, match="other weights"):
        load_served_model(served_job, runtime="onnx-int8")


def test_metrics_sum_every_worker_of_a_multi_worker_server(served_job):
    """`vizsla serve --workers 2`: each request lands on either worker; every scrape reports both."""
    import signal
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "vizsla", "serve", str(served_job), "--workers", "2"]
    command += ["--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read()
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        image = _split(served_job, "test")[0][0].read_bytes()
        for _ in range(24):  # a new connection each: the kernel spreads them over the workers
            assert httpx.post(f"{url}/invocations", content=image, timeout=30).status_code == 200
        for _ in range(5):
            text = httpx.get(f"{url}/metrics", timeout=10).text
            images = [line for line in text.splitlines() if line.startswith("vizsla_images_total")]
            assert images and float(images[0].split()[-1]) == 24.0, images
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
