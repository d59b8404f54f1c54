"""The rule runner: background evaluation, statuses, rules.json, actions, offline re-runs."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vizsla.callbacks import TrainState
from vizsla.debugger.rules import BaseRule, register_rule
from vizsla.debugger.rules.memory import MemoryTrial
from vizsla.debugger.runner import (
    DEFAULT_RULES,
    MAX_FINDINGS,
    RuleEngine,
    RuleRunner,
    build_entries,
    evaluate_offline,
)
from vizsla.errors import SpecError


@register_rule
@dataclass
class _Broken(BaseRule):
    """A rule that raises: the runner must mark it Error and go on."""

    name = "TestBrokenRule"

    def evaluate(self, trial, step, mode):
        raise RuntimeError("boom")


def debug_spec(rules: list[dict], default_rules: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        out_dir="debug", rules=[SimpleNamespace(**r) for r in rules], default_rules=default_rules
    )


def rule(name: str, actions: list[str] | None = None, **parameters) -> dict:
    return {"name": name, "parameters": parameters, "actions": actions or ["log"]}


def flat_losses(trial: MemoryTrial, start: int, stop: int) -> None:
    for step in range(start, stop):
        trial.add("loss", step, np.float32(1.1))


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_runner_evaluates_in_the_background_stops_the_job_and_writes_rules_json(tmp_path: Path) -> None:
    trial = MemoryTrial()
    spec = debug_spec(
        [
            rule("LossNotDecreasing", ["log", "stop"], num_steps=5),
            rule("VanishingGradient"),
            rule("TestBrokenRule"),
        ]
    )
    runner = RuleRunner(spec, tmp_path, trial=trial, poll_interval=0.02)
    state = TrainState(spec=None, job_dir=tmp_path)
    runner.fit_start(state)
    rules_file = tmp_path / "debug" / "rules.json"
    assert {r["status"] for r in json.loads(rules_file.read_text())["rules"]} == {"InProgress"}
    flat_losses(trial, 0, 8)
    time.sleep(0.2)
    assert not state.should_stop  # not enough steps for two windows yet
    flat_losses(trial, 8, 12)
    wait_for(lambda: state.should_stop)
    assert state.stop_reason.startswith(
        "debugger rule LossNotDecreasing: loss: mean of the last 5 TRAIN steps"
    )
    trial.mark_complete()
    state.status = "Stopped"
    runner.fit_end(state)
    content = json.loads(rules_file.read_text())
    by_name = {r["name"]: r for r in content["rules"]}
    assert set(content) == {"rules", "updated"}
    lnd = by_name["LossNotDecreasing"]
    assert lnd["status"] == "IssuesFound" and lnd["actions"] == ["log", "stop"]
    assert lnd["parameters"]["num_steps"] == 5 and lnd["steps_evaluated"] == {"TRAIN": 12}
    assert lnd["findings"][0]["step"] == 9 and lnd["findings"][0]["tensor"] == "loss"
    assert set(lnd["findings"][0]) == {"rule", "step", "mode", "tensor", "value", "threshold", "message"}
    assert (  # the trial holds only a loss: no gradient was ever seen, so the rule was not evaluated
        by_name["VanishingGradient"]["status"] == "NoData"
        and by_name["VanishingGradient"]["error"] is None
    )
    assert (
        by_name["TestBrokenRule"]["status"] == "Error"
        and "RuntimeError: boom" in by_name["TestBrokenRule"]["error"]
    )


def test_log_command_and_webhook_actions_run_once_per_rule(tmp_path: Path, caplog) -> None:
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "finding.json"
    actions = [
        "log",
        f"command:cat > {out}",
        f"webhook:http://127.0.0.1:{server.server_port}/hook",
        "command:exit 3",
    ]
    trial = MemoryTrial()
    for step in range(3):
        trial.add_reduced(f"gradient/layer{step}.weight", step, np.zeros((4, 4)))
    trial.mark_complete()
    runner = RuleRunner(
        debug_spec([rule("VanishingGradient", actions)]), tmp_path, trial=trial, poll_interval=5
    )
    state = TrainState(spec=SimpleNamespace(job_name="job-1", train=None), job_dir=tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="vizsla.debugger"):
            runner.fit_start(state)
            state.status = "Completed"
            runner.fit_end(state)
    finally:
        server.shutdown()
    payload = json.loads(out.read_text())
    assert payload["job"] == "job-1" and payload["rule"] == "VanishingGradient" and payload["step"] == 0
    assert received == [payload]  # first finding only, although three steps tripped
    messages = [r.getMessage() for r in caplog.records]
    assert (
        sum("debugger rule VanishingGradient: gradient/layer0.weight mean abs 0" in m for m in messages) == 1
    )
    assert any("exited 3" in m for m in messages)  # a failing action is logged, never raised
    content = json.loads((tmp_path / "debug" / "rules.json").read_text())["rules"][0]
    assert content["findings_total"] == 3 and not state.should_stop


def test_findings_are_capped_but_counted() -> None:
    trial = MemoryTrial()
    for step in range(MAX_FINDINGS + 20):
        trial.add_reduced("gradient/w.weight", step, np.zeros(4))
    engine = RuleEngine(build_entries(["VanishingGradient"], default_rules=False))
    engine.cycle(trial)
    engine.finish(trial)
    entry = engine.to_json()["rules"][0]
    assert len(entry["findings"]) == MAX_FINDINGS and entry["findings_total"] == MAX_FINDINGS + 20


def test_default_set_and_overrides() -> None:
    entries = build_entries([rule("LossNotDecreasing", ["stop"], num_steps=3)], default_rules=True)
    assert [e.name for e in entries] == list(DEFAULT_RULES)
    lnd = next(e for e in entries if e.name == "LossNotDecreasing")
    assert lnd.actions == ["stop"] and lnd.rule.num_steps == 3
    stalled = build_entries([rule("StalledTrainingRule", stop_training_on_fire=True)], default_rules=False)
    assert stalled[0].name == "StalledTraining" and stalled[0].actions == ["log", "stop"]
    with pytest.raises(SpecError, match="unknown debugger rule"):
        build_entries(["NoSuchRule"], default_rules=False)


def test_images_rules_are_skipped_when_the_head_trains_on_cached_features(tmp_path: Path) -> None:
    trial = MemoryTrial(complete=True)
    runner = RuleRunner(debug_spec([], default_rules=True), tmp_path, trial=trial, poll_interval=5)
    spec = SimpleNamespace(job_name="j", train=SimpleNamespace(finetune="head", feature_cache="auto"))
    state = TrainState(spec=spec, job_dir=tmp_path)
    runner.fit_start(state)
    runner.fit_end(state)
    statuses = {
        r["name"]: (r["status"], r["note"]) for r in json.loads(runner.rules_file.read_text())["rules"]
    }
    assert (
        statuses["CheckInputImages"][0] == "Skipped"
        and "cached backbone features" in statuses["CheckInputImages"][1]
    )
    evaluated = {n: s for n, (s, _) in statuses.items() if n != "CheckInputImages"}
    assert set(evaluated.values()) <= {"NoIssuesFound", "NoData"} and "NoIssuesFound" in evaluated.values()


def test_stalled_training_uses_the_runner_clock(tmp_path: Path) -> None:
    trial = MemoryTrial()
    trial.add("loss", 0, 1.0)
    runner = RuleRunner(
        debug_spec([rule("StalledTraining", ["stop"], threshold=0.2)]),
        tmp_path,
        trial=trial,
        poll_interval=0.02,
    )
    state = TrainState(spec=None, job_dir=tmp_path)
    runner.fit_start(state)
    wait_for(lambda: state.should_stop, timeout=5)
    assert "no new step for" in state.stop_reason
    trial.mark_complete()
    runner.fit_end(state)


def test_evaluate_offline_reruns_rules_on_a_stored_trial() -> None:
    trial = MemoryTrial(complete=True)
    flat_losses(trial, 0, 30)
    result = evaluate_offline(trial, None)
    names = [r["name"] for r in result["rules"]]
    assert "StalledTraining" not in names and len(names) == len(DEFAULT_RULES) - 1
    by_name = {r["name"]: r for r in result["rules"]}
    assert by_name["LossNotDecreasing"]["status"] == "IssuesFound"
    assert by_name["VanishingGradient"]["status"] == "NoData"  # only losses were stored
    chosen = evaluate_offline(
        trial,
        [{"name": "StalledTraining"}, {"name": "LossNotDecreasing", "parameters": {"diff_percent": -50}}],
    )
    by_name = {r["name"]: r for r in chosen["rules"]}
    assert (
        by_name["StalledTraining"]["status"] == "Error" and "live job" in by_name["StalledTraining"]["error"]
    )
    assert by_name["LossNotDecreasing"]["status"] == "NoIssuesFound"


def test_training_rules_read_global_steps_when_the_script_never_set_a_mode() -> None:
    """smdebug records GLOBAL steps until set_mode is called; SageMaker's rules read those."""
    trial = MemoryTrial()
    for step in range(3):
        trial.add_reduced("gradient/w.weight", step, np.zeros(4), mode="GLOBAL")
    engine = RuleEngine(build_entries(["VanishingGradient"], default_rules=False))
    engine.cycle(trial)
    entry = engine.to_json()["rules"][0]
    assert entry["steps_evaluated"] == {"GLOBAL": 3} and entry["findings_total"] == 3
    # once TRAIN steps exist, TRAIN is what a training rule reads
    trial.add_reduced("gradient/w.weight", 0, np.ones(4), mode="TRAIN")
    engine.cycle(trial)
    assert engine.to_json()["rules"][0]["steps_evaluated"] == {"GLOBAL": 3, "TRAIN": 1}
