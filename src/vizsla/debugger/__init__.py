"""The training debugger: record tensors during training, read them back, and run rules on them.

    from vizsla.debugger import open_trial
    trial = open_trial("runs/my-job")            # job directory or its debug/ folder, also while it trains
    trial.steps("TRAIN"); trial.tensor("gradient/head.0.weight").reductions("l2")

The hook and the rule runner are trainer callbacks made by `create_debug_callbacks(spec.debug, job_dir)`;
torch is imported only when they are created.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from vizsla.debugger.reader import Tensor, Trial, open_trial

if TYPE_CHECKING:
    from vizsla.callbacks import Callback
    from vizsla.debugger.hook import DebugHook

__all__ = ["DebugHook", "Tensor", "Trial", "create_debug_callbacks", "open_trial"]

log = logging.getLogger(__name__)


def create_debug_callbacks(debug_spec: Any, job_dir: Any) -> list[Callback]:
    """The hook, then the rule runner (which must see each event after the hook has recorded the step),
    then the outputs drawn from the store (loss plot, report section) once the job finishes."""
    from vizsla.debugger.hook import DebugHook
    from vizsla.debugger.report import DebugOutputs

    hook = DebugHook(debug_spec, job_dir)
    outputs = DebugOutputs(getattr(debug_spec, "out_dir", None))
    try:
        runner = importlib.import_module("vizsla.debugger.runner")
    except ModuleNotFoundError as exc:
        if exc.name != "vizsla.debugger.runner":
            raise
        log.warning("debugger rules are not available (no vizsla.debugger.runner): recording tensors only")
        return [hook, outputs]
    factory = getattr(runner, "create_rule_runner", None)
    if factory is not None:
        return [hook, factory(debug_spec, job_dir, hook=hook), outputs]
    return [hook, runner.RuleRunner(debug_spec, job_dir), outputs]


def __getattr__(name: str) -> Any:
    if name == "DebugHook":  # torch-heavy: imported on first use only
        from vizsla.debugger.hook import DebugHook

        return DebugHook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
