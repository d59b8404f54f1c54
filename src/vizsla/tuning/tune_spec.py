"""Pydantic TuneSpec: a tuning job in SageMaker's vocabulary (ranges, objective, strategy, limits), from YAML.

A space file may be our own shape, a bare mapping of ranges, or SageMaker's API / SDK JSON; all are
normalised to one mapping before validation, so every shape yields the same TuneSpec.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from vizsla.base_spec import BaseJobSpec, BaseSpec, deep_merge, read_yaml

log = logging.getLogger(__name__)

MAX_RANGES = 30  # SageMaker's limit of tunable hyperparameters
MAX_CATEGORICAL_VALUES = 30  # SageMaker's limit of values per categorical range
AUTO_LOG_RATIO = 100  # Auto scaling goes logarithmic when max / min spans two decades or more


def _auto_scaling(low: float, high: float) -> str:
    return "Logarithmic" if low > 0 and high / low >= AUTO_LOG_RATIO else "Linear"


class ContinuousRange(BaseSpec):
    """A real-valued hyperparameter sampled in [min, max]."""

    type: Literal["Continuous"] = "Continuous"
    min: float = Field(allow_inf_nan=False, description="Lowest value.")
    max: float = Field(allow_inf_nan=False, description="Highest value.")
    scaling: Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"] = Field(
        "Auto",
        description="Auto: Logarithmic when min > 0 and max/min >= 100 (e.g. lr 1e-5..1e-1), else Linear. "
        "ReverseLogarithmic: dense near 1, for 0 <= min < max < 1 (e.g. momentum).",
    )

    @model_validator(mode="after")
    def _check(self) -> ContinuousRange:
        if not self.min < self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        if self.scaling == "Logarithmic" and self.min <= 0:
            raise ValueError(f"Logarithmic scaling needs min > 0 (got {self.min})")
        if self.scaling == "ReverseLogarithmic" and not (0 <= self.min < self.max < 1):
            raise ValueError("ReverseLogarithmic scaling needs 0 <= min < max < 1")
        return self

    def effective_scaling(self) -> str:
        """The scaling sampled: Auto decided up front (SageMaker infers it while tuning)."""
        return _auto_scaling(self.min, self.max) if self.scaling == "Auto" else self.scaling


class IntegerRange(BaseSpec):
    """A whole-number hyperparameter sampled in [min, max]."""

    type: Literal["Integer"] = "Integer"
    min: int = Field(description="Lowest value.")
    max: int = Field(description="Highest value (inclusive).")
    scaling: Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"] = Field(
        "Auto", description="Auto: Logarithmic when min > 0 and max/min >= 100, else Linear."
    )

    @model_validator(mode="after")
    def _check(self) -> IntegerRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if self.scaling == "ReverseLogarithmic":
            raise ValueError("ReverseLogarithmic scaling is for Continuous ranges only (as in SageMaker)")
        if self.scaling == "Logarithmic" and self.min <= 0:
            raise ValueError(f"Logarithmic scaling needs min > 0 (got {self.min})")
        return self

    def effective_scaling(self) -> str:
        """The scaling sampled: Auto decided up front from the bounds."""
        return _auto_scaling(self.min, self.max) if self.scaling == "Auto" else self.scaling


CategoricalValue = bool | int | float | str | list[bool | int | float | str]


class CategoricalRange(BaseSpec):
    """A hyperparameter chosen from a list of values (strings, numbers, booleans or lists like head sizes)."""

    type: Literal["Categorical"] = "Categorical"
    values: list[CategoricalValue] = Field(
        min_length=1, max_length=MAX_CATEGORICAL_VALUES, description="The values to try (1 to 30)."
    )

    @field_validator("values")
    @classmethod
    def _unique(cls, values: list[Any]) -> list[Any]:
        keys = [repr(v) for v in values]
        if len(set(keys)) != len(keys):
            raise ValueError("values must not repeat")
        return values


ParameterRange = Annotated[ContinuousRange | IntegerRange | CategoricalRange, Field(discriminator="type")]


class ObjectiveSpec(BaseSpec):
    """The metric the tuning job optimises."""

    metric: str = Field(
        "valid_accuracy",
        description="Metric the trainer records (result.json / per epoch), e.g. valid_accuracy (default), "
        "valid_loss; for a script, the name of one of its metric definitions.",
    )
    type: Literal["Maximize", "Minimize"] = Field(
        "Maximize", description="Maximize or Minimize; when left out, a metric ending in 'loss' is minimised."
    )

    @model_validator(mode="before")
    @classmethod
    def _infer_type(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"metric": data}
        if isinstance(data, dict) and "type" not in data and str(data.get("metric", "")).endswith("loss"):
            data = {**data, "type": "Minimize"}
        return data


class HyperbandSpec(BaseSpec):
    """Hyperband's resource: epochs a trial may train before it can be stopped, and at most."""

    min_resource: int = Field(1, ge=1, description="Epochs before a trial may be stopped.")
    max_resource: int | None = Field(
        None, ge=1, description="Most epochs of a trial; default: training epochs."
    )
    reduction_factor: int = Field(3, ge=2, description="Keep 1/reduction_factor of the trials at each rung.")

    @model_validator(mode="after")
    def _order(self) -> HyperbandSpec:
        if self.max_resource is not None and self.max_resource < self.min_resource:
            raise ValueError("max_resource must be at least min_resource")
        return self


class CompletionSpec(BaseSpec):
    """When the tuning job stops before its budget, like SageMaker's TuningJobCompletionCriteria."""

    target_value: float | None = Field(None, description="Stop once a trial reaches this objective value.")
    max_jobs_not_improving: int | None = Field(
        None, ge=3, description="Stop after this many trials without a 1% improvement of the best (>= 3)."
    )
    max_runtime_s: float | None = Field(
        None, gt=0, description="Stop starting trials after this many seconds."
    )


class WarmStartSpec(BaseSpec):
    """Earlier tuning jobs whose trials seed this one."""

    parents: list[str] = Field(
        min_length=1, max_length=5, description="Parent tuning job directories to start from (1 to 5)."
    )
    type: Literal["IdenticalDataAndAlgorithm", "TransferLearning"] = Field(
        "IdenticalDataAndAlgorithm",
        description="IdenticalDataAndAlgorithm: same data and model family; TransferLearning: may differ.",
    )


class TuneSpec(BaseJobSpec):
    """A tuning job: which hyperparameters to search, how, for how long, and the fixed training job."""

    noun: ClassVar[str] = "tuning spec"

    name: str | None = Field(None, description="Tuning job name; default: the output folder's name.")
    output: str = Field(description="Tuning job directory.")
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec, description="Metric and direction.")
    strategy: Literal["Bayesian", "Random", "Grid", "Hyperband"] = Field(
        "Bayesian",
        description="Bayesian (TPE), Random, Grid (categorical only) or Hyperband (TPE + pruning).",
    )
    max_jobs: int | None = Field(
        None, ge=1, description="Training jobs to run; default 10, for Grid the number of combinations."
    )
    max_parallel: int = Field(
        1, ge=1, description="Training jobs (trials) at once on this machine, each in its own process."
    )
    trial_nproc: int = Field(
        1,
        ge=1,
        description="Processes per trial: above 1 each trial is a distributed job under torchrun (DDP), one "
        "process per GPU or a share of the cores, whose global batch is the trial's batch_size.",
    )
    early_stopping: Literal["Off", "Auto"] = Field(
        "Off",
        description="Off (default) or Auto: stop a trial worse than the median of earlier trials at the same "
        "epoch.",
    )
    hyperband: HyperbandSpec = Field(default_factory=HyperbandSpec, description="Hyperband settings.")
    completion: CompletionSpec = Field(default_factory=CompletionSpec, description="Early completion.")
    random_seed: int | None = Field(0, description="Seed of the sampler; None: not reproducible.")
    storage: str | None = Field(
        None,
        description="Study storage: default the journal file DIR/study.journal; or a journal file path, or "
        "an RDB URL like postgresql://user@host:5432/db to share the study with `vizsla tune worker` on "
        "other machines.",
    )
    study_name: str | None = Field(None, description="Optuna study name; default: the job name.")
    max_retries: int = Field(1, ge=0, description="Reruns of a trial whose process died.")
    heartbeat_interval_s: float = Field(
        10.0, gt=0, description="Seconds between a running trial's heartbeats."
    )
    stale_after_s: float = Field(60.0, gt=0, description="A trial without a heartbeat this long is dead.")
    warm_start: WarmStartSpec | None = Field(None, description="Seed this job with earlier tuning jobs.")
    ranges: dict[str, ParameterRange] = Field(description="Hyperparameter name -> range (at least one).")
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="The fixed part of every trial: a training job spec (data, model, train) without output.",
    )
    script: dict[str, Any] | None = Field(
        None,
        description="Instead of training: the user's own training script as a script job spec without output "
        "(entry_point, channels, static hyperparameters, metric_definitions); ranges name its arguments.",
    )

    @model_validator(mode="after")
    def _check(self) -> TuneSpec:
        if not self.ranges:
            raise ValueError("ranges: give at least one hyperparameter range")
        if len(self.ranges) > MAX_RANGES:
            raise ValueError(f"ranges: at most {MAX_RANGES} hyperparameters can be tuned at once")
        if "output" in self.training:
            raise ValueError(
                "training.output: each trial writes into DIR/trials/; set the tuning job's output"
            )
        if self.script is not None:
            _check_script(self)
            if self.trial_nproc > 1:
                raise ValueError(
                    "trial_nproc: a script trial runs the script itself; to run it under torchrun give "
                    "the script section a distribution ({nproc_per_node: N} or SageMaker's "
                    "{torch_distributed: {enabled: true}})"
                )
        if self.strategy == "Hyperband" and self.early_stopping != "Off":
            raise ValueError(
                "early_stopping must be Off with strategy Hyperband (Hyperband stops trials itself)"
            )
        if self.stale_after_s <= self.heartbeat_interval_s:
            raise ValueError("stale_after_s must be longer than heartbeat_interval_s")
        if self.strategy == "Grid":
            for name, rng in self.ranges.items():
                if not isinstance(rng, CategoricalRange):
                    raise ValueError(
                        f"ranges.{name}: Grid search takes Categorical ranges only (as in SageMaker)"
                    )
            combinations = math.prod(len(rng.values) for rng in self.ranges.values())  # type: ignore[union-attr]
            if self.max_jobs is not None and self.max_jobs != combinations:
                raise ValueError(
                    f"max_jobs: Grid runs every one of the {combinations} combinations; leave max_jobs out"
                )
            self.__dict__["max_jobs"] = combinations  # direct: assignment would re-run this validator
        elif self.max_jobs is None:
            self.__dict__["max_jobs"] = 10
        return self

    @property
    def is_script(self) -> bool:
        """Trials run the user's own script (script mode) rather than Vizsla's trainer."""
        return self.script is not None

    @property
    def job_settings(self) -> dict[str, Any]:
        """The static job mapping of every trial: the script section in script mode, else training."""
        return self.script if self.script is not None else self.training


def _check_script(spec: TuneSpec) -> None:
    """A script section: alone (not with training), no output, and the objective one of its metrics."""
    assert spec.script is not None
    if spec.training:
        raise ValueError(
            "give either training (Vizsla's trainer) or script (your own script), not both: "
            f"training has {', '.join(sorted(spec.training))}"
        )
    if "output" in spec.script:
        raise ValueError("script.output: each trial writes into DIR/trials/; set the tuning job's output")
    names = []
    for item in spec.script.get("metric_definitions") or []:
        if isinstance(item, dict):
            names.append(item.get("name", item.get("Name")))
    if spec.strategy == "Hyperband" and spec.hyperband.max_resource is None:
        from vizsla.tuning.study import script_epochs

        if script_epochs(spec) is None:
            raise ValueError(
                "Hyperband needs the script's epochs: set hyperband.max_resource, or a static "
                "hyperparameter epochs (or num_epochs, n_epochs, n-epochs, numepochs), as SageMaker does"
            )
    if spec.objective.metric not in names:
        known = ", ".join(repr(n) for n in names) or "none"
        raise ValueError(
            f"objective metric {spec.objective.metric!r} is not one of the script's metric definitions "
            f'({known}); add --metric-definition "{spec.objective.metric}=REGEX" or name one of them'
        )


# --- reading the three file shapes -------------------------------------------------------------------------

_SM_KINDS = {
    "ContinuousParameterRanges": "Continuous",
    "IntegerParameterRanges": "Integer",
    "CategoricalParameterRanges": "Categorical",
}
_RANGE_KEYS = {
    "type": "type",
    "min": "min",
    "minvalue": "min",
    "min_value": "min",
    "max": "max",
    "maxvalue": "max",
    "max_value": "max",
    "scaling": "scaling",
    "scalingtype": "scaling",
    "scaling_type": "scaling",
    "values": "values",
}
_CANONICAL = {
    v.lower(): v
    for v in ("Continuous", "Integer", "Categorical", "Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
}


def load_tune_spec(path: str | Path) -> dict[str, Any]:
    """Read a space / tuning YAML (or JSON, which YAML reads too) into a mapping."""
    return read_yaml(path)


def _scalar(value: Any) -> Any:
    """SageMaker writes every value as a string: '32' -> 32, '1e-3' -> 0.001, 'true' -> True."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        number = float(text)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def _normalise_range(value: Any, *, strings: bool = False) -> Any:
    """Accept SageMaker key names and any case of type/scaling; a bare list is a Categorical range."""
    if isinstance(value, list):
        return {"type": "Categorical", "values": value}
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        canonical = _RANGE_KEYS.get(str(key).lower(), key)
        if canonical in ("type", "scaling") and isinstance(item, str):
            item = _CANONICAL.get(item.lower(), item)
        out[canonical] = item
    if strings:
        for key in ("min", "max"):
            if key in out:
                out[key] = _scalar(out[key])
        if isinstance(out.get("values"), list):
            out["values"] = [_scalar(v) for v in out["values"]]
    return out


def _infer_type(value: Any) -> Any:
    """A range without a type (SageMaker SDK style): values -> Categorical, int bounds -> Integer."""
    if not isinstance(value, dict) or "type" in value:
        return value
    if "values" in value:
        return {"type": "Categorical", **value}
    if isinstance(value.get("min"), int) and isinstance(value.get("max"), int):
        return {"type": "Integer", **value}
    return {"type": "Continuous", **value}


def _sagemaker_ranges(block: dict[str, Any]) -> dict[str, Any]:
    """ParameterRanges (API lists of {Name, ...}) or the SDK's {name: {min_value, ...}} -> our ranges."""
    if any(kind in block for kind in _SM_KINDS):
        ranges: dict[str, Any] = {}
        for kind, type_ in _SM_KINDS.items():
            for item in block.get(kind) or []:
                fields = {k: v for k, v in item.items() if k != "Name"}
                ranges[str(item.get("Name"))] = _normalise_range({"type": type_, **fields}, strings=True)
        return ranges
    return {name: _normalise_range(value, strings=True) for name, value in block.items()}


def _is_sagemaker(config: dict[str, Any]) -> bool:
    keys = set(config)
    return bool(
        keys
        & {
            "ParameterRanges",
            "HyperparameterRanges",
            "hyperparameter_ranges",
            "HyperParameterTuningJobConfig",
        }
        or keys & set(_SM_KINDS)
    )


def _from_sagemaker(config: dict[str, Any]) -> dict[str, Any]:
    """SageMaker's CreateHyperParameterTuningJob / SDK JSON -> our mapping (unused keys are logged)."""
    job = config.get("HyperParameterTuningJobConfig") or {}
    block = (
        config.get("ParameterRanges")
        or job.get("ParameterRanges")
        or config.get("HyperparameterRanges")
        or config.get("hyperparameter_ranges")
        or {k: v for k, v in config.items() if k in _SM_KINDS}
    )
    out: dict[str, Any] = {k: v for k, v in config.items() if k in TuneSpec.model_fields}
    out["ranges"] = {**_sagemaker_ranges(block), **(out.get("ranges") or {})}
    definition = config.get("TrainingJobDefinition") or {}
    static = config.get("StaticHyperParameters") or definition.get("StaticHyperParameters") or {}
    static = {k: _scalar(v) for k, v in static.items() if not k.startswith(("sagemaker_", "_"))}
    if static:  # placed once the job kind is known (build_tune_spec): script arguments or trainer fields
        out[_STATIC] = static
    if "HyperParameterTuningJobName" in config:
        out.setdefault("name", config["HyperParameterTuningJobName"])
    objective = job.get("HyperParameterTuningJobObjective")
    if objective:
        out.setdefault("objective", {"metric": objective.get("MetricName"), "type": objective.get("Type")})
    limits = job.get("ResourceLimits") or {}
    for key, field in (("MaxNumberOfTrainingJobs", "max_jobs"), ("MaxParallelTrainingJobs", "max_parallel")):
        if key in limits:
            out.setdefault(field, limits[key])
    if "MaxRuntimeInSeconds" in limits:
        out.setdefault("completion", {})["max_runtime_s"] = limits["MaxRuntimeInSeconds"]
    for key, field in (("Strategy", "strategy"), ("RandomSeed", "random_seed")):
        if key in job:
            out.setdefault(field, job[key])
    if "TrainingJobEarlyStoppingType" in job:
        out.setdefault("early_stopping", str(job["TrainingJobEarlyStoppingType"]).capitalize())
    ignored = sorted(
        set(config)
        - set(out)
        - {
            "ParameterRanges",
            "HyperparameterRanges",
            "hyperparameter_ranges",
            "StaticHyperParameters",
            "TrainingJobDefinition",
            "HyperParameterTuningJobConfig",
            "HyperParameterTuningJobName",
            *_SM_KINDS,
        }
    )
    if ignored:
        log.warning("ignoring SageMaker settings with no local meaning: %s", ", ".join(ignored))
    return out


_STATIC = "_static_hyperparameters"


def _place_static(merged: dict[str, Any]) -> dict[str, Any]:
    """SageMaker's StaticHyperParameters: a script's own arguments verbatim, or trainer fields by alias."""
    static = merged.pop(_STATIC, None)
    if not static:
        return merged
    if isinstance(merged.get("script"), dict):
        script = dict(merged["script"])
        script["hyperparameters"] = {**static, **(script.get("hyperparameters") or {})}
        return {**merged, "script": script}
    from vizsla.tuning.space import static_training

    return {**merged, "training": deep_merge(static_training(static), merged.get("training") or {})}


def _is_bare_ranges(config: dict[str, Any]) -> bool:
    return bool(config) and all(
        isinstance(v, dict) and any(str(k).lower() == "type" for k in v) and k not in TuneSpec.model_fields
        for k, v in config.items()
    )


def normalise(config: dict[str, Any]) -> dict[str, Any]:
    """Any accepted file shape -> our own mapping (ranges normalised)."""
    if _is_sagemaker(config):
        config = _from_sagemaker(config)
    elif _is_bare_ranges(config):
        config = {"ranges": config}
    else:
        config = dict(config)
    if isinstance(config.get("ranges"), dict):
        config["ranges"] = {name: _normalise_range(value) for name, value in config["ranges"].items()}
    return config


def build_tune_spec(
    config: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None, source: str = "options"
) -> TuneSpec:
    """Build a TuneSpec from a space/tuning file mapping and CLI overrides (overrides win), or a SpecError."""
    from vizsla.tuning.space import check_space

    merged = deep_merge(normalise(config or {}), normalise(overrides or {}) if overrides else {})
    merged = _place_static(merged)
    if isinstance(merged.get("ranges"), dict):
        merged["ranges"] = {name: _infer_type(value) for name, value in merged["ranges"].items()}
    spec = TuneSpec.build(merged, source=source)
    if spec.is_script:
        from vizsla.tuning.space import check_script_space

        check_script_space(spec, source)
    else:
        check_space(spec.ranges, spec.training, source)
    return spec
