"""The search space: SageMaker-style ranges -> Optuna distributions; hyperparameter names -> JobSpec paths.

Users name hyperparameters as they know them ("lr", "learning_rate", "batch-size", "train.lr"); every name
resolves to one dotted JobSpec path, so a trial's spec is the static training mapping with each sampled
value put at its path. Optuna is imported only where a distribution or a trial is handled.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import types
import typing
from typing import TYPE_CHECKING, Any

from vizsla.errors import SpecError
from vizsla.spec import DataSpec, ModelSpec, TrainSpec, build_spec
from vizsla.tuning.tune_spec import CategoricalRange, ContinuousRange, IntegerRange, ParameterRange

if TYPE_CHECKING:
    import optuna

SECTIONS: dict[str, type] = {"train": TrainSpec, "model": ModelSpec, "data": DataSpec}
# Names from SageMaker examples, tutorials and other tools, after lower-casing and '-' -> '_'.
ALIASES = {
    "learning_rate": "train.lr",
    "model": "model.name",
    "model_name": "model.name",
    "arch": "model.name",
    "architecture": "model.name",
    "backbone": "model.name",
    "freeze": "train.finetune",
    "freezing": "train.finetune",
    "dropout": "model.head_dropout",
    "grad_clip": "train.grad_clip_norm",
    "early_stopping": "train.early_stopping_patience",
    "num_epochs": "train.epochs",
    "n_epochs": "train.epochs",
    "numepochs": "train.epochs",
    "wd": "train.weight_decay",
    "optimiser": "train.optimizer",
    "warmup": "train.warmup_epochs",
    "scheduler": "train.schedule",
    "lr_scheduler": "train.schedule",
    "mini_batch_size": "train.batch_size",
    # timm's train.py, torchvision's reference scripts, Hugging Face and Lightning
    "opt": "train.optimizer",
    "sched": "train.schedule",
    "smoothing": "train.label_smoothing",
    "drop": "model.head_dropout",
    "layer_lr_decay": "train.layer_decay",
    "lr_layer_decay": "train.layer_decay",
    "layerwise_lr_decay": "train.layer_decay",
    "mixup_alpha": "train.mixup",
    "cutmix_alpha": "train.cutmix",
    "model_ema_decay": "train.ema_decay",
    "ema": "train.ema_decay",
    "grad_accum_steps": "train.accumulate_steps",
    "gradient_accumulation_steps": "train.accumulate_steps",
    "accumulate_grad_batches": "train.accumulate_steps",
    "head_epochs": "train.staged_head_epochs",
    "aa": "data.auto_augment",
    "autoaugment": "data.auto_augment",
    "reprob": "data.random_erasing",
    "random_erase": "data.random_erasing",
}
NONE_TEXT = ("none", "null")  # how YAML-less hyperparameters (SageMaker's are strings) write "not set"
# Not hyperparameters: where a job writes, what it reads, and how it is recorded stay fixed for a tuning job.
REFUSED = {
    "data.root": "the dataset is the same for every trial (set it in training.data.root or --data)",
    "data.storage_options": "storage options are not a hyperparameter",
}
REVERSE_SUFFIX = "__1m"


def parse_head(value: str | None, what: str = "--head") -> list[int] | None:
    """'256,128' -> [256, 128]; '' or 'linear' -> [] (the one parser of head sizes written as text)."""
    if value is None:
        return None
    if value.strip().lower() in ("", "linear", "none"):
        return []
    try:
        sizes = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"{what} must be comma-separated layer sizes like 256,128 (got '{value}')") from None
    if any(size <= 0 for size in sizes):
        raise SpecError(f"{what} sizes must be positive (got '{value}')")
    return sizes


def _known_names(dotted: bool) -> list[str]:
    """Names to suggest: dotted paths for a dotted name, else bare field names and aliases."""
    if dotted:
        return [f"{section}.{field}" for section, model in SECTIONS.items() for field in model.model_fields]
    return sorted({field for model in SECTIONS.values() for field in model.model_fields} | set(ALIASES))


def _unknown(name: str, why: str) -> SpecError:
    key = name.replace("-", "_").lower()
    close = difflib.get_close_matches(key, _known_names("." in key), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return SpecError(
        f"hyperparameter {name!r} {why}{hint} (`vizsla train --help` lists the hyperparameters; "
        "write them as flag names without '--' or as paths like train.lr)"
    )


def resolve_path(name: str) -> str:
    """The dotted JobSpec path ('train.lr') that the hyperparameter `name` sets."""
    key = name.strip().replace("-", "_").lower()
    if key == "output" or key.startswith("tracking.") or key in ("tracking", "name", "cache_dir"):
        raise SpecError(f"hyperparameter {name!r} cannot be tuned: it is part of the job, not of the model")
    if "." in key:
        section, _, field = key.partition(".")
        if section not in SECTIONS or field not in SECTIONS[section].model_fields:
            raise _unknown(name, "is not a field of the job spec")
        path = key
    elif key in ALIASES:
        path = ALIASES[key]
    else:
        matches = [f"{section}.{key}" for section, model in SECTIONS.items() if key in model.model_fields]
        if len(matches) != 1:
            raise _unknown(
                name, "is not a known hyperparameter" if not matches else f"is ambiguous: {matches}"
            )
        path = matches[0]
    if path in REFUSED:
        raise SpecError(f"hyperparameter {name!r} cannot be tuned: {REFUSED[path]}")
    return path


def _annotation(path: str) -> Any:
    section, _, field = path.partition(".")
    return SECTIONS[section].model_fields[field].annotation


def _is_int_field(path: str) -> bool:
    """True for int and int | None fields (a Continuous range there would give 3.7 epochs)."""
    annotation = _annotation(path)
    if annotation is int:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args == [int]
    return False


def _is_optional(path: str) -> bool:
    """True for fields that take None (a categorical range cannot hold None, so 'none' stands for it)."""
    annotation = _annotation(path)
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    return union and type(None) in typing.get_args(annotation)


def coerce_value(path: str, value: Any) -> Any:
    """A value as users write it -> what the JobSpec field takes (head '256,128' -> [256, 128], 5.0 -> 5)."""
    if path == "model.head":
        if isinstance(value, str):
            return parse_head(value, what="model.head")
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return [] if value == 0 else [value]
        if isinstance(value, list | tuple):
            return [int(v) if isinstance(v, str) and v.strip().isdigit() else v for v in value]
        return value
    if path == "train.finetune" and isinstance(value, bool):
        return "head" if value else "full"  # freeze: true -> a frozen backbone
    if isinstance(value, str) and value.strip().lower() in NONE_TEXT and _is_optional(path):
        return None  # e.g. layer_decay: [none, 0.65] compares the spec's default with a value
    if isinstance(value, float) and value.is_integer() and _is_int_field(path):
        return int(value)
    return value


def _set_path(mapping: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = mapping
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def trial_spec_dict(training: dict[str, Any], values: dict[str, Any], output: str) -> dict[str, Any]:
    """The JobSpec mapping of one trial: the static training part, each value at its path, and the output."""
    spec = copy.deepcopy(training)
    for name, value in values.items():
        path = resolve_path(name)
        _set_path(spec, path, coerce_value(path, value))
    spec["output"] = str(output)
    return spec


def static_training(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Flat static hyperparameters ({'epochs': '3', 'lr': 0.01}) -> a nested training mapping."""
    training: dict[str, Any] = {}
    for name, value in hyperparameters.items():
        path = resolve_path(name)
        _set_path(training, path, coerce_value(path, value))
    return training


def param_name(name: str, rng: ParameterRange) -> str:
    """The Optuna parameter name: the user's, except for ReverseLogarithmic which samples 1 - x."""
    if isinstance(rng, ContinuousRange) and rng.effective_scaling() == "ReverseLogarithmic":
        return f"{name}{REVERSE_SUFFIX}"
    return name


def choices(rng: CategoricalRange) -> list[Any]:
    """Categorical values as Optuna choices: lists (head sizes) become their JSON text."""
    return [json.dumps(v) if isinstance(v, list) else v for v in rng.values]


def _decode_choice(rng: CategoricalRange, choice: Any) -> Any:
    for value, encoded in zip(rng.values, choices(rng), strict=True):
        if type(encoded) is type(choice) and encoded == choice:
            return value
    return choice


def to_distribution(rng: ParameterRange) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of a range (ReverseLogarithmic: log-uniform over 1 - x)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(rng, CategoricalRange):
        return CategoricalDistribution(choices(rng))
    scaling = rng.effective_scaling()
    if isinstance(rng, IntegerRange):
        return IntDistribution(rng.min, rng.max, log=scaling == "Logarithmic")
    if scaling == "ReverseLogarithmic":
        return FloatDistribution(1.0 - rng.max, 1.0 - rng.min, log=True)
    return FloatDistribution(rng.min, rng.max, log=scaling == "Logarithmic")


def to_distributions(ranges: dict[str, ParameterRange]) -> dict[str, optuna.distributions.BaseDistribution]:
    """{Optuna parameter name: distribution} of a space, e.g. to add trials copied from another study."""
    return {param_name(name, rng): to_distribution(rng) for name, rng in ranges.items()}


def suggest(trial: optuna.trial.BaseTrial, ranges: dict[str, ParameterRange]) -> dict[str, Any]:
    """Ask the trial for every range; return {name as written in the space: the value the job uses}."""
    params: dict[str, Any] = {}
    for name, rng in ranges.items():
        internal = param_name(name, rng)
        dist = to_distribution(rng)
        if isinstance(rng, CategoricalRange):
            params[internal] = trial.suggest_categorical(internal, dist.choices)  # type: ignore[attr-defined]
        elif isinstance(rng, IntegerRange):
            params[internal] = trial.suggest_int(internal, dist.low, dist.high, log=dist.log)  # type: ignore[attr-defined]
        else:
            params[internal] = trial.suggest_float(internal, dist.low, dist.high, log=dist.log)  # type: ignore[attr-defined]
    return values_from_params(params, ranges)


def values_from_params(params: dict[str, Any], ranges: dict[str, ParameterRange]) -> dict[str, Any]:
    """Optuna params (e.g. a FrozenTrial's) -> {name: value}; names the trial never sampled are left out."""
    values: dict[str, Any] = {}
    for name, rng in ranges.items():
        internal = param_name(name, rng)
        if internal not in params:
            continue
        raw = params[internal]
        if isinstance(rng, CategoricalRange):
            values[name] = _decode_choice(rng, raw)
        elif internal != name:
            values[name] = min(max(1.0 - raw, rng.min), rng.max)  # back from 1 - x, clamped against rounding
        else:
            values[name] = raw
    return values


def grid_space(ranges: dict[str, ParameterRange]) -> dict[str, list[Any]]:
    """The search space of Optuna's GridSampler: categorical ranges only, as in SageMaker."""
    for name, rng in ranges.items():
        if not isinstance(rng, CategoricalRange):
            raise SpecError(
                f"ranges.{name}: Grid search needs Categorical ranges only (as in SageMaker); "
                f"list the values of {name!r} or use strategy Random/Bayesian"
            )
    return {name: choices(rng) for name, rng in ranges.items()}  # type: ignore[arg-type]


def grid_size(ranges: dict[str, ParameterRange]) -> int:
    """Number of combinations of a grid: the training jobs a Grid tuning job runs."""
    return math.prod(len(values) for values in grid_space(ranges).values())


def _probe_values(rng: ParameterRange) -> list[Any]:
    if isinstance(rng, CategoricalRange):
        return list(rng.values)
    return [rng.min, rng.max]


def check_space(ranges: dict[str, ParameterRange], training: dict[str, Any], source: str) -> None:
    """Refuse, before any trial runs, a space whose names or values the JobSpec would not accept."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    data = training.get("data")
    if data is None or (isinstance(data, dict) and not data.get("root")):
        raise SpecError(
            f"no data given ({source}): pass --data ROOT (or training.data.root in the space file)"
        )
    build_spec(trial_spec_dict(training, {}, "probe"), source=f"{source}: training")
    for name, rng in ranges.items():
        try:
            path = resolve_path(name)
        except SpecError as exc:
            problems.append(f"  ranges.{name}: {exc.message}")
            continue
        if path in seen:
            problems.append(f"  ranges.{name}: sets {path}, as ranges.{seen[path]} does; keep one of them")
        seen[path] = name
        if isinstance(rng, ContinuousRange) and _is_int_field(path):
            problems.append(f"  ranges.{name}: {path} takes whole numbers; use type: Integer")
            continue
        for value in _probe_values(rng):
            try:
                build_spec(trial_spec_dict(training, {name: value}, "probe"))
            except SpecError as exc:
                reason = exc.message.splitlines()[-1].strip()
                problems.append(f"  ranges.{name}: value {value!r} is not valid for {path} ({reason})")
    if problems:
        raise SpecError(f"invalid search space ({source}):\n" + "\n".join(problems))


# --- script mode: ranges are the script's own argument names -------------------------------------------


def script_trial_mapping(script: dict[str, Any], values: dict[str, Any], output: str) -> dict[str, Any]:
    """One trial's script job mapping: sampled values merged over the static hyperparameters, verbatim
    names (`batch-size` stays `batch-size`: the script's argparse defines them, not Vizsla)."""
    mapping = copy.deepcopy(script)
    mapping["hyperparameters"] = {**(mapping.get("hyperparameters") or {}), **values}
    mapping["output"] = str(output)
    return mapping


def check_script_space(spec: Any, source: str) -> None:
    """Refuse, before any trial runs, a script section or a range value the script job spec rejects."""
    from vizsla.scriptmode.spec import build_script_spec

    script = spec.script or {}
    build_script_spec(script_trial_mapping(script, {}, "probe"), source=f"{source}: script")
    problems: list[str] = []
    for name, rng in spec.ranges.items():
        for value in _probe_values(rng):
            try:
                build_script_spec(script_trial_mapping(script, {name: value}, "probe"))
            except SpecError as exc:
                reason = exc.message.splitlines()[-1].strip()
                problems.append(f"  ranges.{name}: value {value!r} is not a valid script argument ({reason})")
    if problems:
        raise SpecError(f"invalid search space ({source}):\n" + "\n".join(problems))
