"""The smdebug stand-in exports smdebug 1.0.x's public names, module by module (issue 17, item 5).

PUBLIC_NAMES was written down from awslabs/sagemaker-debugger (the module files cited per block); where the
1.0.x releases differ (smdebug/pytorch/__init__.py gained and lost the collection helpers;
smdebug/exceptions.py gained SMDebugError and ShapeUnavailableForStep / NoMoreProfilerData), the union is
listed. TensorFlow, MXNet and XGBoost modules are left out: a PyTorch container cannot import them either.
Everything is imported in one script-mode-like child process, as a training script would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from vizsla.scriptmode.smdebug_shim import shim_path

PUBLIC_NAMES: list[tuple[str, str]] = [
    # smdebug/__init__.py
    *[("smdebug", n) for n in ("CollectionKeys", "modes", "ReductionConfig", "SaveConfig", "SaveConfigMode",
                               "__version__")],
    # smdebug/exceptions.py
    *[("smdebug.exceptions", n) for n in (
        "SMDebugError", "InvalidCollectionConfiguration", "StepNotYetAvailable", "MissingCollectionFiles",
        "IndexReaderException", "StepUnavailable", "TensorUnavailableForStep", "ShapeUnavailableForStep",
        "TensorUnavailable", "InvalidWorker", "NoMoreProfilerData", "NoMoreData",
        "RuleEvaluationConditionMet",
        "InsufficientInformationForRuleInvocation", "modes")],
    # smdebug/pytorch/__init__.py (both 1.0.x shapes)
    *[("smdebug.pytorch", n) for n in (
        "ReductionConfig", "SaveConfig", "SaveConfigMode", "modes", "create_trial", "Collection",
        "CollectionManager", "add_to_collection", "add_to_default_collection", "get_collection",
        "get_collections", "load_collections", "reset_collections", "Hook", "del_hook", "get_hook",
        "set_hook")],
    # smdebug/pytorch/hook.py, smdebug/pytorch/singleton_utils.py, smdebug/pytorch/collection.py
    ("smdebug.pytorch.hook", "Hook"),
    *[("smdebug.pytorch.singleton_utils", n) for n in ("get_hook", "set_hook", "del_hook")],
    *[("smdebug.pytorch.collection", n) for n in ("Collection", "CollectionManager", "get_collection")],
    # smdebug/core/modes.py
    *[("smdebug.core.modes", n) for n in ("ModeKeys", "ALLOWED_MODES", "ALLOWED_MODE_NAMES",
                                          "MODE_STEP_PLUGIN_NAME", "MODE_PLUGIN_NAME", "str_to_mode_keys")],
    # smdebug/core/collection.py
    *[("smdebug.core.collection", n) for n in (
        "ALLOWED_PARAMS", "CollectionKeys", "Collection", "SUMMARIES_COLLECTIONS", "SCALAR_COLLECTIONS",
        "SM_METRIC_COLLECTIONS", "NON_REDUCTION_COLLECTIONS", "NON_HISTOGRAM_COLLECTIONS",
        "DEFAULT_TF_COLLECTIONS", "DEFAULT_PYTORCH_COLLECTIONS", "DEFAULT_MXNET_COLLECTIONS",
        "DEFAULT_XGBOOST_COLLECTIONS")],
    # smdebug/core/save_config.py
    *[("smdebug.core.save_config", n) for n in (
        "SaveConfig", "SaveConfigMode", "DEFAULT_SAVE_CONFIG_INTERVAL", "DEFAULT_SAVE_CONFIG_START_STEP",
        "DEFAULT_SAVE_CONFIG_END_STEP", "DEFAULT_SAVE_CONFIG_SAVE_STEPS", "ALLOWED_PARAMS")],
    # smdebug/core/reduction_config.py
    *[("smdebug.core.reduction_config", n) for n in (
        "ReductionConfig", "ALLOWED_REDUCTIONS", "ALLOWED_NORMS", "REDUCTION_CONFIG_VERSION_NUM",
        "ALLOWED_PARAMS")],
    # smdebug/core/logger.py, smdebug/core/singleton_utils.py
    ("smdebug.core.logger", "get_logger"),
    *[("smdebug.core.singleton_utils", n) for n in ("get_hook", "set_hook", "del_hook")],
    # smdebug/trials/__init__.py
    *[("smdebug.trials", n) for n in ("LocalTrial", "S3Trial", "Trial", "create_trial")],
    # smdebug/rules/__init__.py, rule.py, rule_invoker.py, req_tensors.py, action/__init__.py, action.py
    *[("smdebug.rules", n) for n in ("RequiredTensors", "RequiredTensorsForTrial", "Rule", "invoke_rule")],
    ("smdebug.rules.rule", "Rule"),
    ("smdebug.rules.rule_invoker", "invoke_rule"),
    *[("smdebug.rules.req_tensors", n) for n in ("RequiredTensors", "RequiredTensorsForTrial")],
    ("smdebug.rules.action", "Actions"),
    *[("smdebug.rules.action.action", n) for n in ("Actions", "ALLOWED_ACTIONS")],
    # smdebug/profiler/__init__.py, smdebug/profiler/utils.py
    *[("smdebug.profiler", n) for n in ("HorovodProfilerEvents", "SMProfilerEvents",
                                        "TensorboardProfilerEvents", "TraceEvent", "TraceEventParser")],
    ("smdebug.profiler.utils", "str2bool"),
]  # fmt: skip

CHECK = """
import importlib, json, sys
missing = []
for module, name in json.loads(sys.argv[1]):
    try:
        getattr(importlib.import_module(module), name)
    except Exception as exc:
        missing.append(f"{module}.{name}: {type(exc).__name__}: {exc}")
print(json.dumps(missing))
"""

BEHAVIOUR = """
import smdebug.pytorch as smd
from smdebug.exceptions import SMDebugError, TensorUnavailableForStep, StepUnavailable
from smdebug.rules import Rule, invoke_rule
from smdebug.trials import S3Trial
from smdebug.core.modes import str_to_mode_keys

assert issubclass(TensorUnavailableForStep, SMDebugError) and issubclass(StepUnavailable, SMDebugError)
assert str_to_mode_keys("eval") is smd.modes.EVAL
try:
    S3Trial("s3://bucket/prefix")
except NotImplementedError as exc:
    print("S3Trial:", exc)

class Trial:
    def steps(self):
        return [0, 1, 2, 3]

class LossAboveOne(Rule):
    def __init__(self, trial):
        super().__init__(trial, action_str="")
        self.seen = []

    def invoke_at_step(self, step):
        self.seen.append(step)
        if step == 1:
            raise TensorUnavailableForStep("loss", step)
        return step == 2

rule = LossAboveOne(Trial())
invoke_rule(rule)
print("seen", rule.seen)
try:
    invoke_rule(LossAboveOne(Trial()), raise_eval_cond=True)
except SMDebugError as exc:
    print("raised", type(exc).__name__)
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SMDEBUG_CONFIG_FILE_PATH", "VIZSLA_DEBUG_DIR")}
    env["PYTHONPATH"] = shim_path()
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_every_public_smdebug_name_imports():
    proc = _run(CHECK, json.dumps(PUBLIC_NAMES))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_smdebug_error_base_rules_and_unavailable_names():
    proc = _run(BEHAVIOUR)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "S3Trial: smdebug.trials.S3Trial is not provided by Vizsla's smdebug stand-in" in out
    assert "seen [0, 1, 2, 3]" in out  # a missing tensor skips the step; the condition is logged, not raised
    assert "raised RuleEvaluationConditionMet" in out
