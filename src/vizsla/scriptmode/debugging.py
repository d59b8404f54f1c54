"""DebugSession: the debugger around a script-mode child process (smdebug hook config in, rules out).

    session = DebugSession(spec.debug, job_dir)
    session.prepare(env)          # writes input/config/debughookconfig.json, sets SMDEBUG_CONFIG_FILE_PATH
    session.start()               # rules follow the store while the script writes it
    ... run the script; poll session.should_stop() ...
    summary = session.finish("Completed")   # final evaluation, debug/rules.json, summary for result.json

The script's smdebug calls go to the shim (vizsla/scriptmode/smdebug_shim), which writes Vizsla's tensor store
at $VIZSLA_DEBUG_DIR = <job>/<debug.out_dir>; the rules are vizsla.debugger.runner's RuleRunner, driven here
with a small stand-in for the trainer's state (the runner polls the store on its own thread).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from vizsla.debugger.runner import RULES_FILE, RuleRunner
from vizsla.infra.io import atomic_write_json

log = logging.getLogger(__name__)

CONFIG_ENV = "SMDEBUG_CONFIG_FILE_PATH"
DEBUG_DIR_ENV = "VIZSLA_DEBUG_DIR"
CONFIG_FILE = Path("input") / "config" / "debughookconfig.json"
END_WAIT_S = 10.0  # how long finish() waits for the script's hook to close the store
_MODES = ("TRAIN", "EVAL", "PREDICT", "GLOBAL")
# Vizsla's built-in collections as the smdebug hook can record them: (modes, every step?)
_BUILTIN = {
    "losses": (("TRAIN", "EVAL"), True),
    "weights": (("TRAIN",), False),
    "biases": (("TRAIN",), False),
    "gradients": (("TRAIN",), False),
}
# The reductions smdebug names for what Vizsla's store computes for every float tensor anyway.
VIZSLA_REDUCTIONS = "mean,std,min,max,l1_norm,l2_norm"
# Collections SageMaker's rule configs define by regex (RC collections.json), usable by name in a DebugSpec.
_RULE_COLLECTIONS = {"relu_output": ".*relu_output", "relu_input": ".*relu_input"}


class _ScriptState:
    """What RuleRunner reads from a trainer state: no spec, a status, and request_stop."""

    spec = None

    def __init__(self) -> None:
        self.status = "InProgress"
        self.stop_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason


def hook_config(debug_spec: Any, debug_dir: Path) -> dict[str, Any]:
    """debughookconfig.json in SageMaker's shape (every value a string) for a DebugSpec."""
    interval = str(int(debug_spec.save_interval))
    spec_modes = dict(getattr(debug_spec, "mode_save_intervals", None) or {})
    overrides = dict(debug_spec.collections or {})
    configs = []
    for name in [*_BUILTIN, *(n for n in overrides if n not in _BUILTIN)]:
        modes, every_step = _BUILTIN.get(name, (("TRAIN", "EVAL"), False))
        override = overrides.get(name)
        params: dict[str, str] = {}
        regex = getattr(override, "include_regex", None) or _RULE_COLLECTIONS.get(name)
        if name not in _BUILTIN:
            if regex is None:
                log.warning(
                    "debug.collections.%s: no include_regex for smdebug tensor names; not recorded", name
                )
                continue
            params["include_regex"] = regex
        elif regex is not None:
            params["include_regex"] = regex
        if override is not None and override.enabled is False:
            continue
        given = getattr(override, "save_interval", None)
        params["save_interval"] = str(given) if given is not None else ("1" if every_step else interval)
        per_mode = dict(getattr(override, "mode_save_intervals", None) or {})
        if not per_mode and given is None and not every_step:  # the spec-wide interval, per mode too
            per_mode = dict(spec_modes)
        for mode, every in per_mode.items():
            params[f"{mode.lower()}.save_interval"] = str(every)
        if getattr(override, "save_steps", None):
            params["save_steps"] = ",".join(str(s) for s in override.save_steps)
        saved = tuple(getattr(override, "modes", None) or modes)
        if "TRAIN" in saved:  # a script that never calls set_mode trains in GLOBAL mode: record it too
            saved += ("GLOBAL",)
        for mode in _MODES:
            if mode not in saved:
                params[f"{mode.lower()}.end_step"] = "0"  # this mode saves nothing
        if name != "losses":  # Vizsla's collections keep reductions (smdebug's default is full tensors)
            params["reductions"] = VIZSLA_REDUCTIONS
            if getattr(override, "save_raw", None):
                params["save_raw_tensor"] = "true"
        configs.append({"CollectionName": name, "CollectionParameters": params})
    hook_params = {"save_interval": interval}
    for mode, every in spec_modes.items():
        hook_params[f"{mode.lower()}.save_interval"] = str(every)
    return {
        "LocalPath": str(debug_dir),
        "HookParameters": hook_params,
        "CollectionConfigurations": configs,
    }


class DebugSession:
    """Hook config for the script, the rule runner over its store, and the summary for result.json."""

    def __init__(self, debug_spec: Any, job_dir: Path) -> None:
        self.spec = debug_spec
        self.job_dir = Path(job_dir)
        self.debug_dir = self.job_dir / debug_spec.out_dir
        self.config_file = self.job_dir / CONFIG_FILE
        self._state = _ScriptState()
        self._runner: RuleRunner | None = None

    def prepare(self, env: dict[str, str], config: dict[str, Any] | None = None) -> None:
        """Write debughookconfig.json (`config`, e.g. an SDK DebugHookConfig, else one from the spec)."""
        content = dict(config) if config is not None else hook_config(self.spec, self.debug_dir)
        content["LocalPath"] = str(self.debug_dir)  # the store lives in the job directory whatever was asked
        atomic_write_json(self.config_file, content)
        env[CONFIG_ENV] = str(self.config_file)
        env[DEBUG_DIR_ENV] = str(self.debug_dir)

    def start(self) -> None:
        """Start following the store with the spec's rules (in a background thread)."""
        self._runner = RuleRunner(self.spec, self.job_dir, end_wait=END_WAIT_S)
        self._runner.fit_start(self._state)  # type: ignore[arg-type]

    def should_stop(self) -> str | None:
        """The reason when a rule with the `stop` action has fired, else None."""
        return self._state.stop_reason

    def finish(self, status: str) -> dict[str, Any]:
        """Evaluate what is left, write debug/rules.json and return {rules, issues_found, stopped_by, ...}."""
        if self._runner is None:
            self.start()
        self._state.status = status
        assert self._runner is not None
        self._runner.fit_end(self._state)  # type: ignore[arg-type]
        self._runner = None
        return self.summary()

    def summary(self) -> dict[str, Any]:
        path = self.debug_dir / RULES_FILE
        rules = json.loads(path.read_text()).get("rules", []) if path.is_file() else []
        entries = []
        for rule in rules:
            findings = rule.get("findings") or []
            entries.append(
                {
                    "name": rule["name"],
                    "status": rule["status"],
                    "findings": rule.get("findings_total", 0),
                    "first_finding": findings[0]["message"] if findings else None,
                    "error": rule.get("error"),
                    "note": rule.get("note"),
                }
            )
        return {
            "debug_dir": str(self.debug_dir),
            "tensors_recorded": (self.debug_dir / "index.jsonl").is_file(),
            "rules": entries,
            "issues_found": [e["name"] for e in entries if e["status"] == "IssuesFound"],
            "stopped_by": self._state.stop_reason,
        }


def write_default_hook_config(env: dict[str, str], job_dir: Path, debug_dir: Path) -> Path:
    """Write the SDK's default DebuggerHookConfig(s3_output_path=output_path); returns the file's path.

    The request holds only S3OutputPath (sagemaker-python-sdk src/sagemaker/debugger/debugger.py
    `DebuggerHookConfig._to_request_dict`); no HookParameters and no CollectionConfigurations, so the hook
    keeps smdebug's defaults (collection losses, saved every 500 steps). Locally both paths are DEBUG_DIR
    (SageMaker: s3://<output_path>/<job>/debug-output, synced from LocalPath /opt/ml/output/tensors).
    """
    config_file = job_dir / CONFIG_FILE
    atomic_write_json(config_file, {"S3OutputPath": str(debug_dir), "LocalPath": str(debug_dir)})
    env[CONFIG_ENV] = str(config_file)
    env[DEBUG_DIR_ENV] = str(debug_dir)
    return config_file
