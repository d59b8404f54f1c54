"""run_script_job: real scripts in child processes, their exits, failures, stops, metrics and outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vizsla.errors import UserError
from vizsla.jobdir import JobDir
from vizsla.scriptmode import runner
from vizsla.scriptmode.runner import run_script_job
from vizsla.scriptmode.spec import ScriptJobSpec

SCRIPTS = Path(__file__).parent / "scripts"
LOSS = {"name": "test_loss", "regex": r"Test set: Average loss: ([0-9\.]+)"}


def digits_channels(root: Path) -> dict[str, str]:
    """sklearn's bundled digits (no download) as train.npz / test.npz in two channel folders."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    train, test = root / "train", root / "test"
    train.mkdir(parents=True)
    test.mkdir(parents=True)
    np.savez(train / "train.npz", x=digits.data[:1400], y=digits.target[:1400])
    np.savez(test / "test.npz", x=digits.data[1400:], y=digits.target[1400:])
    return {"training": str(train), "test": str(test)}


def spec_for(tmp_path: Path, script: str, **fields) -> ScriptJobSpec:
    fields.setdefault("tracking", {"enabled": False})
    return ScriptJobSpec(output=str(tmp_path / "job"), entry_point=str(SCRIPTS / script), **fields)


def test_training_script_completes_with_metrics_and_model(tmp_path):
    import torch

    calls = []
    spec = spec_for(
        tmp_path,
        "train_model.py",
        channels=digits_channels(tmp_path / "data"),
        hyperparameters={"epochs": 2, "batch-size": 64, "learning_rate": 0.01},
        metric_definitions=[
            LOSS,
            {"Name": "test_accuracy", "Regex": r"Accuracy: \d+/\d+ \(([0-9]+)%\)"},
            {"name": "valid_f1", "regex": r"F1: ([0-9\.]+)"},
        ],
    )
    result = run_script_job(spec, progress=False, on_metric=lambda *args: calls.append(args))
    job = Path(result["job_dir"])
    assert result["status"] == "Completed" and result["exit_code"] == 0, result["stderr_tail"]
    assert (job / "output" / "success").read_text() == ""
    assert not (job / "output" / "failure").exists()
    state = torch.load(job / "model" / "model.pth")
    assert state["fc1.weight"].shape == (32, 64)
    assert result["best_model_path"] == str(job / "model")
    log_lines = (job / "train.log").read_text().splitlines()
    losses = [
        float(line.split("loss: ")[1].split(",")[0]) for line in log_lines if line.startswith("Test set")
    ]
    assert len(losses) == 2 and losses[1] < losses[0]  # it really trained
    assert [c for c in calls if c[0] == "test_loss"] == [
        ("test_loss", losses[0], 0),
        ("test_loss", losses[1], 1),
    ]
    records = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert [(r["name"], r["index"]) for r in records] == [
        ("test_loss", 0),
        ("test_accuracy", 0),
        ("test_loss", 1),
        ("test_accuracy", 1),
    ]
    assert all(r["kind"] == "script_metric" for r in records)
    assert result["metrics"]["test_loss"] == losses[1]
    assert result["metrics"]["test_accuracy"] > 50
    assert result["metric_series_counts"] == {"test_loss": 2, "test_accuracy": 2, "valid_f1": 0}
    assert result["unmatched_metric_definitions"] == ["valid_f1"]
    assert "[vizsla] warning: metric definition 'valid_f1' never matched" in "\n".join(log_lines)
    assert result["hyperparameters"] == {"epochs": 2, "batch-size": 64, "learning_rate": 0.01}
    assert JobDir(job).read_result() == result  # on disk its paths into the job are relative
    assert json.loads((job / "result.json").read_text())["best_model_path"] == "model"
    saved = (job / "spec.yaml").read_text()
    assert "entry_point: train_model.py" in saved and f"source_dir: {SCRIPTS.resolve()}" in saved


def test_metrics_read_from_stderr_too_and_non_numeric_skipped(tmp_path):
    spec = spec_for(
        tmp_path,
        "print_metrics.py",
        metric_definitions=[
            {"name": "train_loss", "regex": r"train_loss=([0-9.]+)"},
            LOSS,
            {"name": "accuracy", "regex": r"Accuracy: (\S+)"},
        ],
    )
    result = run_script_job(spec, progress=False)
    assert result["metric_series_counts"] == {"train_loss": 3, "test_loss": 3, "accuracy": 0}
    assert result["metrics"] == {"train_loss": 0.333, "test_loss": 0.1667}
    assert len(result["metric_warnings"]) == 1 and "'90/100'" in result["metric_warnings"][0]
    assert result["unmatched_metric_definitions"] == ["accuracy"]


def failed(tmp_path: Path, script: str) -> tuple[dict, str]:
    result = run_script_job(spec_for(tmp_path, script), progress=False)
    failure = (Path(result["job_dir"]) / "output" / "failure").read_text()
    assert result["status"] == "Failed"
    assert result["failure_reason"] == failure[:1024]
    assert not (Path(result["job_dir"]) / "output" / "success").exists()
    return result, failure


def test_non_zero_exit_is_failed_with_the_toolkits_failure_file(tmp_path):
    result, failure = failed(tmp_path, "fail_exit.py")
    assert result["exit_code"] == 3 and result["signal"] is None
    # no line names an exception class, so the toolkit's ErrorMessage is empty
    assert (
        failure
        == f'ExecuteUserScriptError:\nExitCode 3\nErrorMessage ""\nCommand "{sys.executable} fail_exit.py"'
    )
    assert result["stderr_tail"] == ["no data found, giving up"]


def test_exception_message_from_the_first_line_naming_an_exception(tmp_path):
    result, failure = failed(tmp_path, "fail_raise.py")
    assert failure == (
        "ExecuteUserScriptError:\nExitCode 1\n"
        'ErrorMessage "raise ValueError(f"no images under {path}")\n'
        ' ValueError: no images under /data/train"\n'
        f'Command "{sys.executable} fail_raise.py"'
    )
    assert result["stderr_tail"][0] == "warming up"
    assert result["stderr_tail"][-1] == "ValueError: no images under /data/train"
    assert "Traceback (most recent call last):" in result["stderr_tail"]


def test_syntax_error_is_a_failing_script(tmp_path):
    script = tmp_path / "src" / "syntax_error.py"  # written here: a broken file in the tree would fail lint
    script.parent.mkdir()
    script.write_text("import os\n\ndef main(:\n    print(os.environ['SM_MODEL_DIR'])\n")
    spec = ScriptJobSpec(output=str(tmp_path / "job"), entry_point=str(script), tracking={"enabled": False})
    result = run_script_job(spec, progress=False)
    failure = (tmp_path / "job" / "output" / "failure").read_text()
    assert result["status"] == "Failed" and result["exit_code"] == 1
    assert failure.startswith('ExecuteUserScriptError:\nExitCode 1\nErrorMessage "')
    assert "SyntaxError" in failure and failure.endswith(f'Command "{sys.executable} syntax_error.py"')
    assert any(line.startswith("SyntaxError:") for line in result["stderr_tail"])


def test_sigkilled_script_is_reported_as_out_of_memory(tmp_path):
    result, failure = failed(tmp_path, "killed.py")
    assert result["exit_code"] == 137 and result["signal"] == "SIGKILL"
    assert failure.splitlines()[1] == "ExitCode 137"
    assert failure.splitlines()[-2] == 'ExtraInfo "OutOfMemory: Process killed by SIGKILL (signal 9)"'


def test_failure_file_written_by_the_script_is_kept(tmp_path):
    script = tmp_path / "src" / "own_failure.py"
    script.parent.mkdir()
    script.write_text(
        "import os, sys\n"
        "open(os.path.join(os.environ['SM_OUTPUT_DIR'], 'failure'), 'w').write('dataset is empty')\n"
        "sys.exit(2)\n"
    )
    result = run_script_job(
        ScriptJobSpec(output=str(tmp_path / "job"), entry_point=str(script), tracking={"enabled": False}),
        progress=False,
    )
    assert result["status"] == "Failed" and result["failure_reason"] == "dataset is empty"


def test_missing_inputs_are_user_errors_before_anything_runs(tmp_path):
    with pytest.raises(UserError, match=f"channel 'training': {tmp_path / 'nope'} does not exist"):
        run_script_job(spec_for(tmp_path, "dump_env.py", channels={"training": str(tmp_path / "nope")}))
    with pytest.raises(UserError, match="entry point .*missing.py does not exist"):
        run_script_job(spec_for(tmp_path, "missing.py"))
    with pytest.raises(UserError, match="source dir"):
        run_script_job(
            ScriptJobSpec(
                output=str(tmp_path / "job"), entry_point="t.py", source_dir=str(tmp_path / "no-src")
            )
        )
    assert not (tmp_path / "job").exists()


def test_existing_job_needs_resume_which_reruns_the_script(tmp_path):
    spec = spec_for(tmp_path, "print_metrics.py", metric_definitions=[LOSS])
    first = run_script_job(spec, progress=False)
    with pytest.raises(UserError, match="already holds a job"):
        run_script_job(spec, progress=False)
    again = run_script_job(spec, progress=False, resume=True)
    assert again["status"] == "Completed" and again["metric_series_counts"] == {"test_loss": 3}
    job = Path(first["job_dir"])
    assert len((job / "metrics.jsonl").read_text().splitlines()) == 3  # the re-run counts afresh
    log = (job / "train.log").read_text()
    assert log.count("epoch 0 train_loss") == 2 and "[vizsla] re-running print_metrics.py" in log


def test_should_stop_terminates_the_script_and_the_job_is_stopped(tmp_path):
    seen = []
    spec = spec_for(tmp_path, "endless.py", metric_definitions=[{"name": "loss", "regex": r"loss=([0-9.]+)"}])
    started = time.monotonic()
    result = run_script_job(
        spec, progress=False, on_metric=lambda *a: seen.append(a), should_stop=lambda: len(seen) >= 3
    )
    assert time.monotonic() - started < runner.STOP_GRACE_S
    assert result["status"] == "Stopped" and result["stop_reason"] == "stop requested"
    job = Path(result["job_dir"])
    assert "SIGTERM: saving checkpoint" in (job / "train.log").read_text()  # the script got SIGTERM
    assert not (job / "output" / "failure").exists() and not (job / "output" / "success").exists()
    assert [a[2] for a in seen] == list(range(len(seen)))


def test_script_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "STOP_GRACE_S", 0.5)
    result = run_script_job(spec_for(tmp_path, "ignore_term.py", max_run_s=0.5), progress=False)
    assert result["status"] == "Stopped"
    assert result["stop_reason"].startswith("MaxRuntimeExceeded")
    assert result["signal"] == "SIGKILL"
    assert "ignored SIGTERM" in (Path(result["job_dir"]) / "train.log").read_text()


def test_sigterm_to_vizsla_stops_the_script(tmp_path):
    job = tmp_path / "job"
    code = (
        "from vizsla.scriptmode.runner import run_script_job\n"
        "from vizsla.scriptmode.spec import ScriptJobSpec\n"
        f"spec = ScriptJobSpec(output={str(job)!r}, entry_point={str(SCRIPTS / 'endless.py')!r},\n"
        "                     tracking={'enabled': False})\n"
        "print(run_script_job(spec, progress=False)['status'])\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "step 3 " not in _read(job / "train.log"):
        time.sleep(0.1)
    parent.send_signal(signal.SIGTERM)
    out, _ = parent.communicate(timeout=30)
    assert parent.returncode == 0 and out.strip() == "Stopped"
    result = json.loads((job / "result.json").read_text())
    assert result["stop_reason"] == "vizsla received SIGTERM"
    assert "SIGTERM: saving checkpoint" in _read(job / "train.log")


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def test_requirements_checked_and_reported_not_installed(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('ok')\n")
    (source / "requirements.txt").write_text(
        "# what the script needs\nnumpy>=1.0\nnot-a-real-package-vizsla==1.0\npackaging<0.1  # too old\n"
        "-r more.txt\nfoo==1.0; python_version < '3.0'\n"
    )
    spec = ScriptJobSpec(
        output=str(tmp_path / "job"),
        entry_point="train.py",
        source_dir=str(source),
        tracking={"enabled": False},
    )
    result = run_script_job(spec, progress=False)
    assert result["status"] == "Completed"
    report = result["requirements"]
    assert report["checked"] == 4 and report["skipped"] == ["-r more.txt"] and report["installed"] is False
    problems = {p["name"]: p for p in report["unsatisfied"]}
    assert sorted(problems) == ["not-a-real-package-vizsla", "packaging"]
    assert problems["not-a-real-package-vizsla"]["reason"] == "not installed"
    assert (
        problems["packaging"]["reason"].startswith("installed ") and "<0.1" in problems["packaging"]["reason"]
    )
    log = (tmp_path / "job" / "train.log").read_text()
    assert "requirements.txt: not-a-real-package-vizsla==1.0: not installed" in log


def test_profile_samples_the_script_and_uses_its_steps(tmp_path):
    spec = spec_for(tmp_path, "fake_steps.py", profile={"enabled": True, "interval_ms": 100})
    result = run_script_job(spec, progress=False)
    job = Path(result["job_dir"])
    assert result["status"] == "Completed"
    assert result["profiler"]["steps"] == 12 and result["profiler"]["system_samples"] >= 3
    assert (job / "reports" / "profiler-report.html").is_file()
    summary = json.loads((job / "profile" / "summary.json").read_text())
    timeline = json.loads((job / "profile" / "job.json").read_text())["timeline"]
    assert [m["event"] for m in timeline] == [
        "fit_start",
        "epoch_start",
        "first_step_end",
        "train_end",
        "fit_end",
    ]
    assert summary  # rules ran over the script's steps and the system samples
    assert os.path.isfile(result["profiler"]["report"])


def test_mlflow_run_has_params_metric_series_tags_and_files(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = spec_for(
        tmp_path,
        "print_metrics.py",
        hyperparameters={"epochs": 3, "batch-size": 16},
        metric_definitions=[LOSS],
        tracking={"uri": uri, "experiment": "script-mode"},
    )
    result = run_script_job(spec, progress=False)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params == {"epochs": "3", "batch-size": "16"}
    assert run.data.tags["vizsla.kind"] == "script" and run.data.tags["vizsla.status"] == "Completed"
    assert run.data.tags["vizsla.entry_point"] == "print_metrics.py"
    history = client.get_metric_history(run.info.run_id, "test_loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, 0.25), (2, 0.1667)]
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"result.json", "train.log", "spec.yaml", "metrics.jsonl", "output"} <= files
    assert result["mlflow_model"]["logged"] and "model" not in files  # model/ is in the run's MLflow model
    assert {f.path for f in client.list_artifacts(run.info.run_id, "output")} == {"output/success"}

    # A re-run (--resume) starts the script over: a run of its own, its series not piled onto the first's.
    again = run_script_job(spec, progress=False, resume=True)
    second = client.get_run(again["mlflow"]["run_id"])
    assert second.info.run_id != run.info.run_id
    assert second.data.tags["vizsla.previous_run_id"] == run.info.run_id
    history = client.get_metric_history(second.info.run_id, "test_loss")
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert len(client.get_metric_history(run.info.run_id, "test_loss")) == 3


def test_install_requirements_runs_pip_and_a_pip_failure_fails_the_job(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('trained')\n")
    requirements = source / "requirements.txt"
    requirements.write_text("--no-index\npackaging\n")  # already installed: pip needs no network
    spec = ScriptJobSpec(
        output=str(tmp_path / "ok"),
        entry_point="train.py",
        source_dir=str(source),
        install_requirements=True,
        tracking={"enabled": False},
    )
    result = run_script_job(spec, progress=False)
    assert result["status"] == "Completed" and result["requirements"]["installed"] is True
    assert "trained" in (tmp_path / "ok" / "train.log").read_text()
    requirements.write_text("--no-index\nnot-a-real-package-vizsla==1.0\n")
    result = run_script_job(spec.model_copy(update={"output": str(tmp_path / "bad")}), progress=False)
    assert result["status"] == "Failed" and result["requirements"]["installed"] is False
    failure = (tmp_path / "bad" / "output" / "failure").read_text()
    assert failure.startswith("InstallRequirementsError:\nExitCode 1\n")
    # pip reads the job's copy of the source dir, as the toolkit reads /opt/ml/code/requirements.txt
    copied = tmp_path / "bad" / "code" / "requirements.txt"
    assert failure.endswith(f'Command "{sys.executable} -m pip install -r {copied}"')
    assert "trained" not in (tmp_path / "bad" / "train.log").read_text()  # the script never ran


def test_remote_channel_is_copied_to_the_dataset_cache_first(tmp_path):
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe("/vizsla-test-bucket/train/images/a.txt", b"an image")
    try:
        spec = spec_for(tmp_path, "dump_env.py", channels={"training": "memory://vizsla-test-bucket/train"})
        result = run_script_job(spec, progress=False)
    finally:
        memory.rm("/vizsla-test-bucket", recursive=True)
    seen = json.loads((Path(result["job_dir"]) / "output" / "data" / "seen.json").read_text())
    channel = Path(seen["environ"]["SM_CHANNEL_TRAINING"])
    assert (channel / "images" / "a.txt").read_bytes() == b"an image"  # a local copy the script can read
    assert str(channel.resolve()).startswith(os.environ["VIZSLA_CACHE_DIR"])
    assert result["channels"]["training"] == str(channel.resolve())
