"""`vizsla train` through a real resident worker: same output, exit codes, signals and results as a process
of its own; the worker's children die with their client; the worker stops when asked (vizsla.resident)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vizsla.resident import control

pytestmark = pytest.mark.slow

STARTED = "started a resident worker"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("resident")
    (folder / "run").mkdir(mode=0o700)
    yield folder / "run"
    stopped = control.stop(folder / "run")
    assert control.workers(folder / "run") == []
    assert not list((folder / "run").glob("*.sock")), f"workers {stopped} left their sockets"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vizsla.testing.images import make_image_folder

    return make_image_folder(
        tmp_path_factory.mktemp("data") / "d", classes=("cat", "dog", "fox"), per_class=10, seed=0
    )


def environment(runtime: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "VIZSLA_RESIDENT": "1", "VIZSLA_RUNTIME_DIR": str(runtime),
            "VIZSLA_RESIDENT_IDLE_S": "300", **extra}


def train(runtime: Path, *args: str, resident: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m vizsla train ARGS`, from one folder: `-m` puts it first on sys.path, and a worker serves
    only the commands whose sys.path is its own."""
    env = environment(runtime) if resident else {**environment(runtime), "VIZSLA_RESIDENT": "0"}
    return subprocess.run(
        [sys.executable, "-m", "vizsla", "train", *args], cwd=runtime.parent, env=env, capture_output=True,
        text=True, timeout=300,
    )


def without_notice(stderr: str) -> str:
    return "".join(line for line in stderr.splitlines(keepends=True) if STARTED not in line)


def forked(runtime: Path) -> list[int]:
    """The pids of the children the worker forked, from its log."""
    lines = "".join(log.read_text() for log in runtime.glob("*.log")).splitlines()
    return [int(line.rsplit(" ", 1)[1]) for line in lines if " forked " in line]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_first_train_starts_the_worker_and_the_next_runs_in_it(runtime: Path, data: Path, tmp_path: Path):
    first = train(runtime, "--data", str(data), "--output", str(tmp_path / "a"), "--epochs", "2",
                  "--no-tracking")
    assert first.returncode == 0, first.stderr[-3000:]
    assert STARTED in first.stderr
    # Relative paths are the command's: the job runs in the command's working folder.
    relative = os.path.relpath(tmp_path / "b", runtime.parent)
    second = train(runtime, "--data", str(data), "--output", relative, "--epochs", "2", "--no-tracking")
    assert second.returncode == 0, second.stderr[-3000:]
    assert STARTED not in second.stderr
    assert "Completed" in second.stdout + second.stderr  # the job wrote to this command's own streams
    assert len(forked(runtime)) == 2
    assert len(control.workers(runtime)) == 1
    results = [json.loads((tmp_path / name / "result.json").read_text()) for name in ("a", "b")]
    assert [r["status"] for r in results] == ["Completed", "Completed"]
    assert results[0]["metrics"] == results[1]["metrics"]  # same job, same seed: same figures
    # The job's time counts from the command's start, not from the fork.
    assert results[1]["duration_s"] >= sum(results[1]["phases"].values()) - 0.05


def test_a_user_error_reads_and_exits_as_it_does_without_a_worker(runtime: Path, tmp_path: Path):
    args = ("--data", str(tmp_path / "missing"), "--output", str(tmp_path / "job"))
    resident = train(runtime, *args)
    local = train(runtime, *args, resident=False)
    assert resident.returncode == local.returncode == 2
    assert without_notice(resident.stderr) == local.stderr
    assert "error:" in resident.stderr


def start_long_job(runtime: Path, data: Path, job: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "vizsla", "train", "--data", str(data), "--output", str(job),
               "--epochs", "2000", "--finetune", "full", "--no-tracking", "--quiet"]
    process = subprocess.Popen(command, cwd=runtime.parent, env=environment(runtime), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    metrics = job / "metrics.jsonl"
    while time.monotonic() < deadline:
        if metrics.exists() and '"kind": "epoch"' in metrics.read_text():
            return process
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the job wrote no epoch in 120 s")


def test_ctrl_c_reaches_the_job_which_stops_with_a_checkpoint(runtime: Path, data: Path, tmp_path: Path):
    process = start_long_job(runtime, data, tmp_path / "job")
    child = forked(runtime)[-1]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    result = json.loads((tmp_path / "job" / "result.json").read_text())
    assert result["status"] == "Stopped", stderr[-3000:]
    assert (tmp_path / "job" / "checkpoints" / "last.pt").exists()
    assert process.returncode == 0  # a stopped job is not a failed one, with or without a worker
    wait_until_gone(child)


def test_a_killed_command_takes_its_job_with_it(runtime: Path, data: Path, tmp_path: Path):
    process = start_long_job(runtime, data, tmp_path / "job")
    child = forked(runtime)[-1]
    assert alive(child)
    process.kill()
    process.communicate(timeout=30)
    wait_until_gone(child)
    assert control.workers(runtime), "the worker itself keeps running"


def wait_until_gone(pid: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs"
        time.sleep(0.1)


def test_vizsla_workers_lists_and_stops_them(runtime: Path, data: Path, tmp_path: Path):
    done = train(runtime, "--data", str(data), "--output", str(tmp_path / "job"), "--epochs", "1",
                 "--no-tracking")
    assert done.returncode == 0, done.stderr[-3000:]
    env = environment(runtime)
    listed = subprocess.run([sys.executable, "-m", "vizsla", "workers", "list"], env=env, capture_output=True,
                            text=True, timeout=60)
    pids = [w.pid for w in control.workers(runtime)]
    assert listed.returncode == 0 and pids and all(str(pid) in listed.stdout for pid in pids), listed.stdout
    stopped = subprocess.run([sys.executable, "-m", "vizsla", "workers", "stop"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and f"stopped {len(pids)} resident worker(s)" in stopped.stdout
    assert control.workers(runtime) == []
    assert not list(runtime.glob("*.sock"))
