"""Estimator/tuner lifecycle as the SDK's (issue 17, items 8, 11, 12): Session.describe_training_job,
Estimator.attach, HyperparameterTuner.attach, fit(wait=False) + wait(), JSON-encoded hyperparameters(),
and a notebook run as a script without a __main__ guard.

SDK sources matched: aws/sagemaker-python-sdk `src/sagemaker/estimator.py` (`Framework.hyperparameters`,
`_json_encode_hyperparameters`, `_prepare_init_params_from_job_description`, `EstimatorBase.attach`),
`src/sagemaker/tuner.py` (`HyperparameterTuner.attach`, `wait`, `best_estimator`), botocore
`sagemaker/2017-07-24/service-2.json` `DescribeTrainingJobResponse`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vizsla.sagemaker import PyTorch, Session
from vizsla.sagemaker.tuner import CategoricalParameter, ContinuousParameter, HyperparameterTuner

METRICS = [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}]

TRAIN = """
import argparse, json, os, time
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--sleep", type=float, default=0.0)
args, _ = parser.parse_known_args()
time.sleep(args.sleep)
print(f"loss={abs(args.lr - 0.05) + args.batch_size / 1000:.6f}")
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
    f.write(json.dumps(vars(args)))
"""


@pytest.fixture()
def code(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "train.py").write_text(TRAIN)
    return folder


def _estimator(code: Path, tmp_path: Path, **hyperparameters) -> PyTorch:
    return PyTorch(
        entry_point="train.py",
        source_dir=str(code),
        role="local:test",
        instance_count=1,
        instance_type="ml.m5.large",
        hyperparameters={"epochs": 1, **hyperparameters},
        metric_definitions=METRICS,
        output_path=str(tmp_path / "runs"),
        base_job_name="tiny",
        tracking=False,
    )


def test_hyperparameters_are_json_encoded_like_the_sdks(code, tmp_path):
    estimator = _estimator(code, tmp_path, **{"batch-size": "64", "lr": 0.01, "flag": True})
    assert estimator.hyperparameters() == {"epochs": "1", "batch-size": '"64"', "lr": "0.01", "flag": "true"}
    # the notebooks' idiom
    assert int(estimator.hyperparameters()["batch-size"].replace('"', "")) == 64


def test_describe_training_job_attach_and_fit_without_wait(code, tmp_path):
    estimator = _estimator(code, tmp_path, lr=0.02, sleep=1.5)
    started = time.monotonic()
    estimator.fit({"training": str(tmp_path)}, wait=False)
    assert time.monotonic() - started < 1.5  # did not wait for the script
    name = estimator.latest_training_job.name
    session = estimator.sagemaker_session
    assert isinstance(session, Session)
    assert session.describe_training_job(name)["TrainingJobStatus"] == "InProgress"
    estimator.latest_training_job.wait()
    described = session.describe_training_job(name)
    assert described["TrainingJobName"] == name
    assert described["TrainingJobStatus"] == "Completed"
    assert described["HyperParameters"]["lr"] == "0.02"
    assert described["HyperParameters"]["sagemaker_program"] == '"train.py"'
    model_dir = Path(described["ModelArtifacts"]["S3ModelArtifacts"])
    assert (model_dir / "model.txt").is_file()
    assert described["FinalMetricDataList"][0]["MetricName"] == "loss"
    assert described["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    assert described["TrainingEndTime"] >= described["TrainingStartTime"]
    # Estimator.attach rebuilds it by name, in another session looking in the output folder
    attached = PyTorch.attach(name, sagemaker_session=Session(default_output=tmp_path / "runs"))
    assert attached.latest_training_job.name == name
    assert attached.hyperparameters()["lr"] == "0.02"
    assert attached.model_data == str(model_dir)
    assert attached.entry_point == "train.py"
    with pytest.raises(Exception, match="not found"):
        Session(default_output=tmp_path / "elsewhere").describe_training_job("no-such-job")


def test_a_failed_job_is_described_with_its_reason(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("raise SystemExit('no data here')\n")
    estimator = PyTorch(
        entry_point="train.py", source_dir=str(code), output_path=str(tmp_path / "runs"), tracking=False
    )
    with pytest.raises(Exception, match="Failed"):
        estimator.fit()
    described = estimator.sagemaker_session.describe_training_job(estimator.latest_training_job.name)
    assert described["TrainingJobStatus"] == "Failed" and "FailureReason" in described


@pytest.mark.slow
def test_tuner_fit_without_wait_attach_and_best_estimator(code, tmp_path):
    estimator = _estimator(code, tmp_path)
    tuner = HyperparameterTuner(
        estimator,
        "loss",
        {"lr": ContinuousParameter(0.01, 0.1), "batch-size": CategoricalParameter(["32", "64"])},
        METRICS,
        objective_type="Minimize",
        max_jobs=2,
        max_parallel_jobs=2,
        strategy="Random",
    )
    started = time.monotonic()
    tuner.fit({"training": str(tmp_path)}, wait=False)
    assert time.monotonic() - started < 5
    tuner.wait()
    best = tuner.best_estimator()
    hps = best.hyperparameters()
    assert hps["batch-size"] in ('"32"', '"64"')  # SageMaker's JSON-encoded strings
    assert 0.01 <= float(hps["lr"]) <= 0.1 and hps["epochs"] == "1"
    described = best.sagemaker_session.describe_training_job(tuner.best_training_job())
    assert described["TrainingJobStatus"] == "Completed"
    assert described["HyperParameters"]["batch-size"] == hps["batch-size"]
    again = HyperparameterTuner.attach(
        tuner.latest_tuning_job.name, sagemaker_session=Session(tmp_path / "runs")
    )
    assert again.best_training_job() == tuner.best_training_job()
    assert set(again.hyperparameter_ranges()) == {"lr", "batch-size"}
    assert again.estimator.entry_point == "train.py"
    assert len(again.analytics().dataframe()) == 2


NOTEBOOK = """
# %%
print("NOTEBOOK-START", flush=True)
import json
from vizsla.sagemaker import PyTorch
from vizsla.sagemaker.tuner import HyperparameterTuner, ContinuousParameter

estimator = PyTorch(entry_point="train.py", source_dir={code!r}, hyperparameters={{"epochs": 1}},
                    metric_definitions={metrics!r}, output_path={runs!r}, tracking=False)
tuner = HyperparameterTuner(estimator, "loss", {{"lr": ContinuousParameter(0.01, 0.1)}}, {metrics!r},
                            objective_type="Minimize", max_jobs=2, max_parallel_jobs=2)
tuner.fit({{"training": {data!r}}})
print("BEST", json.dumps(tuner.best_estimator().hyperparameters()), flush=True)
"""


@pytest.mark.slow
def test_a_notebook_without_main_guard_runs_as_a_script(code, tmp_path):
    """Item 12: trials must not execute the notebook (python notebook.py, no __main__ guard) again."""
    notebook = tmp_path / "notebook.py"
    notebook.write_text(
        NOTEBOOK.format(code=str(code), metrics=METRICS, runs=str(tmp_path / "runs"), data=str(tmp_path))
    )
    done = subprocess.run(
        [sys.executable, str(notebook)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("NOTEBOOK-START") == 1, done.stdout
    assert "bootstrapping phase" not in done.stderr
    best = json.loads(done.stdout.split("BEST", 1)[1].strip())
    assert 0.01 <= float(best["lr"]) <= 0.1
