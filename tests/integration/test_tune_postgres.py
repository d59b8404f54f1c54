"""Two tuning workers in two processes share one study on a real PostgreSQL server, holding the cap."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from vizsla.testing.images import make_image_folder
from vizsla.testing.jobs import tiny_spec_dict
from vizsla.testing.postgres import create_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_JOBS = 6


def test_two_workers_split_one_study_with_the_total_cap_held(postgres_url: str, tmp_path: Path) -> None:
    url = create_database(postgres_url, "tune_two_workers")
    data = make_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=8, seed=0)
    training = tiny_spec_dict(data, tmp_path / "unused", epochs=3)
    training.pop("output")
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "ranges": {"lr": {"type": "Continuous", "min": 1e-3, "max": 1e-1, "scaling": "Logarithmic"}},
                "training": training,
                "strategy": "Random",
            }
        )
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vizsla",
            "tune",
            "--space",
            str(space),
            "--output",
            str(tmp_path / "tune-a"),
            "--storage",
            url,
            "--study-name",
            "shared",
            "--max-jobs",
            str(MAX_JOBS),
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while "shared" not in optuna.get_all_study_names(url):  # the first worker creates the study
        assert time.monotonic() < deadline and first.poll() is None, "the study never appeared"
        time.sleep(0.2)
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "vizsla",
            "tune",
            "worker",
            "--study",
            "shared",
            "--storage",
            url,
            "--output",
            str(tmp_path / "tune-b"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    first_output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, first_output
    assert second.returncode == 0, second.stderr

    trials = optuna.load_study(study_name="shared", storage=url).get_trials()
    counted = [t for t in trials if "not_counted" not in t.user_attrs]
    assert len(counted) == MAX_JOBS
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in counted)
    workers = {t.user_attrs["worker"] for t in counted}
    assert len(workers) == 2, workers  # both processes ran trials
    job_dirs = [Path(t.user_attrs["job_dir"]) for t in counted]
    assert sum(d.parent.parent.name == "tune-a" for d in job_dirs) >= 1
    assert sum(d.parent.parent.name == "tune-b" for d in job_dirs) >= 1
    assert all((d / "result.json").is_file() for d in job_dirs)
