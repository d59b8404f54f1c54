"""Distributed jobs on this CPU (gloo): 2 processes vs 1, two 'machines' on loopback, a killed worker with
restarts, a rank that raises. Real torchrun (torch.distributed.run), real processes, real rendezvous."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from vizsla.testing.jobs import descendant_pids, wait_for_first_epoch

pytestmark = pytest.mark.slow

VIZSLA = [sys.executable, "-m", "vizsla"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vizsla.data.digits import create_digits

    out = tmp_path_factory.mktemp("digits") / "digits"
    create_digits(out)
    return out


def _head_job(digits: Path, output: Path, *extra: str) -> list[str]:
    """The quick start's pretrained EfficientNet-Lite0 with its head trained on cached features."""
    return [
        *VIZSLA, "train", "--data", str(digits), "--output", str(output), "--model", "efficientnet_lite0",
        "--image-size", "64", "--finetune", "head", "--epochs", "4", "--batch-size", "32", "--lr", "0.01",
        "--no-hflip", "--no-tracking", "--quiet", "--seed", "3", *extra,
    ]  # fmt: skip


def _full_job(digits: Path, output: Path, *extra: str) -> list[str]:
    """A ~100k-parameter model trained from scratch: DistributedDataParallel over the whole model."""
    return [
        *VIZSLA, "train", "--data", str(digits), "--output", str(output), "--model", "test_efficientnet",
        "--weights", "none", "--image-size", "32", "--finetune", "full", "--epochs", "4",
        "--batch-size", "32", "--lr", "0.01", "--precision", "fp32", "--no-hflip", "--no-tracking",
        "--quiet", "--seed", "3", "--workers", "0", *extra,
    ]  # fmt: skip


def _run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _result(job: Path) -> dict:
    return json.loads((job / "result.json").read_text())


def _files(job: Path) -> set[str]:
    return {str(p.relative_to(job)) for p in job.rglob("*") if p.is_file()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_one_and_only_rank0_writes(digits, tmp_path):
    one = _run(_head_job(digits, tmp_path / "one", "--profile"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run(_head_job(digits, tmp_path / "two", "--profile", "--nproc-per-node", "2"))
    assert two.returncode == 0, two.stderr[-3000:]

    single, double = _result(tmp_path / "one"), _result(tmp_path / "two")
    assert double["status"] == "Completed"
    # Two ranks draw other batches (each its shard, its own dropout masks), so the heads differ a little:
    # a handful of the 270 test images either way (measured 4 with label smoothing 0.1), not a trend.
    assert abs(single["metrics"]["test_accuracy"] - double["metrics"]["test_accuracy"]) <= 0.02
    # The evaluation is sharded without padding and summed: every test image counted once.
    assert sum(double["per_class"]["support"]) == sum(single["per_class"]["support"])

    spec = yaml.safe_load((tmp_path / "two" / "spec.yaml").read_text())
    assert spec["train"]["batch_size"] == 32
    assert spec["distributed"]["world_size"] == 2
    assert spec["distributed"]["per_process_batch_size"] == 16
    assert spec["distributed"]["backend"] == "gloo"

    # Rank 1 wrote only its own profiler step times; everything else is rank 0's, as in one process.
    extra = _files(tmp_path / "two") - _files(tmp_path / "one")
    assert extra == {"profile/steps-rank1.jsonl"}
    assert "Completed" in two.stdout + two.stderr
    described = subprocess.run(
        [*VIZSLA, "jobs", "describe", str(tmp_path / "two")], capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert "Processes" in described.stdout and "2 (gloo, torchrun): global batch 32, 16 per process" in (
        described.stdout
    )


def test_ddp_full_finetune_and_resume_with_another_world_size(digits, tmp_path):
    job = tmp_path / "ddp"
    first = _run(_full_job(digits, job, "--nproc-per-node", "2", "--early-stopping", "99"))
    assert first.returncode == 0, first.stderr[-3000:]
    result = _result(job)
    assert result["status"] == "Completed" and result["epochs_completed"] == 4
    assert result["metrics"]["test_accuracy"] > 0.5  # learns from scratch in 4 epochs

    # Checkpoints hold the plain model: a 1-process job continues a 2-process one.
    spec = yaml.safe_load((job / "spec.yaml").read_text())
    spec["train"]["epochs"] = 5
    (job / "spec.yaml").write_text(yaml.safe_dump(spec))
    state = json.loads((job / "result.json").read_text())
    state["status"] = "Stopped"
    (job / "result.json").write_text(json.dumps(state))
    resumed = _run([*VIZSLA, "train", "--resume", str(job), "--quiet"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = _result(job)
    assert after["epochs_completed"] == 5
    assert yaml.safe_load((job / "spec.yaml").read_text())["distributed"]["world_size"] == 1


def _run_two_machines(commands: list[list[str]], envs: list[dict[str, str]] | None = None) -> None:
    """Start one torchrun per simulated machine together; both must end with exit status 0."""
    nodes = [
        subprocess.Popen(
            command,
            env=envs[rank] if envs else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank, command in enumerate(commands)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]


def test_two_machines_on_loopback_complete_one_job(digits, tmp_path):
    job = tmp_path / "nodes"
    endpoint = f"127.0.0.1:{_free_port()}"
    _run_two_machines(
        [
            _head_job(
                digits, job, "--nproc-per-node", "1", "--nnodes", "2", "--node-rank", str(rank),
                "--rdzv-endpoint", endpoint,
            )  # fmt: skip
            for rank in (0, 1)
        ]
    )
    result = _result(job)
    assert result["status"] == "Completed"
    assert yaml.safe_load((job / "spec.yaml").read_text())["distributed"]["world_size"] == 2


@pytest.fixture
def s3_images(tmp_path):
    """A small image folder in a bucket of a real S3-compatible server (moto): (uri, options, images)."""
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    from vizsla.testing.images import make_image_folder

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
        region_name="us-east-1",
    )  # fmt: skip
    client.create_bucket(Bucket="images")
    local = make_image_folder(tmp_path / "upload", classes=("cat", "dog", "fox"), per_class=12, seed=0)
    images = sorted(local.rglob("*.png"))
    for path in images:
        client.put_object(Bucket="images", Key=f"data/{path.relative_to(local)}", Body=path.read_bytes())
    options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint}}
    yield "s3://images/data", options, len(images)
    server.stop()


def test_two_machines_each_read_their_own_copy_of_remote_data(s3_images, tmp_path):
    """Two simulated machines (separate dataset caches) train on s3:// data: each mirrors it locally."""
    uri, options, images = s3_images
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": uri, "storage_options": options, "num_workers": 0}}))
    job = tmp_path / "job"
    endpoint = f"127.0.0.1:{_free_port()}"
    caches = [tmp_path / "machine-0-cache", tmp_path / "machine-1-cache"]
    command = [
        *VIZSLA, "train", "--config", str(config), "--output", str(job), "--model", "test_efficientnet",
        "--weights", "none", "--image-size", "32", "--finetune", "full", "--epochs", "2", "--batch-size", "8",
        "--precision", "fp32", "--no-tracking", "--quiet", "--nproc-per-node", "1", "--nnodes", "2",
        "--rdzv-endpoint", endpoint,
    ]  # fmt: skip
    _run_two_machines(
        [[*command, "--node-rank", str(rank)] for rank in (0, 1)],
        [{**os.environ, "VIZSLA_CACHE_DIR": str(cache)} for cache in caches],
    )
    assert _result(job)["status"] == "Completed"
    for cache in caches:  # each machine holds its own complete mirror of the bucket's images
        assert len(list((cache / "datasets").rglob("*.png"))) == images, cache


def test_sigkill_of_a_worker_restarts_from_the_checkpoint(digits, tmp_path):
    reference = _run(_full_job(digits, tmp_path / "straight", "--nproc-per-node", "2"))
    assert reference.returncode == 0, reference.stderr[-3000:]

    job = tmp_path / "killed"
    launcher = subprocess.Popen(
        _full_job(digits, job, "--nproc-per-node", "2", "--max-restarts", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = job / "metrics.jsonl"
    wait_for_first_epoch(metrics, poll_s=0.2)  # the first epoch's checkpoint; then kill mid-epoch 2
    time.sleep(1.0)
    workers = descendant_pids(launcher.pid, "--config", "vizsla")
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)
    out, err = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, err[-3000:]
    result = _result(job)
    assert result["status"] == "Completed" and result["epochs_completed"] == 4
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines() if '"epoch"' in line]
    assert sorted(set(epochs)) == [0, 1, 2, 3]
    assert "training failed" in (job / "train.log").read_text()  # the first attempt, then the restart
    straight = _result(tmp_path / "straight")
    assert abs(result["metrics"]["test_accuracy"] - straight["metrics"]["test_accuracy"]) <= 0.01


RAISING = textwrap.dedent(
    """
    import sys
    from vizsla.spec import build_spec
    from vizsla.testing.jobs import tiny_spec_dict, wait_for_first_epoch
    from vizsla.jobs import run_job
    from vizsla.training import trainer

    # A bug in the training step on rank 1 only (a callback's error would just disable the callback).
    original = trainer.train_one_epoch

    class RaiseOnRank1:
        def __init__(self, runner):
            self.runner = runner

        def fire(self, event, state):
            self.runner.fire(event, state)
            if event == "batch_end" and state.rank == 1 and state.global_step == 3:
                raise ValueError("boom on rank 1")

    trainer.train_one_epoch = lambda job, state, runner: original(job, state, RaiseOnRank1(runner))
    run_job(build_spec(tiny_spec_dict(sys.argv[1], sys.argv[2], epochs=3, batch_size=8)), progress=False)
    """
)


def test_a_rank_that_raises_fails_the_job_cleanly(tiny_folder, tmp_path):
    script = tmp_path / "raise.py"
    script.write_text(RAISING)
    job = tmp_path / "failing"
    started = time.monotonic()
    proc = _run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "--monitor-interval", "0.5", str(script), str(tiny_folder), str(job),
        ],  # fmt: skip
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert elapsed < 120, f"the job took {elapsed:.0f} s to fail"
    result = _result(job)
    assert result["status"] == "Failed"
    assert "rank 1" in result["failure_reason"] and "boom on rank 1" in result["failure_reason"]


STOP_RULE = """
from dataclasses import dataclass

from vizsla.debugger.rules import BaseRule


@dataclass
class LossRecorded(BaseRule):
    name = "LossRecorded"

    def evaluate(self, trial, step, mode):
        value = trial.tensor("loss").reduction(step, "mean", mode)
        if value is not None:
            return self.finding(step, mode, "loss", value, 0.0, "a loss was recorded")
        return None
"""


def test_debugger_stop_and_early_stopping_end_every_rank(tiny_folder, tmp_path):
    """Stops decided on rank 0 alone (a debugger rule's stop action) or on every rank (early stopping)
    end both processes after the same step: the jobs finish, nothing waits on a missing peer."""
    rule = tmp_path / "stop_rule.py"
    rule.write_text(STOP_RULE)
    config = tmp_path / "debug.yaml"
    config.write_text(
        yaml.safe_dump(
            {"debug": {"enabled": True, "default_rules": False,
                       "rules": [{"name": f"{rule}:LossRecorded", "actions": ["log", "stop"]}]}}
        )  # fmt: skip
    )
    base = [
        *VIZSLA, "train", "--data", str(tiny_folder), "--model", "test_efficientnet", "--weights", "none",
        "--image-size", "32", "--finetune", "full", "--batch-size", "8", "--precision", "fp32",
        "--workers", "0", "--no-tracking", "--quiet", "--nproc-per-node", "2",
    ]  # fmt: skip
    started = time.monotonic()
    stopped = _run([*base, "--config", str(config), "--epochs", "50", "--output", str(tmp_path / "rule")])
    assert time.monotonic() - started < 150
    result = _result(tmp_path / "rule")
    assert result["status"] == "Stopped", stopped.stderr[-3000:]
    assert "LossRecorded" in result["stop_reason"]
    assert result["epochs_completed"] < 50

    # A learning rate too small to change the predictions: valid accuracy stops improving at once.
    config.write_text(yaml.safe_dump({"train": {"early_stopping_metric": "valid_accuracy"}}))
    early = _run([*base, "--config", str(config), "--lr", "1e-9", "--epochs", "30", "--early-stopping", "2",
                  "--output", str(tmp_path / "early")], 300)  # fmt: skip
    assert early.returncode == 0, early.stderr[-3000:]
    result = _result(tmp_path / "early")
    assert result["status"] == "Completed" and "early stopping" in result["stop_reason"]
    assert result["epochs_completed"] < 30
