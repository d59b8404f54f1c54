"""Rules by name: register_rule / list_rules / create_rule, plus custom rules loaded from a file or module.

`create_rule("LossNotDecreasing", num_steps="20")` checks the parameter names against the rule's dataclass
fields and converts strings (SageMaker passes every rule parameter as a string) to the field's type.
A custom rule is a BaseRule subclass registered by name, or given as "path/to/file.py:ClassName" or
"package.module:ClassName".
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import typing
from pathlib import Path
from typing import Any

from vizsla.debugger.rules.base import BaseRule
from vizsla.errors import SpecError

_RULES: dict[str, type[BaseRule]] = {}

# The built-in rules, one module each; imported lazily on the first registry call.
BUILTIN_MODULES = (
    "vanishing_gradient",
    "exploding_tensor",
    "loss_not_decreasing",
    "overfit",
    "overtraining",
    "poor_weight_initialization",
    "saturated_activation",
    "dead_relu",
    "weight_update_ratio",
    "tensor_variance",
    "all_zero",
    "unchanged_tensor",
    "class_imbalance",
    "check_input_images",
    "stalled_training",
)
_loaded = False

# What `--debug` turns on (issue 5 / the shared design), each with the "log" action.
DEFAULT_RULES = (
    "VanishingGradient",
    "ExplodingTensor",
    "LossNotDecreasing",
    "Overfit",
    "PoorWeightInitialization",
    "DeadRelu",
    "SaturatedActivation",
    "AllZero",
    "ClassImbalance",
    "CheckInputImages",
    "StalledTraining",
)
# SageMaker's name for StalledTraining.
ALIASES = {"StalledTrainingRule": "StalledTraining"}


def register_rule(cls: type[BaseRule], name: str | None = None) -> type[BaseRule]:
    """Register a rule class under `name` (default: its `name` attribute); usable as a decorator."""
    if not (isinstance(cls, type) and issubclass(cls, BaseRule)):
        raise SpecError(f"{cls!r} is not a subclass of vizsla.debugger.rules.BaseRule")
    key = name or cls.name or cls.__name__
    if not cls.name:
        cls.name = key
    _RULES[key] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(f"vizsla.debugger.rules.{module}")


def list_rules() -> list[str]:
    """Names of every registered rule (built-ins and custom), sorted."""
    _load_builtins()
    return sorted(_RULES)


def get_rule_class(name: str) -> type[BaseRule]:
    """The class for a registered name, a "file.py:Class" or a "module:Class" reference."""
    _load_builtins()
    name = ALIASES.get(name, name)
    if name in _RULES:
        return _RULES[name]
    if ":" in name:
        return _load_custom(name)
    raise SpecError(
        f"unknown debugger rule '{name}'; known rules: {', '.join(sorted(_RULES))}",
        hint="a custom rule can be given as path/to/file.py:ClassName",
    )


def _load_custom(reference: str) -> type[BaseRule]:
    """Import a custom rule class from "path/to/file.py:ClassName" or "package.module:ClassName"."""
    target, _, class_name = reference.rpartition(":")
    try:
        if target.endswith(".py") or "/" in target:
            path = Path(target).expanduser()
            if not path.is_file():
                raise SpecError(f"custom rule file not found: {path}")
            module_name = f"vizsla_custom_rule_{abs(hash(str(path.resolve())))}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise SpecError(f"cannot import custom rule file {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except SpecError:
        raise
    except Exception as exc:  # the user's file: report its error, not ours
        raise SpecError(f"cannot load custom rule {reference}: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise SpecError(f"custom rule {reference}: {target} has no class {class_name}")
    register_rule(cls, cls.name or class_name)
    return cls


def create_rule(name: str, **params: Any) -> BaseRule:
    """An instance of rule `name` with `params` checked against its fields and converted to their types."""
    cls = get_rule_class(name)
    if not dataclasses.is_dataclass(cls):
        if params:
            raise SpecError(f"rule {name} takes no parameters (got {', '.join(params)})")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        known = ", ".join(fields) or "none"
        raise SpecError(f"rule {name} has no parameter {', '.join(unknown)}; its parameters: {known}")
    hints = typing.get_type_hints(cls)
    converted = {key: _convert(name, key, value, hints.get(key)) for key, value in params.items()}
    try:
        return cls(**converted)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"rule {name}: {exc}") from None


def _convert(rule: str, key: str, value: Any, hint: Any) -> Any:
    """Convert a parameter (often a string) to the field's declared type: bool, int, float, str, tuple."""
    if value is None:
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_args(hint) else [hint]
    origin = typing.get_origin(args[0]) if args else None
    target = args[0] if args else None
    try:
        if origin is tuple or target is tuple:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(value)
        if target is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes")
            return bool(value)
        if target is int and not isinstance(value, bool):
            number = float(value)
            if number != int(number):
                raise ValueError(value)
            return int(number)
        if target is float and not isinstance(value, bool):
            return float(value)
        if target is str:
            return str(value)
    except (TypeError, ValueError):
        expected = getattr(target, "__name__", str(target))
        raise SpecError(f"rule {rule}: parameter {key}={value!r} is not a valid {expected}") from None
    return value
