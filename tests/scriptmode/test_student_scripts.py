"""Issue 17: students' dog-breed SageMaker scripts run unchanged (default hook config, the job's own code
copy, `import sagemaker` inside the script, the script under another interpreter).

The scripts below are written the way the students wrote theirs: argparse with os.environ['SM_...']
defaults, `smd.Hook.create_from_json_file()`, models saved to relative paths. Data is a few random rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vizsla.errors import UserError
from vizsla.scriptmode.runner import run_script_job
from vizsla.scriptmode.spec import ScriptJobSpec

LOSS = {"Name": "test_loss", "Regex": r"Testing Loss: ([0-9\.]+)"}

HOOK_SCRIPT = """\
import argparse
import os

import torch
import torch.nn as nn
import smdebug.pytorch as smd


def train(model, loss_fn, hook, lr):
    hook.set_mode(smd.modes.TRAIN)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    for _ in range(3):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    print(f"Testing Loss: {loss.item():.4f}")


def main(args):
    model = nn.Linear(4, 2)
    loss_fn = nn.CrossEntropyLoss()
    hook = smd.Hook.create_from_json_file()
    hook.register_hook(model)
    hook.register_loss(loss_fn)
    train(model, loss_fn, hook, args.lr)
    os.makedirs("model", exist_ok=True)  # a relative path: the student's model never reached SM_MODEL_DIR
    torch.save(model.state_dict(), "model/resnet50.pth")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--model-dir", type=str, default=os.environ["SM_MODEL_DIR"])
    parser.add_argument("--data-dir", type=str, default=os.environ["SM_CHANNEL_TRAINING"])
    main(parser.parse_args())
"""


def _source(tmp_path: Path, script: str, name: str = "train_model.py") -> Path:
    source = tmp_path / "project"
    source.mkdir(exist_ok=True)
    (source / name).write_text(textwrap.dedent(script))
    return source


def _spec(tmp_path: Path, source: Path, job: str = "job", **fields) -> ScriptJobSpec:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    fields.setdefault("tracking", {"enabled": False})
    fields.setdefault("metric_definitions", [LOSS])
    return ScriptJobSpec(
        output=str(tmp_path / job),
        entry_point="train_model.py",
        source_dir=str(source),
        channels={"training": str(data)},
        **fields,
    )


# 1. a default debug hook config, as the SDK's estimator adds one ---------------------------------------


def test_create_from_json_file_works_without_debug(tmp_path):
    from vizsla.debugger.smdebug_compat import create_trial

    result = run_script_job(_spec(tmp_path, _source(tmp_path, HOOK_SCRIPT)), progress=False)
    assert result["status"] == "Completed", result["stderr_tail"]
    job = Path(result["job_dir"])
    config = job / "input" / "config" / "debughookconfig.json"
    assert result["debug_hook_config"] == str(config)
    # DebuggerHookConfig(s3_output_path=output_path)._to_request_dict(): no hook parameters, no collections
    assert json.loads(config.read_text()) == {
        "S3OutputPath": str(job / "debug"),
        "LocalPath": str(job / "debug"),
    }
    trial = create_trial(job / "debug")
    assert trial.tensor_names(collection="losses"), "smdebug's default collection (losses) was saved"
    assert "debugger" not in result  # no rules run: the default asks for none


def test_no_debug_hook_fails_like_debugger_hook_config_false(tmp_path):
    spec = _spec(tmp_path, _source(tmp_path, HOOK_SCRIPT), debug_hook=False)
    result = run_script_job(spec, progress=False)
    assert result["status"] == "Failed"
    assert result["debug_hook_config"] is None
    assert not (Path(result["job_dir"]) / "input" / "config" / "debughookconfig.json").exists()
    assert "FileNotFoundError" in (result["failure_reason"] or "")
    assert "--no-debug-hook" in "\n".join(result["stderr_tail"])  # the shim says why there is none


def test_tuning_trials_get_no_default_hook_config_as_on_sagemaker(tmp_path, monkeypatch):
    """HyperParameterTrainingJobDefinition has no DebugHookConfig: a trial's mapping turns it off."""
    import vizsla.scriptmode.runner as runner
    from vizsla.tuning import script_trial

    seen = {}

    def fake_run(spec, **kwargs):
        seen["spec"] = spec
        return {"status": "Completed", "metrics": {"test_loss": 0.5}}

    monkeypatch.setattr(runner, "run_script_job", fake_run)

    class Trial:
        number, params = 0, {}

        def report(self, *args):
            pass

        def should_prune(self):
            return False

    class Request:
        job_dir, tracking_uri, parent_run_id = str(tmp_path / "trial-0"), None, None

    class Objective:
        metric = "test_loss"

    class Spec:
        ranges: dict = {}
        objective = Objective()
        script = {
            "entry_point": str(_source(tmp_path, HOOK_SCRIPT) / "train_model.py"),
            "tracking": {"enabled": False},
        }

    outcome = script_trial.run_script_trial(Trial(), Spec(), Request(), threads=1)
    assert outcome.status == "Completed" and seen["spec"].debug_hook is False
    Spec.script = {**Spec.script, "debug_hook": True}
    script_trial.run_script_trial(Trial(), Spec(), Request(), threads=1)
    assert seen["spec"].debug_hook is True


# 2. every job runs in its own copy of the source dir --------------------------------------------------


def test_relative_saves_land_in_the_jobs_code_copy_with_a_warning(tmp_path):
    source = _source(tmp_path, HOOK_SCRIPT)
    (source / "helper.py").write_text("VALUE = 1\n")
    first = run_script_job(_spec(tmp_path, source, "job-a", hyperparameters={"lr": 0.1}), progress=False)
    second = run_script_job(_spec(tmp_path, source, "job-b", hyperparameters={"lr": 0.2}), progress=False)
    assert first["status"] == second["status"] == "Completed"
    assert sorted(p.name for p in source.iterdir()) == [
        "helper.py",
        "train_model.py",
    ]  # user's folder untouched
    for result in (first, second):
        code = Path(result["job_dir"]) / "code"
        assert result["code_dir"] == str(code) and result["source_dir"] == str(source.resolve())
        assert (code / "model" / "resnet50.pth").is_file() and (code / "helper.py").is_file()
        assert result["best_model_path"] is None
        (warning,) = [w for w in result["warnings"] if "SM_MODEL_DIR" in w]
        assert "model/resnet50.pth" in warning and str(code) in warning
        assert "saved no model into SM_MODEL_DIR" in (Path(result["job_dir"]) / "train.log").read_text()
    a = (Path(first["job_dir"]) / "code" / "model" / "resnet50.pth").read_bytes()
    b = (Path(second["job_dir"]) / "code" / "model" / "resnet50.pth").read_bytes()
    assert a != b  # two jobs never overwrite each other's files


def test_code_copy_skips_the_job_dir_inside_the_source_dir_and_caches(tmp_path):
    source = _source(tmp_path, "import os\nopen(os.path.join(os.environ['SM_MODEL_DIR'], 'm.pt'), 'w')\n")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "x.pyc").write_bytes(b"0")
    spec = ScriptJobSpec(
        output=str(source / "runs" / "job"), entry_point="train_model.py", source_dir=str(source),
        tracking={"enabled": False},
    )  # fmt: skip
    result = run_script_job(spec, progress=False)
    assert result["status"] == "Completed" and result["warnings"] == []
    code = source / "runs" / "job" / "code"
    assert sorted(p.name for p in code.iterdir()) == ["runs", "train_model.py"]
    assert list((code / "runs").iterdir()) == []  # the job itself is not copied into its own code


# 3. `import sagemaker` inside the script ---------------------------------------------------------------

SDK_SCRIPT = """\
import argparse
import os

import sagemaker
from sagemaker.debugger import CollectionConfig, DebuggerHookConfig, Rule, rule_configs

hook_config = DebuggerHookConfig(hook_parameters={"train.save_interval": "100"})
print("sdk", sagemaker.__version__, type(hook_config).__module__)
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.pth"), "w").close()
"""


def test_sagemaker_sdk_importable_in_the_script(tmp_path):
    result = run_script_job(_spec(tmp_path, _source(tmp_path, SDK_SCRIPT)), progress=False)
    assert result["status"] == "Completed", result["stderr_tail"]
    log = (Path(result["job_dir"]) / "train.log").read_text()
    assert "sdk 2.257.6+vizsla vizsla.sagemaker.debugger" in log


def test_a_real_sagemaker_package_is_not_shadowed(tmp_path, monkeypatch):
    real = tmp_path / "site"
    (real / "sagemaker" / "debugger").mkdir(parents=True)
    (real / "sagemaker" / "__init__.py").write_text("__version__ = 'real'\n")
    (real / "sagemaker" / "debugger" / "__init__.py").write_text(
        "class CollectionConfig: pass\nclass DebuggerHookConfig:\n    def __init__(self, **kw): pass\n"
        "class Rule: pass\nrule_configs = None\n"
    )
    monkeypatch.syspath_prepend(str(real))  # this interpreter has it installed
    monkeypatch.setenv("PYTHONPATH", str(real))
    result = run_script_job(_spec(tmp_path, _source(tmp_path, SDK_SCRIPT)), progress=False)
    assert result["status"] == "Completed", result["stderr_tail"]
    assert "sdk real sagemaker.debugger" in (Path(result["job_dir"]) / "train.log").read_text()


# 4. the script under the user's own interpreter ---------------------------------------------------------

INTERPRETER_SCRIPT = """\
import argparse
import json
import os
import sys

import numpy as np
import smdebug.pytorch as smd
from sagemaker.debugger import DebuggerHookConfig

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--model-dir", type=str, default=os.environ["SM_MODEL_DIR"])
args = parser.parse_args()
print("interpreter", os.environ.get("WRAPPED"), json.loads(os.environ["SM_HPS"])["epochs"])
for epoch in range(args.epochs):
    print(f"Testing Loss: {1.0 / (epoch + 1):.4f}")
np.save(os.path.join(args.model_dir, "w.npy"), np.zeros(2))
"""


def _wrapper(tmp_path: Path) -> Path:
    """An interpreter other than ours: a wrapper around it that marks the environment."""
    wrapper = tmp_path / "venv" / "bin" / "python"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f'#!/bin/sh\nWRAPPED=yes exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def test_script_runs_under_the_given_interpreter_with_the_contract(tmp_path):
    python = _wrapper(tmp_path)
    spec = _spec(
        tmp_path, _source(tmp_path, INTERPRETER_SCRIPT), python=str(python), hyperparameters={"epochs": 3}
    )
    result = run_script_job(spec, progress=False)
    assert result["status"] == "Completed", result["stderr_tail"]
    assert result["python"] == str(python) and result["command"][0] == str(python)
    assert result["metrics"]["test_loss"] == pytest.approx(1 / 3, abs=1e-4)
    assert result["metric_series_counts"]["test_loss"] == 3
    assert "interpreter yes 3" in (Path(result["job_dir"]) / "train.log").read_text()
    assert (Path(result["job_dir"]) / "model" / "w.npy").is_file()


def test_an_import_error_in_that_interpreter_names_the_module_and_the_interpreter(tmp_path):
    bare = tmp_path / "np1"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    python = bare / "bin" / "python"
    result = run_script_job(
        _spec(tmp_path, _source(tmp_path, INTERPRETER_SCRIPT), python=str(python)), progress=False
    )
    assert result["status"] == "Failed"
    (hint,) = [w for w in result["warnings"] if "could not import" in w]
    assert "'numpy'" in hint and str(python) in hint and "pip install numpy" in hint


def test_a_missing_interpreter_is_a_user_error_before_anything_runs(tmp_path):
    spec = _spec(tmp_path, _source(tmp_path, INTERPRETER_SCRIPT), python=str(tmp_path / "nope" / "python"))
    with pytest.raises(UserError, match="does not exist"):
        run_script_job(spec, progress=False)
    assert not (tmp_path / "job").exists()


def test_python_field_in_a_script_spec_yaml(tmp_path):
    from vizsla.scriptmode.spec import build_script_spec

    spec = build_script_spec({"output": "o", "entry_point": "t.py", "python": "/opt/np1/bin/python"})
    assert spec.python == "/opt/np1/bin/python" and spec.debug_hook is None
    assert os.path.basename(spec.python) == "python"


def test_script_train_passes_no_debug_hook_and_python_and_prints_warnings(tmp_path, capsys, monkeypatch):
    """cli/script_train.train_script: what `vizsla train --no-debug-hook --python PATH` hands it."""
    import typer

    import vizsla.scriptmode.runner as runner
    from vizsla.cli.script_train import train_script

    options = dict(
        entry_point="train_model.py", channels=[f"training={tmp_path / 'data'}"], hyperparameters=None,
        extra=None, metric_definitions=None, install_requirements=False, max_run=None, data=None,
        config=None, resume=None, overwrite=False, name=None, tracking_uri=None, experiment=None,
        no_tracking=True, quiet=True, debug=False, rules=None, profile=False,
    )  # fmt: skip
    (tmp_path / "data").mkdir()
    source = _source(tmp_path, HOOK_SCRIPT)
    seen = {}

    def failed_run(spec, **kwargs):  # the child's side is test_no_debug_hook_fails_like_...'s
        seen["spec"] = spec
        reason = "FileNotFoundError: [Errno 2] No such file or directory: debughookconfig.json"
        return {"status": "Failed", "job_dir": spec.output, "failure_reason": reason, "stderr_tail": [reason]}

    with monkeypatch.context() as patch:
        patch.setattr(runner, "run_script_job", failed_run)
        with pytest.raises(typer.Exit):
            train_script(source_dir=source, output=tmp_path / "off", no_debug_hook=True, **options)
    assert seen["spec"].debug_hook is False
    assert "FileNotFoundError" in capsys.readouterr().err
    options["max_run"] = 300  # a child that hangs fails this test in minutes, as Stopped, not at the timeout
    python = _wrapper(tmp_path)
    train_script(source_dir=source, output=tmp_path / "on", python=str(python), **options)
    saved = (tmp_path / "on" / "spec.yaml").read_text()
    assert f"python: {python}" in saved and "debug_hook: null" in saved
    assert "warning: the script saved no model into SM_MODEL_DIR" in capsys.readouterr().err


def test_without_a_source_dir_only_the_scripts_code_is_copied(tmp_path):
    """The SDK uploads the entry point alone then; sibling .py modules come along, data folders never."""
    project = _source(
        tmp_path, "import helper, os\nopen(os.environ['SM_MODEL_DIR'] + '/m', 'w').write('x')\n"
    )
    (project / "helper.py").write_text("")
    (project / "dogImages" / "train").mkdir(parents=True)
    (project / "dogImages" / "train" / "1.jpg").write_bytes(b"0" * 1000)
    (project / "notes.txt").write_text("x")
    spec = ScriptJobSpec(
        output=str(tmp_path / "job"), entry_point=str(project / "train_model.py"), tracking={"enabled": False}
    )
    result = run_script_job(spec, progress=False)
    assert result["status"] == "Completed", result["stderr_tail"]
    assert sorted(p.name for p in (tmp_path / "job" / "code").iterdir()) == ["helper.py", "train_model.py"]


def test_an_interpreter_that_fails_to_start_is_a_user_error_naming_it(tmp_path):
    broken = tmp_path / "broken" / "python"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'error while loading shared libraries' >&2\nexit 127\n")
    broken.chmod(0o755)
    spec = _spec(tmp_path, _source(tmp_path, INTERPRETER_SCRIPT), python=str(broken))
    with pytest.raises(UserError, match=f"the interpreter {broken} fails to start"):
        run_script_job(spec, progress=False)
    assert not (tmp_path / "job").exists()
