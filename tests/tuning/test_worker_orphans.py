"""A trial left RUNNING by a SIGKILLed tuning process is still stopping when the job is run again: the new
worker must wait for it and then retry it, not end with it RUNNING once the rest of the budget is used."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna

from vizsla.testing.jobs import tiny_spec_dict
from vizsla.tuning.study import worker_name
from vizsla.tuning.tune_spec import build_tune_spec
from vizsla.tuning.worker import Worker, WorkerOptions


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_worker_waits_for_a_stopping_orphan_then_retries_it(tmp_path: Path) -> None:
    training = tiny_spec_dict(tmp_path / "images", tmp_path / "unused")
    training.pop("output")
    config = {
        "ranges": {"lr": {"type": "Continuous", "min": 1e-3, "max": 1e-1}},
        "training": training,
        "max_jobs": 1,
        "max_retries": 0,  # the retry is then recorded as Failed at once: no training runs in this test
    }
    spec = build_tune_spec(config, {"output": str(tmp_path / "tune")}, source="test")
    study = optuna.create_study(direction="maximize")
    orphan = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1)})
    stopping = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])  # the orphan's process
    host = worker_name().split(":")[0]
    orphan.set_user_attr("worker", f"{host}:{_dead_pid()}")
    orphan.set_user_attr("trial_pid", stopping.pid)
    orphan.set_user_attr("job_dir", str(tmp_path / "tune" / "trials" / "trial-0000"))

    events: list[str] = []
    options = WorkerOptions(
        trials_dir=tmp_path / "trials",
        logs_dir=tmp_path / "logs",
        max_parallel=1,
        storage_url="unused",
        study_name=study.study_name,
        on_event=events.append,
    )
    reaper = threading.Thread(target=stopping.wait)  # reap it as its new parent (init) would
    reaper.start()
    started = time.monotonic()
    reason = Worker(study, spec, options).run()
    waited = time.monotonic() - started
    reaper.join()

    assert waited >= 2.0, f"the worker ended after {waited:.1f} s while the orphan was still stopping"
    assert any("is stopping" in e for e in events), events
    trial = study.get_trials()[0]
    assert trial.state == optuna.trial.TrialState.FAIL, (trial.state, trial.user_attrs, reason)
    assert "no retries left" in trial.user_attrs["error"]
