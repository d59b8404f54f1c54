"""The SageMaker SDK's debugger and profiler configuration classes, mapped onto DebugSpec / ProfileSpec.

A notebook's `rules=[Rule.sagemaker(rule_configs.vanishing_gradient()), ProfilerRule.sagemaker(
rule_configs.LowGPUUtilization())]`, `debugger_hook_config=DebuggerHookConfig(hook_parameters=...,
collection_configs=[CollectionConfig(...)])` and `profiler_config=ProfilerConfig(...)` keep working: the
debugger rules run over the script's smdebug tensors in Vizsla's store, the profiler watches its process.
S3 paths, instance types and rule container images mean nothing locally and are only recorded.
"""

from __future__ import annotations

import logging
import re
import types
from dataclasses import dataclass, field
from typing import Any

from vizsla.profiler.rules import ORDER as PROFILER_RULE_ORDER
from vizsla.scriptmode.smdebug_shim.config import str2bool

log = logging.getLogger("vizsla.sagemaker")

# The SDK's detailed-profiling window when FrameworkProfile gives none (profiler_constants.py).
DEFAULT_PROFILE_START_STEP = 5
DEFAULT_PROFILE_NUM_STEPS = 1

# Debugger rules by SageMaker's snake_case config names (smdebug_rulesconfig), Vizsla rule names as values.
_DEBUG_RULES = {
    "vanishing_gradient": "VanishingGradient",
    "exploding_tensor": "ExplodingTensor",
    "overfit": "Overfit",
    "overtraining": "Overtraining",
    "poor_weight_initialization": "PoorWeightInitialization",
    "loss_not_decreasing": "LossNotDecreasing",
    "dead_relu": "DeadRelu",
    "saturated_activation": "SaturatedActivation",
    "stalled_training_rule": "StalledTraining",
    "tensor_variance": "TensorVariance",
    "unchanged_tensor": "UnchangedTensor",
    "weight_update_ratio": "WeightUpdateRatio",
    "all_zero": "AllZero",
    "class_imbalance": "ClassImbalance",
    "check_input_images": "CheckInputImages",
}
# The SDK's ProfilerReport plus every profiler rule, by the profiler's own list (its report order).
_PROFILER_RULES = ("ProfilerReport", *PROFILER_RULE_ORDER)


class ProfilerRuleConfig:
    """One profiler rule config as `rule_configs.LowGPUUtilization(threshold_p95=...)` builds it."""

    def __init__(self, name: str, **rule_parameters: Any) -> None:
        self.rule_name = name
        self.rule_parameters = dict(rule_parameters)

    def __repr__(self) -> str:
        return f"{self.rule_name}({self.rule_parameters})"


def _debug_rule_config(rule: str) -> Any:
    def build() -> dict[str, Any]:
        return {
            "DebugRuleConfiguration": {
                "RuleConfigurationName": rule,
                "RuleParameters": {"rule_to_invoke": rule},
            }
        }

    build.__name__ = rule
    build.__doc__ = f"The {rule} rule's base config (pass it to Rule.sagemaker)."
    return build


def _profiler_rule_config(rule: str) -> Any:
    def build(**rule_parameters: Any) -> ProfilerRuleConfig:
        return ProfilerRuleConfig(rule, **rule_parameters)

    build.__name__ = rule
    return build


rule_configs = types.SimpleNamespace(
    **{name: _debug_rule_config(rule) for name, rule in _DEBUG_RULES.items()},
    **{name: _profiler_rule_config(name) for name in _PROFILER_RULES},
)


@dataclass
class CollectionConfig:
    """A tensor collection to save: a built-in one (losses, gradients, ...) or one named by regex."""

    name: str
    parameters: dict[str, Any] | None = None

    def to_spec(self) -> dict[str, Any]:
        """The DebugSpec collection override (CollectionSpec fields)."""
        params = {k: str(v) for k, v in (self.parameters or {}).items()}
        out: dict[str, Any] = {}
        if "include_regex" in params:
            out["include_regex"] = params["include_regex"]
        elif self.name not in ("losses", "weights", "biases", "gradients"):
            out["include_regex"] = re.escape(self.name)  # e.g. CrossEntropyLoss_output_0 by its own name
        interval = params.get("save_interval") or params.get("train.save_interval")
        if interval:
            out["save_interval"] = int(interval)
        per_mode = mode_intervals(params)
        if per_mode:  # e.g. the dog-breed notebooks' train.save_interval 10, eval.save_interval 1
            out["mode_save_intervals"] = per_mode
        steps = params.get("train.save_steps") or params.get("save_steps")
        if steps:
            out["save_steps"] = [int(s) for s in steps.split(",") if s.strip()]
        # smdebug stores full tensors unless `reductions` are asked for (then only with save_raw_tensor)
        out["save_raw"] = "reductions" not in params or str2bool(params.get("save_raw_tensor", False))
        return out


def mode_intervals(params: dict[str, str]) -> dict[str, int]:
    """SageMaker's per-mode `train.save_interval`, `eval.save_interval`, ... as {"TRAIN": n, "EVAL": m}."""
    return {
        mode.upper(): int(params[f"{mode}.save_interval"])
        for mode in ("train", "eval", "predict", "global")
        if params.get(f"{mode}.save_interval")
    }


@dataclass
class DebuggerHookConfig:
    """Where and how often the hook saves (hook_parameters like {"train.save_interval": "100"})."""

    s3_output_path: str | None = None
    container_local_output_path: str | None = None
    hook_parameters: dict[str, Any] | None = None
    collection_configs: list[CollectionConfig] | None = None


class TensorBoardOutputConfig:
    """The SDK's TensorBoardOutputConfig (sagemaker/debugger/debugger.py): where TensorBoard files go.

    Recorded with the job only: the S3 path means nothing locally, and a script writing TensorBoard
    events to CONTAINER_LOCAL_OUTPUT_PATH (default /opt/ml/output/tensorboard) keeps them in its job folder.
    """

    def __init__(self, s3_output_path: str, container_local_output_path: str | None = None) -> None:
        self.s3_output_path = s3_output_path
        self.container_local_output_path = container_local_output_path

    def _to_request_dict(self) -> dict[str, str]:
        request = {"S3OutputPath": self.s3_output_path}
        if self.container_local_output_path is not None:
            request["LocalPath"] = self.container_local_output_path
        return request


@dataclass
class Rule:
    """A debugger rule (Rule.sagemaker(rule_configs.overfit(), rule_parameters={...}))."""

    name: str
    rule_parameters: dict[str, Any] = field(default_factory=dict)
    collections_to_save: list[CollectionConfig] = field(default_factory=list)
    actions: list[str] = field(default_factory=lambda: ["log"])
    recorded: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def sagemaker(
        cls,
        base_config: Any,
        name: str | None = None,
        container_local_output_path: str | None = None,
        s3_output_path: str | None = None,
        other_trials_s3_input_paths: list[str] | None = None,
        rule_parameters: dict[str, Any] | None = None,
        collections_to_save: list[CollectionConfig] | None = None,
        actions: Any = None,
    ) -> Rule:
        config = (
            base_config.get("DebugRuleConfiguration", base_config) if isinstance(base_config, dict) else {}
        )
        rule = (config.get("RuleParameters") or {}).get("rule_to_invoke") or config.get(
            "RuleConfigurationName"
        )
        if not rule:
            raise ValueError(f"not a debugger rule config: {base_config!r} (use rule_configs.<rule>())")
        params = {k: v for k, v in (config.get("RuleParameters") or {}).items() if k != "rule_to_invoke"}
        params.update(rule_parameters or {})
        return cls(
            name=str(rule),
            rule_parameters=params,
            collections_to_save=list(collections_to_save or []),
            actions=_actions(actions),
            recorded={"name": name, "s3_output_path": s3_output_path},
        )

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "parameters": dict(self.rule_parameters), "actions": list(self.actions)}


def _actions(actions: Any) -> list[str]:
    """rule_configs.ActionList(StopTraining(), ...) in the SDK; here 'stop' when any action stops."""
    if not actions:
        return ["log"]
    items = actions if isinstance(actions, list | tuple) else getattr(actions, "actions", [actions])
    kinds = ["stop" if "stop" in type(a).__name__.lower() or a == "stop" else "log" for a in items]
    return sorted(set(kinds))


@dataclass
class ProfilerRule:
    """A profiler rule (ProfilerRule.sagemaker(rule_configs.ProfilerReport()))."""

    name: str
    rule_parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def sagemaker(cls, base_config: ProfilerRuleConfig, name: str | None = None, **_: Any) -> ProfilerRule:
        if not isinstance(base_config, ProfilerRuleConfig):
            raise ValueError(f"not a profiler rule config: {base_config!r} (use rule_configs.<Rule>())")
        return cls(name=base_config.rule_name, rule_parameters=dict(base_config.rule_parameters))


@dataclass
class FrameworkProfile:
    """Framework (step-level) profiling window: a torch.profiler trace of those TRAIN steps of the script
    (its steps come from its smdebug hook)."""

    local_path: str | None = None
    start_step: int | None = None
    num_steps: int | None = None
    start_unix_time: int | None = None
    duration: int | None = None


@dataclass
class ProfilerConfig:
    """System monitoring interval (ms) and the framework profile."""

    s3_output_path: str | None = None
    system_monitor_interval_millis: int | None = None
    framework_profile_params: FrameworkProfile | None = None
    disable_profiler: bool = False


def debug_section(rules: list[Any], hook: DebuggerHookConfig | None) -> dict[str, Any] | None:
    """A DebugSpec mapping from the estimator's rules and hook config; None when neither asks for it."""
    debug_rules = [r for r in rules if isinstance(r, Rule)]
    if not debug_rules and hook is None:
        return None
    section: dict[str, Any] = {
        "enabled": True,
        "default_rules": False,
        "rules": [r.to_spec() for r in debug_rules],
    }
    params = {k: str(v) for k, v in ((hook.hook_parameters if hook else None) or {}).items()}
    interval = params.get("save_interval") or params.get("train.save_interval")
    if interval:
        section["save_interval"] = int(interval)
    per_mode = mode_intervals(params)
    if per_mode:
        section["mode_save_intervals"] = per_mode
    collections: dict[str, Any] = {}
    for config in [
        *(hook.collection_configs or [] if hook else []),
        *(c for r in debug_rules for c in r.collections_to_save),
    ]:
        collections[config.name] = {**collections.get(config.name, {}), **config.to_spec()}
    if collections:
        section["collections"] = collections
    return section


def torch_trace_window(framework: FrameworkProfile) -> dict[str, int]:
    """FrameworkProfile(start_step, num_steps) as a torch.profiler window recording exactly those steps
    (SageMaker's defaults: step 5, one step); time-based windows (start_unix_time, duration) are not
    supported and fall back to the step defaults."""
    if framework.start_unix_time is not None or framework.duration is not None:
        log.warning("FrameworkProfile: start_unix_time/duration are not supported; profiling by steps")
    start = DEFAULT_PROFILE_START_STEP if framework.start_step is None else int(framework.start_step)
    steps = DEFAULT_PROFILE_NUM_STEPS if framework.num_steps is None else int(framework.num_steps)
    warmup = 1 if start >= 1 else 0  # torch.profiler's warm-up step just before the recorded ones
    return {"wait": start - warmup, "warmup": warmup, "active": max(1, steps)}


def profile_section(rules: list[Any], config: ProfilerConfig | None) -> dict[str, Any] | None:
    """A ProfileSpec mapping from profiler rules and ProfilerConfig; None when profiling is not asked for."""
    profiler_rules = [r for r in rules if isinstance(r, ProfilerRule)]
    if (config is None or config.disable_profiler) and not profiler_rules:
        return None
    section: dict[str, Any] = {"enabled": True}
    if config is not None and config.system_monitor_interval_millis:
        section["interval_ms"] = int(config.system_monitor_interval_millis)
    framework = config.framework_profile_params if config is not None else None
    if framework is not None:
        section["torch_trace"] = torch_trace_window(framework)
    overrides = {
        r.name: r.rule_parameters for r in profiler_rules if r.name != "ProfilerReport" and r.rule_parameters
    }
    if overrides:
        section["rules"] = overrides
    return section
