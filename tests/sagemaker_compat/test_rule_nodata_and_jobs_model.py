"""Issue 17, item 13: a debugger rule that never saw a tensor of its collections is NoData (not
evaluated, with the reason), not NoIssuesFound; `vizsla jobs list` names a script tuning job's entry point
as its model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml

from vizsla.callbacks import TrainState
from vizsla.debugger.rules.memory import MemoryTrial
from vizsla.debugger.runner import RuleEngine, RuleRunner, build_entries, evaluate_offline


def _by_name(content: dict) -> dict[str, dict]:
    return {rule["name"]: rule for rule in content["rules"]}


def test_rules_without_their_tensors_are_no_data_with_a_reason():
    trial = MemoryTrial(complete=True)
    for step in range(12):
        trial.add("loss", step, np.float32(1.0 / (step + 1)))
    engine = RuleEngine(
        build_entries(["VanishingGradient", "LossNotDecreasing", "DeadRelu"], default_rules=False)
    )
    engine.cycle(trial)
    engine.finish(trial)
    rules = _by_name(engine.to_json())
    assert rules["LossNotDecreasing"]["status"] == "NoIssuesFound"  # it had its loss and the loss falls
    for name, collection in (("VanishingGradient", "gradients"), ("DeadRelu", "relu_output")):
        assert rules[name]["status"] == "NoData"
        assert "not evaluated" in rules[name]["note"] and collection in rules[name]["note"]
    # with its tensors present the same rule is evaluated as before
    trial.add_reduced("gradient/w.weight", 12, np.full(4, 0.5), mode="TRAIN")
    assert _by_name(evaluate_offline(trial, ["VanishingGradient"]))["VanishingGradient"]["status"] == (
        "NoIssuesFound"
    )


def test_a_job_that_wrote_no_tensors_leaves_its_rules_no_data(tmp_path: Path):
    spec = SimpleNamespace(enabled=True, rules=[], default_rules=True, poll_interval_s=5)
    runner = RuleRunner(spec, tmp_path, poll_interval=5)  # no trial: the hook never created the store
    state = TrainState(spec=SimpleNamespace(job_name="j"), job_dir=tmp_path)
    runner.fit_start(state)
    state.status = "Failed"
    runner.fit_end(state)
    rules = _by_name(json.loads(runner.rules_file.read_text()))
    assert rules["VanishingGradient"]["status"] == "NoData"
    assert "no tensors were recorded" in rules["VanishingGradient"]["note"]
    assert "NoIssuesFound" not in {r["status"] for n, r in rules.items() if n != "StalledTraining"}


def test_describe_training_job_reports_no_data_as_a_failed_evaluation(tmp_path: Path):
    from vizsla.sagemaker.session import describe_job_dir

    job = tmp_path / "job-1"
    job.mkdir()
    result = {
        "job_name": "job-1",
        "status": "Completed",
        "debugger": {
            "rules": [
                {"name": "VanishingGradient", "status": "NoData", "note": "not evaluated: no gradients"},
                {"name": "LossNotDecreasing", "status": "NoIssuesFound"},
            ]
        },
    }
    (job / "result.json").write_text(json.dumps(result))
    statuses = describe_job_dir(job)["DebugRuleEvaluationStatuses"]
    assert statuses[0] == {
        "RuleConfigurationName": "VanishingGradient",
        "RuleEvaluationStatus": "Error",
        "StatusDetails": "NoData: not evaluated: no gradients",
    }
    assert statuses[1]["RuleEvaluationStatus"] == "NoIssuesFound"


def test_jobs_list_names_a_script_tuning_jobs_entry_point(tmp_path: Path):
    from vizsla.cli.jobs import summarize_tuning_job

    script_job = tmp_path / "hpo-tuning"
    script_job.mkdir()
    tune = {"output": str(script_job), "ranges": {"lr": {"type": "Continuous", "min": 0.001, "max": 0.1}}}
    (script_job / "tune.yaml").write_text(yaml.safe_dump({**tune, "script": {"entry_point": "hpo.py"}}))
    assert summarize_tuning_job(script_job).model == "hpo.py"
    vizsla_job = tmp_path / "vizsla-tuning"
    vizsla_job.mkdir()
    (vizsla_job / "tune.yaml").write_text(
        yaml.safe_dump({**tune, "training": {"model": {"name": "resnet18"}}})
    )
    assert summarize_tuning_job(vizsla_job).model == "resnet18"
