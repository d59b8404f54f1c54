"""smdebug's save configuration and collections, and its debughookconfig.json reader.

Semantics as in smdebug (SD:smdebug/core/save_config.py, collection.py, json_config.py): a collection saves
a mode step when the step is in `save_steps`, or when start_step <= step < end_step and
step % save_interval == 0 (so step 0 is saved); intervals can differ per mode (`train.save_interval`,
`eval.save_interval`, ...); the default interval is 500. Every JSON value is a string (as the SDK writes).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vizsla.debugger.smdebug_compat import ModeKeys, mode_key

DEFAULT_SAVE_INTERVAL = 500
DEFAULT_CONFIG_PATH = "/opt/ml/input/config/debughookconfig.json"
CONFIG_ENV = "SMDEBUG_CONFIG_FILE_PATH"
_SAVE_KEYS = ("save_interval", "save_steps", "start_step", "end_step")
_MODES = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT, ModeKeys.GLOBAL)

# smdebug's PyTorch collections (SD:smdebug/pytorch/collection.py); "scalars" holds save_scalar values.
BUILTIN_REGEX = {
    "weights": r"^(?!gradient).*weight",
    "biases": r"^(?!gradient).*bias",
    "gradients": r"^gradient",
    "losses": r"[Ll]oss_(?!input).*output",
    "all": r".*",
    "scalars": r"^scalar/",
}
SCALAR_COLLECTIONS = ("losses", "scalars", "metrics", "sm_metrics")
DEFAULT_INCLUDE_COLLECTIONS = ("losses",)


def str2bool(value: Any) -> bool:
    """smdebug.profiler.utils.str2bool: true/false (any case), 1/0, yes/no, t/f, y/n; bools as they are."""
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("yes", "true", "t", "y", "1", "on"):
        return True
    if lowered in ("no", "false", "f", "n", "0", "off"):
        return False
    raise ValueError(f"Invalid boolean value: {value!r}")


def _steps(value: Any) -> list[int]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [int(v) for v in value.replace(" ", "").split(",") if v]
    return [int(v) for v in value]


@dataclass
class SaveConfigMode:
    """When one mode saves: save_interval, start_step, end_step, save_steps."""

    save_interval: int | None = None
    start_step: int = 0
    end_step: int | None = None
    save_steps: list[int] | None = None

    def __post_init__(self) -> None:
        self.save_interval = int(self.save_interval) if self.save_interval not in (None, "") else None
        self.start_step = int(self.start_step or 0)
        self.end_step = int(self.end_step) if self.end_step not in (None, "") else None
        self.save_steps = _steps(self.save_steps)

    def should_save_step(self, step: int) -> bool:
        if self.save_steps and step in self.save_steps:
            return True
        if step < self.start_step or (self.end_step is not None and step >= self.end_step):
            return False
        return bool(self.save_interval) and step % int(self.save_interval) == 0

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _SAVE_KEYS}


class SaveConfig:
    """Per-mode SaveConfigMode; keyword arguments apply to every mode not given in mode_save_configs."""

    def __init__(
        self,
        mode_save_configs: dict[Any, SaveConfigMode] | None = None,
        save_interval: int | None = None,
        start_step: int = 0,
        end_step: int | None = None,
        save_steps: list[int] | None = None,
    ) -> None:
        interval = DEFAULT_SAVE_INTERVAL if save_interval is None and not save_steps else save_interval
        given = {mode_key(k): v for k, v in (mode_save_configs or {}).items()}
        self.modes: dict[ModeKeys, SaveConfigMode] = {}
        for mode in _MODES:
            config = given.get(mode)
            if isinstance(config, dict):
                config = SaveConfigMode(**config)
            self.modes[mode] = config or SaveConfigMode(interval, start_step, end_step, save_steps)

    def get_save_config(self, mode: Any) -> SaveConfigMode:
        return self.modes[mode_key(mode)]

    def should_save_step(self, mode: Any, step: int) -> bool:
        return self.modes[mode_key(mode)].should_save_step(step)

    @classmethod
    def from_params(cls, params: dict[str, Any], default: SaveConfig | None = None) -> SaveConfig | None:
        """From JSON parameters (`save_interval`, `train.save_interval`, ...); None when none are given."""
        base = {k: params[k] for k in _SAVE_KEYS if k in params}
        per_mode = {
            mode: {
                k: params[f"{mode.name.lower()}.{k}"]
                for k in _SAVE_KEYS
                if f"{mode.name.lower()}.{k}" in params
            }
            for mode in _MODES
        }
        if not base and not any(per_mode.values()):
            return None
        configs = {}
        for mode in _MODES:
            inherited = default.modes[mode].to_json() if default is not None and not base else {}
            merged = {**inherited, **base, **per_mode[mode]}
            if "save_steps" in merged and "save_interval" not in merged:
                merged["save_interval"] = None
            configs[mode] = SaveConfigMode(**merged)
        return cls(mode_save_configs=configs)


class ReductionConfig:
    """smdebug's ReductionConfig. As there, a tensor whose collection (or hook) has one is stored as
    reductions only, unless save_raw_tensor; without one it is stored in full. The store always computes all
    of Vizsla's reductions and the histogram for a float tensor (the rules read them), whichever are named."""

    def __init__(
        self,
        reductions: list[str] | None = None,
        abs_reductions: list[str] | None = None,
        norms: list[str] | None = None,
        abs_norms: list[str] | None = None,
        save_raw_tensor: bool = False,
        save_shape: bool = False,
    ) -> None:
        self.reductions = list(reductions or [])
        self.abs_reductions = list(abs_reductions or [])
        self.norms = list(norms or [])
        self.abs_norms = list(abs_norms or [])
        self.save_raw_tensor = bool(save_raw_tensor)
        self.save_shape = bool(save_shape)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ReductionConfig:
        """From a JSON config's string parameters: `reductions` as "mean,abs_max,l2_norm,abs_l1_norm"."""
        reductions, abs_reductions, norms, abs_norms = [], [], [], []
        for name in (r.strip() for r in str(params.get("reductions", "")).split(",")):
            if not name:
                continue
            absolute = name.startswith("abs_")
            base = name[4:] if absolute else name
            if base.endswith("_norm"):
                (abs_norms if absolute else norms).append(base[:-5])
            else:
                (abs_reductions if absolute else reductions).append(base)
        return cls(
            reductions=reductions,
            abs_reductions=abs_reductions,
            norms=norms,
            abs_norms=abs_norms,
            save_raw_tensor=str2bool(params.get("save_raw_tensor", False)),
        )


@dataclass
class Collection:
    """A named set of tensors (regexes and explicit names) with its own save config."""

    name: str
    include_regex: list[str] = field(default_factory=list)
    tensor_names: set[str] = field(default_factory=set)
    save_config: SaveConfig | None = None
    reduction_config: ReductionConfig | None = None
    save_histogram: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.include_regex, str):
            self.include_regex = [self.include_regex]
        self.include_regex = list(self.include_regex or [])
        if not self.include_regex and self.name in BUILTIN_REGEX:
            self.include_regex = [BUILTIN_REGEX[self.name]]
        self.tensor_names = set(self.tensor_names or ())
        self._compiled = [re.compile(r) for r in self.include_regex]

    def include(self, regex: str | list[str]) -> None:
        for r in [regex] if isinstance(regex, str) else regex:
            self.include_regex.append(r)
            self._compiled.append(re.compile(r))

    def add_tensor_name(self, name: str) -> None:
        self.tensor_names.add(name)

    def matches(self, name: str) -> bool:
        return name in self.tensor_names or any(p.search(name) for p in self._compiled)

    def store_regex(self) -> str:
        """One regex for the store's collections.json: the include regexes or an exact tensor name."""
        parts = [f"(?:{r})" for r in self.include_regex] + [
            f"^{re.escape(n)}$" for n in sorted(self.tensor_names)
        ]
        return "|".join(parts) if parts else "(?!)"


@dataclass
class HookConfig:
    """Everything create_from_json_file reads: Hook keyword arguments and the collections' settings."""

    out_dir: str | None
    hook_kwargs: dict[str, Any]
    collections: list[Collection]


def config_path(json_config_path: str | None = None) -> str:
    return json_config_path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def read_json_config(json_config_path: str | None = None) -> HookConfig:
    """Parse a debughookconfig.json (SageMaker's shape); FileNotFoundError like smdebug when absent."""
    path = Path(config_path(json_config_path))
    if not path.is_file():
        hint = ""
        if "SM_MODEL_DIR" in os.environ:  # a Vizsla script job that was given no hook config
            hint = (
                " (this job has no debug hook config: it ran with --no-debug-hook / debug_hook: false, or "
                "it is a tuning trial, which SageMaker also starts without one; `debug_hook: true` in the "
                "script spec, or --debug, gives it one)"
            )
        raise FileNotFoundError(2, f"No such file or directory{hint}", str(path))
    data = json.loads(path.read_text())
    params = {str(k): v for k, v in (data.get("HookParameters") or {}).items()}
    default = SaveConfig.from_params(params)
    kwargs: dict[str, Any] = {"save_config": default}
    if params.get("include_regex"):
        kwargs["include_regex"] = [r for r in str(params["include_regex"]).split(",") if r]
    for key in ("save_all", "export_tensorboard", "dry_run"):
        if key in params:
            kwargs[key] = str2bool(params[key])
    if "tensorboard_dir" in params:
        kwargs["tensorboard_dir"] = params["tensorboard_dir"]
    if "reductions" in params:  # as smdebug: without `reductions` every tensor is stored in full
        kwargs["reduction_config"] = ReductionConfig.from_params(params)
    collections = []
    for entry in data.get("CollectionConfigurations") or []:
        cparams = {str(k): v for k, v in (entry.get("CollectionParameters") or {}).items()}
        regex = cparams.get("include_regex")
        collection = Collection(
            name=str(entry["CollectionName"]),
            include_regex=[r for r in str(regex).split(",") if r] if regex else [],
            save_config=SaveConfig.from_params(cparams, default),
            save_histogram=str2bool(cparams.get("save_histogram", True)),
        )
        if "reductions" in cparams:
            collection.reduction_config = ReductionConfig.from_params(cparams)
        collections.append(collection)
    if collections:
        kwargs["include_collections"] = [c.name for c in collections]
    return HookConfig(out_dir=data.get("LocalPath"), hook_kwargs=kwargs, collections=collections)
