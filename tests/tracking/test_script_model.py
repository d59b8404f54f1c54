"""A script job's MLflow model on a real MLflow server: its model folder behind its own inference.py, logged
when the job completes (or at `vizsla models register`), answering as `vizsla serve`'s handler does."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import get_model_info

from vizsla.jobdir import JobDir
from vizsla.scriptmode.runner import run_script_job
from vizsla.scriptmode.spec import ScriptJobSpec
from vizsla.serving.handler import Handler, RequestContext
from vizsla.testing.cli import invoke_cli
from vizsla.tracking.registry import RegistryError, job_model_id, register_job, resolve_registry_uri
from vizsla.tracking.script_model import NoScriptModel, resolve_inference_code
from vizsla.tracking.script_pyfunc import invoke

NET = """\
import torch


def create():
    return torch.nn.Linear(4, 2)
"""
TRAIN = """\
import argparse
import os

import torch

import script_model_net as net  # a name no other test's code uses: handlers share sys.modules

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
args, _ = parser.parse_known_args()
torch.manual_seed(0)
model = net.create()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(32, 4), torch.randn(32, 2)
for step in range(args.steps):
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step} loss: {loss.item():.4f}")
torch.save(model.state_dict(), os.path.join(args.model_dir, "model.pth"))
"""
INFERENCE = """\
import json
import os

import torch

import script_model_net as net  # a name no other test's code uses: handlers share sys.modules


def model_fn(model_dir):
    model = net.create()
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), weights_only=True))
    return model.eval()


def input_fn(body, content_type):
    assert content_type == "application/json", content_type
    return torch.tensor(json.loads(body), dtype=torch.float32).reshape(-1, 4)


def predict_fn(data, model):
    with torch.no_grad():
        return model(data)
"""
BODIES = [b"[1, 2, 3, 4]", b"[[0, 0, 0, 0], [0.5, -1, 2, 0.25]]"]


def source_folder(root: Path, *, inference: str | None = "inference.py") -> Path:
    """train.py and script_model_net.py (the model both scripts build), INFERENCE beside them, and a data
    folder."""
    root.mkdir(parents=True)
    (root / "train.py").write_text(TRAIN)
    (root / "script_model_net.py").write_text(NET)
    if inference:
        (root / inference).parent.mkdir(parents=True, exist_ok=True)
        (root / inference).write_text(INFERENCE)
    (root / "data").mkdir()
    (root / "data" / "samples.bin").write_bytes(b"\0" * 1024)  # a data folder beside the code: not logged
    return root


def run_job(source: Path, job: Path, mlflow_server: str, **fields) -> dict:
    spec = ScriptJobSpec(
        output=str(job), entry_point="train.py", source_dir=str(source),
        tracking={"enabled": True, "uri": mlflow_server, "experiment": "vizsla-script-tests"}, **fields,
    )  # fmt: skip
    result = run_script_job(spec, progress=False)
    assert result["status"] == "Completed", result.get("failure_reason")
    return result


def run_id_of(job: Path) -> str:
    return json.loads(JobDir(job).tracking.read_text())["run_id"]


def handler_answers(job: Path, bodies: list[bytes]) -> list:
    """What `vizsla serve JOB --entry-point inference.py` answers for BODIES (JSON), decoded."""
    handler = Handler(Path("inference.py"), source_dir=job / "code", script=True)
    context = RequestContext(labels=[], preprocessing={}, model_name="job")
    model = handler.model(str(job / "model"))
    return [json.loads(invoke(handler, model, body, "application/json", context)[0]) for body in bodies]


@pytest.fixture(scope="module")
def script_job(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The student layout: train.py, script_model_net.py and inference.py side by side; tracked on the
    server."""
    root = tmp_path_factory.mktemp("script-model")
    run_job(source_folder(root / "src"), root / "job", mlflow_server)
    return root / "job"


def test_the_logged_model_answers_as_the_jobs_inference_script(script_job: Path, mlflow_server: str) -> None:
    result = json.loads(JobDir(script_job).result.read_text())
    assert result["mlflow_model"]["logged"] is True
    assert result["mlflow"]["model_id"] == result["mlflow_model"]["model_id"]
    mlflow.set_tracking_uri(mlflow_server)
    loaded = mlflow.pyfunc.load_model(f"runs:/{run_id_of(script_job)}/model")
    frame = pd.DataFrame({"body": BODIES, "content_type": ["application/json", None]})  # None: sniffed
    expected = handler_answers(script_job, BODIES)
    assert loaded.predict(frame) == expected
    assert len(expected[1]) == 2 and len(expected[1][0]) == 2  # two rows of two outputs
    model = loaded.unwrap_python_model()
    assert model.predict(None, BODIES[0]) == expected[:1]  # one body, its type sniffed
    assert model.predict(None, BODIES) == expected
    code = Path(model.handler.source).parent  # the logged code: the modules, never the data folder
    logged = sorted(p.name for p in code.rglob("*") if p.is_file())
    assert logged == ["inference.py", "script_model_net.py", "train.py"]
    with pytest.raises(ValueError, match="request 1: a body must be bytes or text, not int"):
        model.predict(None, [BODIES[0], 3])


def test_the_logged_model_is_the_runs_model_with_a_signature(script_job: Path, mlflow_server: str) -> None:
    client = MlflowClient(mlflow_server)
    run_id = run_id_of(script_job)
    model_id = job_model_id(client, run_id)
    logged = client.get_logged_model(model_id)
    assert logged.model_type == "sagemaker-script" and logged.tags["vizsla.inference"] == "source_dir"
    mlflow.set_tracking_uri(mlflow_server)
    info = get_model_info(f"models:/{model_id}")
    assert info.signature.inputs.input_names() == ["body", "content_type"]
    files = {a.path for a in client.list_artifacts(run_id)}
    assert "model" not in files and "train.log" in files  # the model folder travels in the logged model


def test_a_job_without_inference_code_logs_none_says_why_and_registers_once_it_has(
    mlflow_server: str, tmp_path: Path
) -> None:
    job = tmp_path / "job"
    result = run_job(source_folder(tmp_path / "src", inference=None), job, mlflow_server)
    reason = result["mlflow_model"]["reason"]
    assert result["mlflow_model"]["logged"] is False and reason.startswith("no inference code")
    assert json.loads(JobDir(job).result.read_text())["mlflow_model"] == result["mlflow_model"]
    notes = [line for line in JobDir(job).log.read_text().splitlines() if "no MLflow model" in line]
    assert notes == [f"[vizsla] warning: no MLflow model logged: {reason}"]
    client = MlflowClient(mlflow_server)
    assert job_model_id(client, run_id_of(job)) is None
    with pytest.raises(RegistryError, match="has no MLflow model to register: no inference code"):
        register_job(job, "script-none")
    (job / "code" / "inference.py").write_text(INFERENCE)  # the job's code folder now has one
    version, model_id = register_job(job, "script-late")
    assert version == "1" and job_model_id(client, run_id_of(job)) == model_id
    assert client.get_logged_model(model_id).model_type == "sagemaker-script"


def test_models_register_makes_a_version_of_the_logged_script_model(script_job: Path,
                                                                   mlflow_server: str) -> None:
    code, output = invoke_cli("models", "register", str(script_job), "script-model")
    assert code == 0 and "registered script-model version 1" in output, output
    model_id = json.loads(JobDir(script_job).result.read_text())["mlflow"]["model_id"]
    assert f"(model {model_id})" in output  # the model logged at training, not a second one
    with pytest.raises(RegistryError, match="is a script job's model"):
        resolve_registry_uri("models:/script-model/1", mlflow_server)


def test_inference_entry_point_flag_picks_the_handler(mlflow_server: str, tmp_path: Path) -> None:
    source = source_folder(tmp_path / "src", inference="serving/handler.py")
    code, output = invoke_cli(
        "train", "--entry-point", "train.py", "--source-dir", str(source), "-o", str(tmp_path / "job"),
        "--inference-entry-point", "serving/handler.py", "--tracking-uri", mlflow_server, "--quiet",
    )  # fmt: skip
    assert code == 0, output
    result = json.loads(JobDir(tmp_path / "job").result.read_text())
    assert result["mlflow_model"]["logged"] is True, result["mlflow_model"]
    assert result["mlflow_model"]["inference"].endswith("serving/handler.py")


def spec_in(tmp_path: Path, **fields) -> ScriptJobSpec:
    return ScriptJobSpec(output=str(tmp_path / "job"), entry_point="train.py", source_dir=str(tmp_path),
                         **fields)


def test_which_inference_code_model_code_torchscript_or_none(tmp_path: Path) -> None:
    import torch

    job = JobDir(tmp_path / "job")
    job.model_dir.mkdir(parents=True)
    torch.save(torch.nn.Linear(4, 2).state_dict(), job.model_dir / "model.pt")  # a state dict: not served
    with pytest.raises(NoScriptModel, match="no inference code"):
        resolve_inference_code(job, spec_in(tmp_path))
    with pytest.raises(NoScriptModel, match="inference_entry_point serve.py is not in"):
        resolve_inference_code(job, spec_in(tmp_path, inference_entry_point="serve.py"))
    torch.jit.save(torch.jit.script(torch.nn.Linear(4, 2)), job.model_dir / "model.pt")
    assert resolve_inference_code(job, spec_in(tmp_path)).found == "torchscript"
    (job.model_dir / "code").mkdir()
    (job.model_dir / "code" / "inference.py").write_text(INFERENCE)  # SageMaker's model.tar.gz layout
    assert resolve_inference_code(job, spec_in(tmp_path)).found == "model_code"
    (tmp_path / "inference.py").write_text(INFERENCE)  # the source dir's wins
    found = resolve_inference_code(job, spec_in(tmp_path))
    assert (found.found, found.folder, found.entry_point) == ("source_dir", tmp_path, "inference.py")
    with pytest.raises(ValueError, match="must be a path inside the source dir"):
        spec_in(tmp_path, inference_entry_point="../inference.py")


def test_a_torchscript_model_is_served_with_the_toolkit_defaults(mlflow_server: str, tmp_path: Path) -> None:
    import torch

    from vizsla.tracking.script_model import log_script_model

    job = JobDir(tmp_path / "job")
    job.model_dir.mkdir(parents=True)
    torch.manual_seed(0)
    network = torch.nn.Linear(4, 2)
    torch.jit.save(torch.jit.script(network), job.model_dir / "model.pt")
    client = MlflowClient(mlflow_server)
    run_id = client.create_run("0").info.run_id  # the Default experiment
    model_id, code = log_script_model(client, run_id, job, spec_in(tmp_path))
    assert code.found == "torchscript"
    mlflow.set_tracking_uri(mlflow_server)
    loaded = mlflow.pyfunc.load_model(f"models:/{model_id}")
    with torch.no_grad():
        expected = network(torch.tensor([[1.0, 2.0, 3.0, 4.0]])).tolist()
    (answer,) = loaded.predict(pd.DataFrame({"body": [b"[[1, 2, 3, 4]]"]}))
    np.testing.assert_allclose(answer, expected, atol=1e-6)
