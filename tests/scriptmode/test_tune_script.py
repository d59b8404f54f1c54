"""Tuning a user's own SageMaker script: regex objective, parallel trials, failures, pruning, best."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vizsla.cli.app import app
from vizsla.errors import SpecError, UserError
from vizsla.tuning.job import run_tuning
from vizsla.tuning.tune_spec import build_tune_spec

SCRIPTS = Path(__file__).parent / "scripts"
LOSS = "average test loss"
LOSS_REGEX = r"Test set: Average loss: ([0-9\.]+)"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vizsla.testing.images import make_image_folder

    return make_image_folder(
        tmp_path_factory.mktemp("hpo") / "data", classes=("cat", "dog"), per_class=6, seed=1
    )


def _script(images: Path, **extra) -> dict:
    return {
        "entry_point": "hpo.py",
        "source_dir": str(SCRIPTS),
        "channels": {"training": str(images / "train"), "test": str(images / "valid")},
        "hyperparameters": {"epochs": 2, "test-batch-size": 64},
        "metric_definitions": [{"Name": LOSS, "Regex": LOSS_REGEX}],
        "tracking": {"enabled": False},
        **extra,
    }


def _last_printed(job_dir: Path, regex: str) -> float:
    """The last value the regex matches in the trial's own output log (what SageMaker would take)."""
    texts = [p.read_text(errors="replace") for p in job_dir.rglob("*.log")]
    values = [float(m) for text in texts for m in re.findall(regex, text)]
    assert values, f"no match of {regex!r} in the logs of {job_dir}"
    return values[-1]


@pytest.mark.slow
def test_four_trials_two_parallel_regex_objective_and_best(images, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "lr": {"type": "Continuous", "min": 0.001, "max": 0.1, "scaling": "Logarithmic"},
                "batch-size": {"type": "Categorical", "values": [4, 8]},
            }
        )
    )
    out = tmp_path / "tune"
    args = [
        "tune",
        "--entry-point", "hpo.py",
        "--source-dir", str(SCRIPTS),
        "--channel", f"training={images / 'train'}",
        "--channel", f"test={images / 'valid'}",
        "--hyperparameters", "epochs=2 test-batch-size=64",
        "--metric-definition", f"{LOSS}={LOSS_REGEX}",
        "--objective", LOSS,
        "--minimize",
        "--space", str(space),
        "--max-jobs", "4",
        "--max-parallel", "2",
        "--strategy", "Random",
        "--output", str(out),
        "--no-tracking",
        "--quiet",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "result.json").read_text())
    assert summary["counts"]["Completed"] == 4, summary
    assert summary["objective"] == {"metric": LOSS, "type": "Minimize"}
    rows = list(csv.DictReader((out / "analytics.csv").open()))
    assert len(rows) == 4
    values = []
    for row in rows:
        trial_dir = out / row["job_dir"]  # relative to the tuning job folder
        trial_result = json.loads((trial_dir / "result.json").read_text())
        assert trial_result["kind"] == "script" and trial_result["status"] == "Completed"
        hps = trial_result["hyperparameters"]
        assert hps["epochs"] == 2 and hps["test-batch-size"] == 64  # static, merged under the sampled
        assert isinstance(hps["batch-size"], int) and 0.001 <= hps["lr"] <= 0.1
        assert f"--batch-size {hps['batch-size']}" in " ".join(trial_result["command"])
        objective = float(row["objective"])
        assert objective == pytest.approx(_last_printed(trial_dir, LOSS_REGEX))
        assert trial_result["metrics"][LOSS] == pytest.approx(objective)
        values.append(objective)
    best = CliRunner().invoke(app, ["tune", "best", str(out), "--json"])
    assert best.exit_code == 0, best.output
    record = json.loads(best.output)
    assert record["value"] == pytest.approx(min(values))
    assert (Path(record["model_path"]) / "model.pth").is_file()
    assert record["hyperparameters"]["batch-size"] in (4, 8)


@pytest.mark.slow
def test_failing_and_silent_trials_are_failed_and_the_job_goes_on(tmp_path):
    """A script that exits non-zero, and one that never prints the objective: Failed with the reason."""
    script = tmp_path / "code" / "flaky.py"
    script.parent.mkdir()
    script.write_text(
        "import argparse\n"
        "parser = argparse.ArgumentParser()\n"
        "parser.add_argument('--mode', type=str)\n"
        "parser.add_argument('--epochs', type=int, default=3)\n"
        "args = parser.parse_args()\n"
        "if args.mode == 'crash':\n"
        "    raise ValueError('batch of zero images')\n"
        "for epoch in range(args.epochs):\n"
        "    if args.mode != 'silent':\n"
        "        print(f'Test set: Average loss: {1.0 / (epoch + 1):.4f}', flush=True)\n"
    )
    data = tmp_path / "train"
    data.mkdir()
    config = {
        "strategy": "Grid",
        "objective": {"metric": LOSS, "type": "Minimize"},
        "max_parallel": 2,
        "ranges": {"mode": {"type": "Categorical", "values": ["ok", "crash", "silent"]}},
        "script": {
            "entry_point": "flaky.py",
            "source_dir": str(script.parent),
            "channels": {"training": str(data)},
            "metric_definitions": [{"name": LOSS, "regex": LOSS_REGEX}],
            "tracking": {"enabled": False},
        },
    }
    out = tmp_path / "tune"
    summary = run_tuning(build_tune_spec(config, {"output": str(out)}, source="test"), progress=False)
    assert summary["counts"]["Completed"] == 1 and summary["counts"]["Failed"] == 2, summary
    assert summary["best"]["value"] == pytest.approx(1 / 3, abs=1e-4)  # the last value printed, not the min
    rows = {r["mode"]: r for r in _rows(out)}
    crashed = rows["crash"]
    assert crashed["status"] == "Failed" and "ValueError: batch of zero images" in crashed["error"]
    silent = rows["silent"]
    assert silent["status"] == "Failed" and "never printed the objective metric" in silent["error"]


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "analytics.csv").open()))


@pytest.mark.slow
def test_median_early_stopping_prunes_a_script(tmp_path):
    """Each objective match is an intermediate value: a clearly worse script is stopped mid-run."""
    script = tmp_path / "code" / "curve.py"
    script.parent.mkdir()
    script.write_text(
        "import argparse, time\n"
        "parser = argparse.ArgumentParser()\n"
        "parser.add_argument('--offset', type=float)\n"
        "parser.add_argument('--epochs', type=int)\n"
        "args = parser.parse_args()\n"
        "for epoch in range(args.epochs):\n"
        "    print(f'Test set: Average loss: {args.offset + 1.0 / (epoch + 1):.4f}', flush=True)\n"
        "    time.sleep(0.2)\n"
    )
    config = {
        "strategy": "Grid",
        "early_stopping": "Auto",
        "objective": {"metric": LOSS, "type": "Minimize"},
        "random_seed": 0,  # Grid order of this seed: the bad curve (index 0) runs last, after 3 trials
        "ranges": {"offset": {"type": "Categorical", "values": [5.0, 0.1, 0.2, 0.0]}},
        "script": {
            "entry_point": "curve.py",
            "source_dir": str(script.parent),
            "hyperparameters": {"epochs": 8},
            "metric_definitions": [{"name": LOSS, "regex": LOSS_REGEX}],
            "tracking": {"enabled": False},
        },
    }
    out = tmp_path / "tune"
    summary = run_tuning(build_tune_spec(config, {"output": str(out)}, source="test"), progress=False)
    assert summary["counts"]["Completed"] == 3 and summary["counts"]["Pruned"] == 1, summary
    pruned = [r for r in _rows(out) if r["status"] == "Pruned"]
    trial_result = json.loads((out / pruned[0]["job_dir"] / "result.json").read_text())
    assert trial_result["status"] == "Stopped" and trial_result["hyperparameters"]["offset"] == 5.0
    assert trial_result["metric_series_counts"][LOSS] < 8


def test_spec_validation(images, tmp_path):
    ranges = {"lr": {"type": "Continuous", "min": 0.001, "max": 0.1}}
    base = {"output": str(tmp_path / "t"), "ranges": ranges}
    spec = build_tune_spec({**base, "objective": LOSS, "script": _script(images)}, source="test")
    assert spec.is_script and spec.objective.type == "Minimize"  # a name ending in 'loss'
    with pytest.raises(SpecError, match="not one of the script's metric definitions.*average test loss"):
        build_tune_spec({**base, "objective": "valid_accuracy", "script": _script(images)}, source="t")
    with pytest.raises(SpecError, match="either training .* or script"):
        build_tune_spec(
            {**base, "objective": LOSS, "script": _script(images), "training": {"data": {"root": "x"}}},
            source="t",
        )
    with pytest.raises(SpecError, match="script.output"):
        build_tune_spec({**base, "objective": LOSS, "script": _script(images, output="x")}, source="t")
    no_epochs = _script(images, hyperparameters={})
    with pytest.raises(SpecError, match="Hyperband needs the script's epochs"):
        build_tune_spec({**base, "objective": LOSS, "strategy": "Hyperband", "script": no_epochs}, source="t")
    hyperband = build_tune_spec(
        {**base, "objective": LOSS, "strategy": "Hyperband", "script": _script(images)}, source="t"
    )
    from vizsla.tuning.study import training_epochs

    assert training_epochs(hyperband) == 2
    # SageMaker's JSON shape: StaticHyperParameters become the script's own arguments, names verbatim
    sm = {
        "ParameterRanges": {"CategoricalParameterRanges": [{"Name": "batch-size", "Values": ["8", "16"]}]},
        "StaticHyperParameters": {"epochs": "3", "sagemaker_program": "hpo.py"},
        "script": _script(images, hyperparameters={}),
        "objective": LOSS,
    }
    parsed = build_tune_spec(sm, {"output": str(tmp_path / "sm")}, source="t")
    assert parsed.script["hyperparameters"] == {"epochs": 3}
    assert parsed.ranges["batch-size"].values == [8, 16]


def test_cli_refuses_trainer_options_with_a_script(images, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: Continuous, min: 0.001, max: 0.1}\n")
    result = CliRunner().invoke(
        app,
        [
            "tune",
            "--entry-point",
            "hpo.py",
            "--epochs",
            "3",
            "--space",
            str(space),
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert isinstance(result.exception, UserError)
    assert "--epochs set Vizsla's own trainer" in result.exception.message
    missing = CliRunner().invoke(
        app,
        [
            "tune", "--entry-point", "nope.py", "--source-dir", str(SCRIPTS),
            "--metric-definition", f"{LOSS}={LOSS_REGEX}", "--objective", LOSS,
            "--space", str(space), "-o", str(tmp_path / "o2"), "-q",
        ],
    )  # fmt: skip
    assert isinstance(missing.exception, UserError)
    assert "entry point not found" in missing.exception.message
