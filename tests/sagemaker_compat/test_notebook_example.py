"""examples/notebook_dog_breeds.py runs top to bottom as `python notebook.py` (no __main__ guard): tune,
best_estimator, fit, describe, attach, deploy with predictor_cls, predict with serializers, delete."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook_dog_breeds.py"


@pytest.mark.slow
def test_the_dog_breed_notebook_runs_as_a_script(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, str(NOTEBOOK)], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "bootstrapping phase" not in output
    assert output.count("Default bucket:") == 1  # the notebook ran once: trials did not re-run it
    assert "NOTEBOOK DONE" in done.stdout
    assert "Training job dog-pytorch-" in done.stdout and ": Completed" in done.stdout
    assert "Same image by URL: 10 scores" in done.stdout
    listing = subprocess.run(
        [sys.executable, "-m", "vizsla", "jobs", "list", "runs"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    tuning_rows = [
        line for line in listing.stdout.splitlines() if "trials" in line and "/trials/" not in line
    ]
    assert tuning_rows and all("hpo.py" in line for line in tuning_rows), listing.stdout
