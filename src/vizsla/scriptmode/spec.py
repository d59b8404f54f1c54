"""ScriptJobSpec: a user's own SageMaker training script run as a Vizsla job (the estimator's arguments).

The fields mirror what `sagemaker.pytorch.PyTorch(...).fit({...})` takes: entry point, source dir,
hyperparameters, channels, metric definitions, environment; AWS-only arguments are kept in `sagemaker`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from vizsla.base_spec import BaseJobSpec, BaseSpec
from vizsla.errors import SpecError
from vizsla.jobdir import JobDir
from vizsla.profiler.spec import ProfileSpec
from vizsla.spec import DebugSpec, TrackingSpec

# SageMaker's API limits (botocore model: MetricDefinition Name <= 255, Regex <= 500, list <= 40).
MAX_METRIC_NAME = 255
MAX_METRIC_REGEX = 500
MAX_METRIC_DEFINITIONS = 40
# Channel names as CreateTrainingJob accepts them (ChannelName pattern, <= 64 chars).
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")


class MetricDefinition(BaseSpec):
    """A named regex over the script's output lines; the first capture group is the value."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(min_length=1, max_length=MAX_METRIC_NAME, description="Metric name.")
    regex: str = Field(min_length=1, max_length=MAX_METRIC_REGEX, description="Python regex (re.search).")

    @model_validator(mode="before")
    @classmethod
    def _sagemaker_spelling(cls, value: Any) -> Any:
        """Accept the SDK's {"Name": ..., "Regex": ...} as well."""
        if isinstance(value, dict) and ("Name" in value or "Regex" in value):
            renamed = {k: v for k, v in value.items() if k not in ("Name", "Regex")}
            renamed["name"] = value.get("Name", value.get("name"))
            renamed["regex"] = value.get("Regex", value.get("regex"))
            return renamed
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value


class ScriptDistribution(BaseSpec):
    """The script under torchrun, as SageMaker's `distribution={"torch_distributed": {"enabled": True}}`.

    torchrun starts nproc_per_node copies of the script on this machine (nnodes machines with a c10d
    rendezvous) and sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, ... for the script's own
    init_process_group. The SDK's spelling is accepted; SageMaker's other launchers (SMDDP, MPI) are not.
    """

    nproc_per_node: int = Field(
        ge=1,
        description="Processes on this machine (one per GPU on CUDA), started by torchrun; Vizsla's trainer "
        "keeps batch_size (--batch-size) the global batch, split between all processes.",
    )
    nnodes: int = Field(1, ge=1, description="Machines in the job (run the same command on each).")
    node_rank: int | None = Field(None, ge=0, description="This machine's index, 0 for the first one.")
    rdzv_endpoint: str | None = Field(
        None, description="HOST:PORT of the c10d rendezvous on the first machine (needed with nnodes > 1)."
    )
    max_restarts: int = Field(
        0,
        ge=0,
        description="Restart the processes up to K times after one dies; the job continues from its last "
        "checkpoint.",
    )

    @model_validator(mode="before")
    @classmethod
    def _sagemaker_spelling(cls, value: Any) -> Any:
        if not isinstance(value, dict) or "nproc_per_node" in value:
            return value
        torch_distributed = value.get("torch_distributed")
        if isinstance(torch_distributed, dict) and torch_distributed.get("enabled"):
            others = sorted(set(value) - {"torch_distributed"})
            if others:
                raise ValueError(f"distribution: only torch_distributed is run here, not also {others}")
            from vizsla.scriptmode.environment import count_gpus

            return {"nproc_per_node": max(1, count_gpus())}  # the toolkit: one process per GPU, else 1
        raise ValueError(
            f"distribution {value!r}: only {{'torch_distributed': {{'enabled': True}}}} (torchrun) is "
            "supported on this machine; SageMaker's data-parallel library (pytorchddp, smdistributed) and "
            "MPI need SageMaker's containers"
        )

    @model_validator(mode="after")
    def _check(self) -> ScriptDistribution:
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(f"distribution: nnodes {self.nnodes} needs rdzv_endpoint HOST:PORT")
        return self


class ScriptJobSpec(BaseJobSpec):
    """A script-mode training job: the script, its inputs and what Vizsla does around it."""

    noun: ClassVar[str] = "script job spec"

    kind: Literal["script"] = "script"
    name: str | None = Field(None, description="Job name; default: the output folder's name.")
    output: str = Field(description="Job directory (SageMaker's /opt/ml, mirrored).")
    entry_point: str = Field(
        description="Your own SageMaker training script (e.g. train_model.py: a .py file run with python, or "
        "an executable), run under the training toolkit's contract (SM_* variables, --key value "
        "hyperparameters) instead of Vizsla's trainer.",
    )
    source_dir: str | None = Field(
        None, description="Folder of the script and its modules (its cwd); default: the entry point's folder."
    )
    inference_entry_point: str | None = Field(
        None,
        description="Your inference script (model_fn, input_fn, predict_fn, output_fn), relative to the "
        "source dir, logged with the model as the job's MLflow model; default: inference.py of the source "
        "dir, else code/inference.py in the saved model, else a TorchScript model.pt.",
    )
    channels: dict[str, str] = Field(
        default_factory=dict,
        description="Input channels NAME=PATH_OR_URI (a local folder or fsspec URI), each given to the "
        "script as SM_CHANNEL_NAME; repeatable.",
    )
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description="KEY=VALUE arguments passed to the script as --KEY VALUE and SM_HP_* variables, e.g. "
        "epochs=5 batch-size=64; repeatable.",
    )
    metric_definitions: list[MetricDefinition] = Field(
        default_factory=list,
        description="NAME=REGEX read from the script's output (the first capture group; a tuning objective "
        'takes the last value matched), e.g. "test_loss=Test set: Average loss: ([0-9\\.]+)"; repeatable.',
    )
    environment: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    install_requirements: bool = Field(
        False, description="pip install the source dir's requirements.txt before running (else only check)."
    )
    debug: DebugSpec = Field(default_factory=DebugSpec)
    profile: ProfileSpec = Field(default_factory=ProfileSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    sagemaker: dict[str, Any] = Field(
        default_factory=dict,
        description="AWS-only estimator arguments (role, instance_type, framework_version...): recorded.",
    )
    max_run_s: float | None = Field(
        None, gt=0, description="Like MaxRuntimeInSeconds: stop the script after this many seconds."
    )
    distribution: ScriptDistribution | None = Field(
        None, description="Run the script under torchrun (N processes, M machines); None: one process."
    )
    debug_hook: bool | None = Field(
        None,
        description="Write a default smdebug hook config (debughookconfig.json) when `debug` asks for none, "
        "as the SDK's estimator adds DebuggerHookConfig(s3_output_path=output_path); None: SageMaker's "
        "default (on for a training job, off for a tuning job's trials); False: off (--no-debug-hook).",
    )
    python: str | None = Field(
        None,
        description="Run the script with this interpreter (your own venv's bin/python, e.g. one with NumPy 1 "
        "for scripts written for the 1.x containers, as framework_version/py_version pick a container); the "
        "SageMaker contract and shims stay in place. Default: the interpreter running Vizsla.",
    )

    @field_validator("inference_entry_point")
    @classmethod
    def _relative_inference_entry_point(cls, value: str | None) -> str | None:
        if value is not None and (Path(value).is_absolute() or ".." in Path(value).parts):
            raise ValueError(f"{value!r} must be a path inside the source dir, e.g. inference.py")
        return value

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not CHANNEL_NAME.match(name):
                raise ValueError(f"channel name {name!r}: use letters, digits, '.', '-', '_' (at most 64)")
        return value

    @field_validator("hyperparameters")
    @classmethod
    def _hyperparameter_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not key or any(c.isspace() or c == "=" for c in key):
                raise ValueError(f"hyperparameter name {key!r} must be non-empty, without spaces or '='")
        return value

    @field_validator("metric_definitions")
    @classmethod
    def _metric_list(cls, value: list[MetricDefinition]) -> list[MetricDefinition]:
        if len(value) > MAX_METRIC_DEFINITIONS:
            raise ValueError(f"{len(value)} metric definitions; SageMaker allows {MAX_METRIC_DEFINITIONS}")
        names = [d.name for d in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique: {', '.join(duplicates)}")
        return value


def parse_metric_definition(text: str) -> MetricDefinition:
    """'NAME=REGEX' (split at the first '='; the regex may hold '=') -> MetricDefinition."""
    name, sep, regex = text.partition("=")
    if not sep or not name.strip() or not regex:
        raise SpecError(
            f"metric definition {text!r} is not NAME=REGEX",
            hint='e.g. --metric-definition "test_loss=Test set: Average loss: ([0-9\\.]+)"',
        )
    try:
        return MetricDefinition(name=name.strip(), regex=regex)
    except ValidationError as exc:
        raise SpecError(f"metric definition {name.strip()!r}: {exc.errors()[0]['msg']}") from None


def parse_hyperparameter_value(text: str) -> Any:
    """Type a command-line value: 5 -> int, 1e-3 -> float, True/false -> bool, anything else -> str.

    Not yaml.safe_load: YAML 1.1 reads 1e-3 as text, 010 as octal 8 and yes/off as booleans, which
    surprises users typing hyperparameters; this keeps the cases SageMaker notebooks use.
    """
    stripped = text.strip()
    if stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    try:
        return int(stripped)
    except ValueError:
        pass
    if _looks_like_float(stripped):
        return float(stripped)
    return text


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.lower().lstrip("+-") not in ("nan", "inf", "infinity")


def parse_hyperparameters(items: list[str]) -> dict[str, Any]:
    """['key=value', ...] -> {key: typed value}; a later key wins."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(
                f"hyperparameter {item!r} is not KEY=VALUE", hint="e.g. --hyperparameters epochs=5"
            )
        parsed[key.strip()] = parse_hyperparameter_value(value)
    return parsed


def build_script_spec(
    config: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None, source: str = "options"
) -> ScriptJobSpec:
    """A ScriptJobSpec from a YAML mapping and CLI overrides (overrides win), as a user error on failure."""
    return ScriptJobSpec.build(config, overrides, source)


def is_script_spec(mapping: dict[str, Any]) -> bool:
    """A YAML mapping that describes a script job (kind: script, or an entry_point)."""
    return mapping.get("kind") == "script" or "entry_point" in mapping


def load_script_spec(path: str | Path) -> ScriptJobSpec:
    """A ScriptJobSpec from a YAML file (e.g. a script job directory's spec.yaml)."""
    from vizsla.spec import read_yaml

    return build_script_spec(read_yaml(path), source=str(path))


def load_script_job_spec(job_dir: str | Path) -> ScriptJobSpec:
    """The spec of the script job in the folder JOB_DIR, placed where the folder is now (output JOB_DIR)."""
    from vizsla.relocation import placed_spec_mapping
    from vizsla.spec import read_yaml

    path = JobDir(job_dir).spec
    return build_script_spec(placed_spec_mapping(read_yaml(path), job_dir), source=str(path))
