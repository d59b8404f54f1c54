"""examples/notebook_dog_breeds.py runs top to bottom as `python notebook.py` (no __main__ guard) and cell by
cell in a real Jupyter kernel: tune, best_estimator, fit, describe, attach, deploy with predictor_cls, predict
with serializers, delete."""

from __future__ import annotations

import os
import shutil
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


def _cell_text(cell) -> str:
    """What a cell printed: its stream outputs and plain-text results, joined."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") in ("execute_result", "display_data"):
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


@pytest.mark.slow
def test_the_dog_breed_notebook_runs_cell_by_cell_in_a_jupyter_kernel(tmp_path: Path) -> None:
    """Jupyter-style: an ipykernel kernel whose __main__ is interactive (no __file__, cells run one by one in
    one namespace), started in the notebook's folder next to its scripts, as a student opens it."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    shutil.copytree(NOTEBOOK.parent / "dog_breeds", tmp_path / "dog_breeds")
    notebook = jupytext.read(NOTEBOOK)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert len(code_cells) >= 10 and "__main__" not in NOTEBOOK.read_text()
    client = nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the cell and its traceback when one fails
    output = "".join(_cell_text(cell) for cell in code_cells)
    assert output.count("Default bucket:") == 1
    assert "Training job dog-pytorch-" in output and ": Completed" in output
    assert "Same image by URL: 10 scores" in output
    assert output.rstrip().endswith("NOTEBOOK DONE")
    assert (tmp_path / "runs").is_dir() and (tmp_path / "dogImages" / "train").is_dir()
