"""Tuning trials that are distributed jobs (`vizsla tune --trial-nproc 2`): real torchrun, gloo on CPU.

Each trial runs its training job in two processes; rank 0 reports to the study, the pruner's decision is a
stop both processes agree on, and a failing trial is Failed without hanging the tuning job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from vizsla.testing.images import make_image_folder
from vizsla.testing.jobs import descendant_pids, tiny_spec_dict, wait_for_first_epoch
from vizsla.tuning.study import create_storage
from vizsla.tuning.trial import TrialRequest, _train
from vizsla.tuning.tune_spec import build_tune_spec

pytestmark = pytest.mark.slow

VIZSLA = [sys.executable, "-m", "vizsla"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dist-tune-data") / "images"
    return make_image_folder(root, classes=("cat", "dog", "fox"), per_class=12, seed=0)


def _training(data: Path, **train) -> dict:
    spec = tiny_spec_dict(data, Path("unused"), **train)
    spec.pop("output")
    return spec


def test_tune_with_two_process_trials(data, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "ranges": {"lr": {"type": "Continuous", "min": 1e-3, "max": 1e-1, "scaling": "Logarithmic"}},
                "training": _training(data, epochs=2, batch_size=8),
            }
        )
    )
    out = tmp_path / "tune"
    done = subprocess.run(
        [*VIZSLA, "tune", "--space", str(space), "--output", str(out), "--max-jobs", "2",
         "--trial-nproc", "2", "--max-parallel", "2", "--strategy", "Random", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip  (two trials at once: four processes, two private rendezvous)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "Completed", result
    assert result["counts"]["Completed"] == 2
    for trial_dir in sorted((out / "trials").iterdir()):
        resolved = yaml.safe_load((trial_dir / "spec.yaml").read_text())
        assert resolved["distributed"]["world_size"] == 2
        assert resolved["distributed"]["per_process_batch_size"] == 4  # the global batch is the trial's
        assert json.loads((trial_dir / "result.json").read_text())["status"] == "Completed"
        log = (out / "logs" / f"{trial_dir.name}.log").read_text()
        assert "rank 0 of 2 joined the gloo process group" in log
    assert yaml.safe_load((out / "tune.yaml").read_text())["trial_nproc"] == 2
    import csv

    with (out / "analytics.csv").open() as handle:
        first, second = sorted(csv.DictReader(handle), key=lambda row: int(row["trial"]))
    assert second["started"] <= first["finished"]  # they ran at the same time


def _study_with_strong_rivals(tmp_path: Path, epochs: int) -> tuple[optuna.Study, str]:
    """A study whose 3 earlier trials reported a perfect objective at every epoch: the median pruner
    (early_stopping Auto) prunes the next trial after its first epoch past warm-up."""
    storage_url = str(tmp_path / "study.journal")
    study = optuna.create_study(
        study_name="rivals", storage=create_storage(storage_url), direction="maximize"
    )
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)}
    for _ in range(3):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 0.01},
                distributions=distributions,
                value=1.0,
                intermediate_values={epoch: 1.0 for epoch in range(epochs)},
            )
        )
    return study, storage_url


def _request(study: optuna.Study, storage_url: str, spec, trial_id: int, tmp_path: Path) -> TrialRequest:
    return TrialRequest(
        storage_url=storage_url,
        study_name=study.study_name,
        trial_id=trial_id,
        tune_spec=spec.model_dump(mode="json"),
        job_dir=str(tmp_path / "trial"),
        log_path=str(tmp_path / "trial.log"),
        coordinator_pid=os.getpid(),
        threads=2,
        parent_run_id=None,
        tracking_uri=None,
    )


def test_pruned_distributed_trial_stops_every_rank(data, tmp_path):
    epochs = 6
    study, storage_url = _study_with_strong_rivals(tmp_path, epochs)
    spec = build_tune_spec(
        {
            "output": str(tmp_path / "tune"),
            "ranges": {"lr": {"type": "Continuous", "min": 1e-3, "max": 1e-1, "scaling": "Logarithmic"}},
            "early_stopping": "Auto",
            "trial_nproc": 2,
            "training": _training(data, epochs=epochs, batch_size=8),
        }
    )
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
    outcome = _train(trial, spec, _request(study, storage_url, spec, trial._trial_id, tmp_path))

    assert outcome.status == "Pruned", outcome
    result = json.loads((tmp_path / "trial" / "result.json").read_text())
    assert result["status"] == "Stopped"
    assert "pruned" in result["stop_reason"]
    records = (tmp_path / "trial" / "metrics.jsonl").read_text().splitlines()
    trained = [r["epoch"] for r in map(json.loads, records) if r.get("kind") == "epoch"]
    assert trained == [0, 1], "pruned after the first epoch past warm-up, every rank stopped there"
    assert study.trials[-1].intermediate_values.keys() == {0, 1}  # rank 0 alone reported, once per epoch


def test_failing_distributed_trial_is_failed_with_its_error(data, tmp_path):
    study, storage_url = _study_with_strong_rivals(tmp_path, 2)
    spec = build_tune_spec(
        {
            "output": str(tmp_path / "tune"),
            "ranges": {"lr": {"type": "Continuous", "min": 1e-3, "max": 1e-1, "scaling": "Logarithmic"}},
            "trial_nproc": 2,
            "training": {**_training(data, epochs=2), "model": {"name": "no_such_model_anywhere"}},
        }
    )
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
    outcome = _train(trial, spec, _request(study, storage_url, spec, trial._trial_id, tmp_path))

    assert outcome.status == "Failed"
    assert "no_such_model_anywhere" in (outcome.error or ""), outcome.error



def test_killed_rank_of_a_trial_is_restarted_from_its_checkpoint(data, tmp_path):
    epochs = 30
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "ranges": {"lr": {"type": "Continuous", "min": 1e-3, "max": 1e-2, "scaling": "Logarithmic"}},
                "training": _training(data, epochs=epochs, batch_size=8),
                "max_retries": 1,
            }
        )
    )
    out = tmp_path / "tune"
    launcher = subprocess.Popen(
        [*VIZSLA, "tune", "--space", str(space), "--output", str(out), "--max-jobs", "1",
         "--trial-nproc", "2", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_first_epoch(out / "trials" / "trial-0000" / "metrics.jsonl")  # kill rank 1 a little later
    time.sleep(0.5)
    ranks = descendant_pids(launcher.pid, "vizsla.tuning.distributed_trial")
    assert len(ranks) == 2
    os.kill(ranks[-1], signal.SIGKILL)
    _, err = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, err[-3000:]

    result = json.loads((out / "result.json").read_text())
    assert result["counts"]["Completed"] == 1, result
    trial = json.loads((out / "trials" / "trial-0000" / "result.json").read_text())
    assert trial["status"] == "Completed" and trial["epochs_completed"] == epochs
    assert "restart 1 of the workers: resuming from" in (out / "logs" / "trial-0000.log").read_text()
