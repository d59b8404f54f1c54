"""smdebug's API in script-mode processes: a real training script in a subprocess, its tensors in Vizsla's
store, read back with create_trial and evaluated by the built-in rules through DebugSession."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vizsla.debugger.smdebug_compat import ModeKeys, TensorUnavailableForStep, create_trial
from vizsla.scriptmode.debugging import DebugSession
from vizsla.scriptmode.smdebug_shim import shim_path
from vizsla.spec import DebugSpec

SCRIPT = Path(__file__).parent / "smdebug_scripts" / "train_model.py"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SMDEBUG_CONFIG_FILE_PATH", "VIZSLA_DEBUG_DIR")}
    env.pop("VIZSLA_PROFILE_DIR", None)
    env["PYTHONPATH"] = shim_path()
    env.update(extra)
    return env


def run_job(job: Path, rules: list[dict[str, Any]], *args: str, profile: bool = False) -> dict[str, Any]:
    """Run train_model.py under a DebugSession; returns the process, the session summary and the losses."""
    session = DebugSession(DebugSpec(enabled=True, save_interval=5, rules=rules, default_rules=False), job)
    env = _env(**({"VIZSLA_PROFILE_DIR": str(job / "profile")} if profile else {}))
    session.prepare(env)
    session.start()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model-dir", str(job / "model"), *args],
        env=env,
        cwd=job,
        capture_output=True,
        text=True,
        timeout=120,
    )
    stop = session.should_stop()
    summary = session.finish("Completed" if proc.returncode == 0 else "Failed")
    losses = {
        mode: [float(v) for v in re.findall(rf"^{mode} loss=([0-9.]+)$", proc.stdout, re.M)]
        for mode in ("TRAIN", "EVAL")
    }
    return {"proc": proc, "summary": summary, "losses": losses, "stop": stop}


def _one_epoch_with(
    job: Path,
    collections: dict[str, Any] | None = None,
    *,
    save_interval: int | None = None,
    **env_extra: str,
) -> Any:
    """One epoch of train_model.py with these debugger collections (no rules) and extra environment;
    its tensors read back."""
    interval = {} if save_interval is None else {"save_interval": save_interval}
    spec = DebugSpec(enabled=True, rules=[], default_rules=False, collections=collections or {}, **interval)
    session = DebugSession(spec, job)
    env = _env(**env_extra)
    session.prepare(env)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model-dir", str(job / "model"), "--epochs", "1"],
        env=env, cwd=job, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return create_trial(job / "debug")


def _rule(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in summary["rules"] if r["name"] == name)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    job = tmp_path_factory.mktemp("healthy")
    rules = [
        # SageMaker SDK shape, string parameters; a threshold every gradient is below, so it must fire
        {
            "RuleConfigurationName": "VanishingGradient",
            "RuleParameters": {"rule_to_invoke": "VanishingGradient", "threshold": "10"},
            "actions": ["log", "stop"],
        },
        {
            "name": "loss_not_decreasing",
            "parameters": {"num_steps": "5", "diff_percent": "1", "mode": "TRAIN"},
        },
    ]
    result = run_job(job, rules, profile=True)
    result["job"] = job
    return result


def test_script_runs_and_its_losses_read_back_with_create_trial(healthy: dict[str, Any]) -> None:
    proc = healthy["proc"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    trial = create_trial(healthy["job"])
    names = trial.tensor_names()
    assert "CrossEntropyLoss_output_0" in names
    assert {"gradient/Net_fc1.weight", "Net_fc1.weight", "Net_conv1.bias"} <= set(names)
    assert trial.tensor_names(regex=".*output") == ["CrossEntropyLoss_output_0"]
    loss = trial.tensor("CrossEntropyLoss_output_0")
    train_steps, eval_steps = loss.steps(mode=ModeKeys.TRAIN), loss.steps(mode=ModeKeys.EVAL)
    assert train_steps == list(range(20)) and eval_steps == list(range(6))  # 2 epochs x 10 / 3 batches
    for mode, steps in ((ModeKeys.TRAIN, train_steps), (ModeKeys.EVAL, eval_steps)):
        recorded = [float(loss.value(s, mode=mode)) for s in steps]
        np.testing.assert_allclose(recorded, healthy["losses"][mode.name], atol=1e-5)
    gradient = trial.tensor("gradient/Net_fc1.weight")
    assert gradient.steps(mode=ModeKeys.TRAIN) == [0, 5, 10, 15]  # save_interval 5
    assert gradient.steps(mode=ModeKeys.EVAL) == []
    assert gradient.shape(0, mode=ModeKeys.TRAIN) == (3, 8)
    assert gradient.reduction_value(0, "l2", mode=ModeKeys.TRAIN) > 0
    with pytest.raises(TensorUnavailableForStep):
        gradient.value(0, mode=ModeKeys.TRAIN)  # stored as reductions, as with smdebug's reduction_config
    assert len(trial.steps()) == 26  # GLOBAL: every saved step of every mode


def test_builtin_rules_evaluate_the_hooks_tensors(healthy: dict[str, Any]) -> None:
    summary = healthy["summary"]
    vanishing = _rule(summary, "VanishingGradient")
    assert vanishing["status"] == "IssuesFound"
    assert "gradient/Net_" in vanishing["first_finding"]
    assert _rule(summary, "LossNotDecreasing")["status"] == "NoIssuesFound"  # the loss falls
    assert summary["issues_found"] == ["VanishingGradient"]
    assert summary["stopped_by"] and "VanishingGradient" in summary["stopped_by"]
    rules_json = json.loads((healthy["job"] / "debug" / "rules.json").read_text())
    assert {r["name"] for r in rules_json["rules"]} == {"VanishingGradient", "LossNotDecreasing"}
    collections = json.loads((healthy["job"] / "debug" / "collections.json").read_text())["collections"]
    assert collections["losses"]["tensor_names"] == ["CrossEntropyLoss_output_0"]
    assert "gradient/Net_conv1.weight" in collections["gradients"]["tensor_names"]


def test_loss_not_decreasing_fires_when_nothing_learns(tmp_path: Path) -> None:
    result = run_job(
        tmp_path, [{"name": "loss_not_decreasing", "parameters": {"num_steps": "5"}}], "--lr", "0"
    )
    assert result["proc"].returncode == 0, result["proc"].stderr[-2000:]
    rule = _rule(result["summary"], "LossNotDecreasing")
    assert rule["status"] == "IssuesFound"
    assert "CrossEntropyLoss_output_0" in rule["first_finding"]
    assert result["stop"] is None


def test_rules_read_global_steps_of_a_script_that_never_sets_a_mode(tmp_path: Path) -> None:
    rules = [{"name": "VanishingGradient", "parameters": {"threshold": "10"}}]
    result = run_job(tmp_path, rules, "--set-mode", "false", "--epochs", "1")
    assert result["proc"].returncode == 0, result["proc"].stderr[-2000:]
    rule = _rule(result["summary"], "VanishingGradient")
    assert rule["status"] == "IssuesFound" and "at GLOBAL step" in rule["first_finding"], rule


def test_framework_profile_window_writes_a_torch_trace_of_those_steps(tmp_path: Path) -> None:
    """FrameworkProfile(start_step=3, num_steps=2) -> the hook runs torch.profiler over TRAIN steps 3-4."""
    from vizsla.profiler.data import OPERATORS_FILE, TRACE_DIR
    from vizsla.sagemaker.debugger import FrameworkProfile, torch_trace_window
    from vizsla.scriptmode.smdebug_shim.profiling import TRACE_ENV

    window = json.dumps(torch_trace_window(FrameworkProfile(start_step=3, num_steps=2)))
    _one_epoch_with(
        tmp_path, save_interval=5, VIZSLA_PROFILE_DIR=str(tmp_path / "profile"), **{TRACE_ENV: window}
    )
    operators = json.loads((tmp_path / "profile" / OPERATORS_FILE).read_text())
    assert operators["steps"] == [3, 4] and operators["operators"]
    trace = tmp_path / "profile" / TRACE_DIR / operators["trace"]
    assert trace.name == "trace_steps_3-4.json" and json.loads(trace.read_text())["traceEvents"]


def test_per_mode_save_intervals_of_the_dog_breed_notebooks(tmp_path: Path) -> None:
    """CollectionConfig(parameters={"train.save_interval": "5", "eval.save_interval": "1"}): TRAIN losses
    every 5 steps, EVAL losses at every step, as smdebug saves them."""
    from vizsla.sagemaker.debugger import CollectionConfig

    loss = CollectionConfig(
        "CrossEntropyLoss_output_0", parameters={"train.save_interval": "5", "eval.save_interval": "1"}
    )
    collections = {"losses": {"enabled": False}, loss.name: loss.to_spec()}  # Vizsla's losses: every step
    tensor = _one_epoch_with(tmp_path, collections).tensor("CrossEntropyLoss_output_0")
    assert tensor.steps(mode=ModeKeys.TRAIN) == [0, 5]  # 10 train batches
    assert tensor.steps(mode=ModeKeys.EVAL) == [0, 1, 2]  # 3 eval batches


def test_profiler_step_records(healthy: dict[str, Any]) -> None:
    from vizsla.profiler.data import ProfileData

    data = ProfileData.load(healthy["job"] / "profile")
    assert [r["step"] for r in data.steps] == list(range(20))  # TRAIN steps only
    for record in data.steps:
        assert record["batch_size"] == 16
        assert record["total_s"] > 0 and record["forward_s"] > 0 and record["backward_s"] > 0
        parts = record["data_s"] + record["forward_s"] + record["backward_s"] + record["optimizer_s"]
        assert parts == pytest.approx(record["total_s"], rel=1e-6)
    assert sum(data.phase_seconds().values()) > 0 and len(data.data_wait_fractions()) == 20


def test_wrong_calls_warn_and_training_goes_on(tmp_path: Path) -> None:
    result = run_job(tmp_path, [], "--wrong-calls", "true", "--hook", "get_hook", "--epochs", "1")
    proc = result["proc"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "smdebug hook: record_tensor_value failed" in proc.stderr
    assert "smdebug hook: save_tensor failed" in proc.stderr
    assert proc.stderr.count("record_tensor_value failed") == 1  # warned once, then disabled
    assert "Traceback" not in proc.stderr
    trial = create_trial(tmp_path / "debug")
    assert "mse_loss_output_0" not in trial.tensor_names() and "x" not in trial.tensor_names()
    assert trial.tensor("CrossEntropyLoss_output_0").steps(mode=ModeKeys.TRAIN) == list(range(10))


def test_without_config_get_hook_is_none_and_create_from_json_file_raises(tmp_path: Path) -> None:
    code = """
import smdebug.pytorch as smd
from smdebug.pytorch import get_hook, Hook, modes
from smdebug import modes as top_modes
from smdebug.core.modes import ModeKeys
from smdebug.profiler.utils import str2bool
from smdebug.exceptions import TensorUnavailableForStep, StepUnavailable, NoMoreData, IndexReaderException
assert get_hook(create_if_not_exists=True) is None
assert smd.get_hook() is None
assert modes.TRAIN is top_modes.TRAIN is ModeKeys.TRAIN
assert str2bool("True") is True and str2bool("false") is False
try:
    smd.Hook.create_from_json_file()
except FileNotFoundError:
    print("raised FileNotFoundError")
"""
    env = _env(SMDEBUG_CONFIG_FILE_PATH=str(tmp_path / "missing.json"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "raised FileNotFoundError" in proc.stdout


def test_notebook_reads_with_smdebug_trials(healthy: dict[str, Any]) -> None:
    code = f"""
from smdebug.trials import create_trial
from smdebug.core.modes import ModeKeys
trial = create_trial({str(healthy["job"])!r})
tensor = trial.tensor("CrossEntropyLoss_output_0")
print([round(float(tensor.value(s, mode=ModeKeys.EVAL)), 5) for s in tensor.steps(mode=ModeKeys.EVAL)])
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    values = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(values, healthy["losses"]["EVAL"], atol=1e-4)


def test_main_process_cannot_import_the_shim() -> None:
    """A vizsla process (not this test process, where handler tests put the shim on sys.path as a serving
    process does) never shadows an installed smdebug."""
    probe = (
        "import importlib.util, json, sys; import vizsla.cli.app, vizsla.scriptmode.smdebug_shim as s; "
        "spec = importlib.util.find_spec('smdebug'); "
        "print(json.dumps([spec.origin if spec else None, s.shim_path() in sys.path]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    origin, on_path = json.loads(done.stdout.strip().splitlines()[-1])
    if origin is not None:  # a real smdebug installed: it must not be ours
        assert not origin.startswith(shim_path())
    assert not on_path
    assert sorted(p.name for p in Path(shim_path()).iterdir() if not p.name.startswith("__")) == ["smdebug"]


def test_sdk_collections_store_full_tensors_unless_reductions_are_asked_for(tmp_path: Path) -> None:
    """SageMaker's CollectionConfig("gradients") saves full tensors (smdebug's default); with a
    `reductions` parameter only reductions, as smdebug's reduction_config."""
    from vizsla.sagemaker.debugger import CollectionConfig

    gradients = CollectionConfig("gradients", parameters={"save_interval": "5"})
    weights = CollectionConfig("weights", parameters={"save_interval": "5", "reductions": "mean,l2_norm"})
    trial = _one_epoch_with(tmp_path, {c.name: c.to_spec() for c in (gradients, weights)})
    gradient = trial.tensor("gradient/Net_fc1.weight")
    full = gradient.value(5, mode=ModeKeys.TRAIN)
    assert full.shape == (3, 8) and np.abs(full).sum() > 0
    l2 = gradient.reduction_value(5, "l2", mode=ModeKeys.TRAIN)
    assert l2 == pytest.approx(np.linalg.norm(full), rel=1e-5)
    abs_max = gradient.reduction_value(5, "max", mode=ModeKeys.TRAIN, abs=True)
    assert abs_max == pytest.approx(np.abs(full).max(), rel=1e-6)
    weight = trial.tensor("Net_fc1.weight")
    assert weight.reduction_value(5, "mean", mode=ModeKeys.TRAIN) != 0
    with pytest.raises(TensorUnavailableForStep):
        weight.value(5, mode=ModeKeys.TRAIN)
