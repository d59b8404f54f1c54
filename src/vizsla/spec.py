"""Pydantic job specs: the one description of a job, filled from YAML and CLI flags, saved resolved.

Every field has a default a user can rely on; `JobSpec.resolved()` fills the values that depend on the
machine or the data (device, precision, split names) so the saved `spec.yaml` reproduces the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from vizsla.base_spec import BaseJobSpec, BaseSpec, read_yaml
from vizsla.base_spec import deep_merge as deep_merge  # re-exported: the one merge of YAML and overrides
from vizsla.jobdir import JobDir
from vizsla.profiler.spec import ProfileSpec


class DataSpec(BaseSpec):
    """Where the images are and how to split and load them."""

    root: str = Field(
        description="Image folder: ROOT/{train,valid,test}/<class>/*.jpg, or ROOT/<class>/*.jpg to split for "
        "you; a local path or fsspec URI (s3://, gs://, ...)."
    )
    train_split: str | None = Field(None, description="Train split folder name; auto: train/training.")
    valid_split: str | None = Field(None, description="Validation split folder; auto: valid/val/validation.")
    test_split: str | None = Field(None, description="Test split folder; auto: test/testing.")
    split_fractions: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="train/valid/test fractions when ROOT is a single class folder."
    )
    split_seed: int = Field(0, description="Seed of the stratified split of a single folder.")
    num_workers: int | None = Field(
        None, ge=0, description="Data loader worker processes; default: sized to the cores."
    )
    max_image_pixels: int = Field(
        89_478_485, gt=0, description="Decompression-bomb guard: larger images are rejected as bad files."
    )
    augment: bool = Field(True, description="Random resized crop + horizontal flip on the train split.")
    hflip: bool = Field(True, description="Use horizontal flips when augmenting (turn off for digits/text).")
    auto_augment: str | None = Field(
        None,
        description="timm auto-augment policy for training on images, e.g. rand-m9-mstd0.5-inc1 "
        "(RandAugment), trivialaugment, augmix-m5-w4-d2, original (AutoAugment); off by default.",
    )
    random_erasing: float = Field(
        0.0, ge=0, le=1, description="Probability of timm's random erasing of a train image (0: off)."
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec storage options for remote roots (e.g. endpoint_url)."
    )

    @field_validator("split_fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f < 0 for f in value) or abs(sum(value) - 1.0) > 1e-6 or value[0] <= 0:
            raise ValueError("split_fractions must be >= 0, sum to 1 and give train a share")
        return value

    @field_validator("auto_augment")
    @classmethod
    def _known_policy(cls, value: str | None) -> str | None:
        """A policy timm (or torchvision, for trivialaugment) builds; none/off turn it off."""
        from vizsla.data.augment import check_policy

        return check_policy(value)


class ModelSpec(BaseSpec):
    """Backbone, pretrained weights and head."""

    name: str = Field(
        "efficientnet_lite0",
        description="timm model name, e.g. resnet34, efficientnet_lite0 (default). `vizsla models list` "
        "shows them.",
    )
    weights: str = Field(
        "auto",
        description="Pretrained weights: auto (installed package, else hub), hub, package, none, or a path "
        "to a .pth/.safetensors file.",
    )
    head: list[int] = Field(
        default_factory=list,
        description="Hidden sizes of the MLP head, e.g. 256,128 (ResNet + 3 fully connected layers); [] or "
        "'linear' for one layer.",
    )
    head_dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout before each head layer (0-1).")
    head_activation: Literal["relu", "gelu", "silu", "tanh"] = Field(
        "relu", description="Head activation: relu, gelu, silu or tanh."
    )
    image_size: int | None = Field(None, gt=0, description="Input size in pixels; default: the model's own.")


class TrainSpec(BaseSpec):
    """Optimisation settings of the training loop."""

    epochs: int = Field(5, ge=1, description="Number of epochs.")
    batch_size: int = Field(
        32, ge=1, description="Images per optimizer step: the global batch, shared by all processes of a job."
    )
    lr: float = Field(1e-3, gt=0, description="Peak learning rate of the head.")
    backbone_lr_scale: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Backbone LR = lr x this (its top layer's, with layer_decay), for full fine-tuning and "
        "for the fine-tuning stage of staged, whose trained head moves at that LR too; auto: 0.1 for full, "
        "0.3 for staged.",
    )
    weight_decay: float = Field(1e-4, ge=0, description="Decoupled weight decay (AdamW) or L2 (SGD).")
    optimizer: str = Field(
        "adamw", description="Any optimizer of timm's create_optimizer_v2: adamw, sgd, lamb, lion, adan, ..."
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    schedule: Literal["cosine", "onecycle", "constant", "step", "multistep", "poly", "tanh"] = Field(
        "cosine",
        description="LR schedule, stepped every optimizer step: cosine, constant, step, multistep, poly or "
        "tanh (timm's create_scheduler_v2), or onecycle.",
    )
    warmup_epochs: float | None = Field(
        None, ge=0, description="Linear warmup length in epochs; auto: 1 for staged, none for head and "
        "full."
    )
    label_smoothing: float = Field(
        0.1, ge=0, lt=1, description="Label smoothing of the cross-entropy (0.1: timm's default)."
    )
    grad_clip_norm: float | None = Field(None, gt=0, description="Clip the gradient L2 norm to this value.")
    finetune: Literal["head", "full", "staged"] = Field(
        "head",
        description="head: train the head on a frozen backbone; full: train everything; staged: the head "
        "alone first (on cached features), then everything from it, keeping the better of the two.",
    )
    staged_head_epochs: int = Field(
        10, ge=1, description="Epochs of the head stage of a staged job (on cached features: seconds)."
    )
    finetune_image_size: int | None = Field(
        None,
        gt=0,
        description="Crop size of the train images while fine-tuning (full, staged); evaluation and the "
        "exported model keep the model's size. E.g. 160 for 224-px models on a CPU: ~2x cheaper epochs.",
    )
    layer_decay: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Layer-wise LR decay (timm): each backbone layer's LR is this x the next one's; "
        "auto: 0.8 for staged, none (one backbone LR) for full.",
    )
    freeze_below_lr_scale: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Backbone layers whose layer-decayed LR scale is below this stay frozen (timm's "
        "layer_decay_no_opt_scale): the backward pass stops above them. auto: see the recipe.",
    )
    bn_policy: Literal["auto", "train", "frozen"] = Field(
        "auto",
        description="BatchNorm of a trained backbone: train updates its statistics, frozen keeps the "
        "pretrained ones; auto: frozen for staged, train for full.",
    )
    mixup: float = Field(0.0, ge=0, description="Mixup alpha (timm Mixup; 0: off). Images only.")
    cutmix: float = Field(0.0, ge=0, description="CutMix alpha (timm Mixup; 0: off). Images only.")
    mixup_prob: float = Field(
        1.0, ge=0, le=1, description="Probability of mixing a batch when mixup or cutmix is on."
    )
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Keep an exponential moving average of the weights (timm ModelEmaV3) with this "
        "decay, e.g. 0.999; evaluated and saved instead of the raw weights.",
    )
    accumulate_steps: int = Field(
        1, ge=1, description="Gradient accumulation: optimizer step every N batches (effective batch x N)."
    )
    keep_best_checkpoints: int = Field(
        0, ge=0, description="Also keep the weights of the K best epochs in checkpoints/best-*.pt (0: none)."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many epochs without improvement of the valid metric."
    )
    early_stopping_metric: str = Field("valid_accuracy", description="Metric watched by early stopping.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto, fp32, bf16 or fp16 (CUDA); auto: bf16 autocast on CPUs with bf16 support, fp16 "
        "AMP on CUDA, else fp32.",
    )
    channels_last: bool | None = Field(None, description="Memory format; auto: on where it helps.")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    seed: int = Field(0, description="Seed of model init, data order and augmentation.")
    deterministic: bool = Field(True, description="Ask the backend for deterministic algorithms.")
    log_every_n_steps: int = Field(10, ge=1, description="Write a train step record every N steps.")
    feature_cache: Literal["auto", "off"] = Field(
        "auto",
        description="auto: with a frozen backbone, compute its features once and train the head on them.",
    )
    feature_views: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Augmented views cached per train image when augmenting with a feature cache; auto: "
        "one unaugmented view (augmented views decode at full size, ~25% slower, for at most ~1 point).",
    )
    extract_backend: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="Backend of feature extraction; auto picks the fastest available."
    )
    extract_precision: Literal["auto", "fp32", "int8"] = Field(
        "auto",
        description="Precision of ONNX feature extraction: auto = static int8 calibrated on 32 train "
        "images (2x fp32 on CPU, accuracy kept; falls back to fp32 if its features drift), or fp32.",
    )
    compile: bool = Field(False, description="torch.compile the model for full fine-tuning.")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        """A name timm's create_optimizer_v2 knows (timm is imported only for names other than the usual)."""
        name = value.strip().lower()
        if name in ("adamw", "sgd"):
            return name
        from timm.optim import list_optimizers

        known = list_optimizers()
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}" if close else "; e.g. adamw, sgd, lamb, lion, adan"
            raise ValueError(f"{value!r} is not an optimizer of timm's create_optimizer_v2{hint}")
        return name


class DistributedSpec(BaseSpec):
    """How the processes of a distributed job (torchrun) work together; resolved fields are written back."""

    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="Process group backend: auto = nccl on CUDA, gloo on CPU."
    )
    timeout_s: float = Field(
        300.0, gt=0, description="Seconds a collective may wait for a silent rank before the job fails."
    )
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none",
        description="Scale train.lr with the global batch: linear (Goyal et al.) or sqrt of "
        "batch_size / lr_base_batch_size; none keeps train.lr.",
    )
    lr_base_batch_size: int | None = Field(
        None, ge=1, description="The global batch train.lr was chosen for (needed by lr_scaling)."
    )
    world_size: int = Field(1, ge=1, description="Resolved: processes in the job.")
    per_process_batch_size: int | None = Field(None, description="Resolved: batch_size / world_size.")
    effective_lr: float | None = Field(None, description="Resolved: train.lr after lr_scaling.")

    @model_validator(mode="after")
    def _check_scaling(self) -> DistributedSpec:
        if self.lr_scaling != "none" and self.lr_base_batch_size is None:
            raise ValueError(
                f"lr_scaling '{self.lr_scaling}' needs lr_base_batch_size "
                "(the global batch train.lr was set for)"
            )
        return self

    def lr_scale(self, global_batch: int) -> float:
        """Factor applied to train.lr for GLOBAL_BATCH images per step."""
        if self.lr_scaling == "none" or self.lr_base_batch_size is None:
            return 1.0
        ratio = global_batch / self.lr_base_batch_size
        return ratio if self.lr_scaling == "linear" else ratio**0.5


class TrackingSpec(BaseSpec):
    """Where the job records itself in MLflow."""

    enabled: bool = Field(True, description="Record the job as an MLflow run.")
    uri: str | None = Field(
        None, description="MLflow tracking URI; default: a sqlite file next to the job directory."
    )
    experiment: str = Field("vizsla", description="MLflow experiment name.")
    parent_run_id: str | None = Field(
        None, description="MLflow run to nest this job's run under (a tuning job sets it for its trials)."
    )
    log_model: bool = Field(
        True,
        description="Log the job's model as an MLflow model of its run (runs:/<run id>/model: a pyfunc "
        "taking images); a tuning job logs each completed trial's after its study.",
    )
    registered_model_name: str | None = Field(
        None,
        description="Register the job's MLflow model under this name (a new version; a tuning job "
        "registers its best trial's).",
    )
    tensorboard: bool = Field(
        False,
        description="Write the epoch curves (losses, accuracies, lr, images/s) as TensorBoard event files "
        "in DIR/tensorboard (tensorboard --logdir DIR/tensorboard).",
    )

    @model_validator(mode="after")
    def _check_register(self) -> TrackingSpec:
        if self.registered_model_name and not self.log_model:
            raise ValueError("registered_model_name needs log_model: a version is made from the logged model")
        return self


DEBUG_REDUCTIONS = ("mean", "std", "min", "max", "l1", "l2", "zero_fraction", "nan_count", "inf_count")


class CollectionSpec(BaseSpec):
    """Overrides of one debugger collection (a built-in one like `gradients`, or a new one by name)."""

    include_regex: str | None = Field(None, description="Regex over tensor names; default: the built-in one.")
    enabled: bool | None = Field(None, description="Save this collection at all; default: built-in choice.")
    save_interval: int | None = Field(None, ge=1, description="Save every N mode steps (and step 0).")
    save_steps: list[int] | None = Field(None, description="Extra mode steps to save, e.g. [3, 7].")
    mode_save_intervals: dict[Literal["TRAIN", "EVAL", "PREDICT", "GLOBAL"], int] | None = Field(
        None,
        description="Per-mode intervals over save_interval, e.g. {EVAL: 1} (SageMaker's eval.save_interval).",
    )
    reductions: list[str] | None = Field(
        None, description="mean, std, min, max, l1, l2, zero_fraction, nan_count, inf_count, histogram."
    )
    save_raw: bool | None = Field(None, description="Store the full tensors (large) besides reductions.")
    modes: list[Literal["TRAIN", "EVAL", "PREDICT", "GLOBAL"]] | None = Field(
        None, description="Modes in which the collection is saved."
    )

    @field_validator("include_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            import re

            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value

    @field_validator("reductions")
    @classmethod
    def _known_reductions(cls, value: list[str] | None) -> list[str] | None:
        known = (*DEBUG_REDUCTIONS, "histogram")
        unknown = [name for name in value or () if name not in known]
        if unknown:
            raise ValueError(f"unknown reductions {unknown}; choose from {', '.join(known)}")
        return value


class RuleSpec(BaseSpec):
    """One debugger rule: its name (or path/to/file.py:ClassName), parameters and actions."""

    name: str = Field(description="Built-in rule name (e.g. VanishingGradient) or path/to/file.py:Class.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Rule parameters (SageMaker names).")
    actions: list[str] = Field(
        default_factory=lambda: ["log"],
        description="log, stop, command:<shell command>, webhook:<url>.",
    )

    @model_validator(mode="before")
    @classmethod
    def _sagemaker_shape(cls, data: Any) -> Any:
        """Also accept the SageMaker SDK's rule config (RuleConfigurationName, RuleParameters with
        rule_to_invoke) and its snake_case rule names (vanishing_gradient -> VanishingGradient)."""
        if not isinstance(data, dict):
            return data
        import re

        data = dict(data)
        if "RuleConfigurationName" in data:
            data.setdefault("name", data.pop("RuleConfigurationName"))
        if "RuleParameters" in data:
            data.setdefault("parameters", data.pop("RuleParameters"))
        params = dict(data.get("parameters") or {})
        invoked = params.pop("rule_to_invoke", None)
        params.pop("base_trial", None)  # SageMaker's rule container sets it; ours is the job's store
        data["parameters"] = params
        name = invoked or data.get("name")
        if isinstance(name, str) and re.fullmatch(r"[a-z][a-z0-9_]*", name):
            name = "".join(part.capitalize() for part in name.split("_"))
        if name is not None:
            data["name"] = name
        return data

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, value: list[str]) -> list[str]:
        for action in value:
            kind, _, target = action.partition(":")
            needs_target = kind in ("command", "webhook")
            if kind not in ("log", "stop", "command", "webhook") or (needs_target and not target):
                raise ValueError(f"unknown action {action!r}; use log, stop, command:<cmd> or webhook:<url>")
        return value


class DebugSpec(BaseSpec):
    """The training debugger: which tensors to record, and which rules watch them."""

    enabled: bool = Field(
        False,
        description="Record losses, weights, gradients and activations into DIR/debug and run the default "
        "debugger rules during training (`vizsla debug DIR` shows what they found).",
    )
    out_dir: str = Field("debug", description="Tensor store folder, relative to the job directory.")
    save_interval: int = Field(100, ge=1, description="Save weights/gradients/activations every N steps.")
    mode_save_intervals: dict[Literal["TRAIN", "EVAL", "PREDICT", "GLOBAL"], int] | None = Field(
        None, description="Per-mode intervals over save_interval (SageMaker's hook-level eval.save_interval)."
    )
    collections: dict[str, CollectionSpec] = Field(
        default_factory=dict, description="Per-collection overrides (losses, weights, gradients, ...)."
    )
    rules: list[RuleSpec] = Field(default_factory=list, description="Rules to run besides the defaults.")
    default_rules: bool = Field(True, description="Also run the default rule set.")
    tensorboard: bool = Field(False, description="Export the store to TensorBoard files at the end.")


class JobSpec(BaseJobSpec):
    """A whole training job: data, model, training, tracking and where it writes."""

    name: str | None = Field(None, description="Job name; default: the output folder's name.")
    output: str = Field(description="Job directory to write everything into.")
    data: DataSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    debug: DebugSpec = Field(default_factory=DebugSpec)
    profile: ProfileSpec = Field(default_factory=ProfileSpec)
    distributed: DistributedSpec = Field(default_factory=DistributedSpec)
    cache_dir: str | None = Field(
        None,
        description="Cache of datasets, validation and features; default $VIZSLA_CACHE_DIR, ~/.cache/vizsla.",
    )
    outputs: Literal["now", "deferred"] = Field(
        "now",
        description="now: plots and the HTML report at the job's end; deferred: result.json only, plots and "
        "report by `vizsla jobs report` (tuning trials: the tuning job draws its best trial's).",
    )

    noun: ClassVar[str] = "job spec"


def build_spec(
    config: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None, source: str = "options"
) -> JobSpec:
    """Build a JobSpec from a YAML mapping and CLI overrides (overrides win), as a user error on failure."""
    return JobSpec.build(config, overrides, source)


def load_spec(path: str | Path) -> JobSpec:
    """Load a JobSpec from a YAML file (e.g. a job directory's resolved spec.yaml)."""
    return build_spec(read_yaml(path), source=str(path))


def load_job_spec(job_dir: str | Path) -> JobSpec:
    """The spec of the job in the folder JOB_DIR, placed where the folder is now: output is JOB_DIR and a
    store inside the folder resolves against it (also in specs written with absolute paths, before jobs
    were relocatable: paths under their old output move along)."""
    from vizsla.relocation import placed_spec_mapping

    path = JobDir(job_dir).spec
    return build_spec(placed_spec_mapping(read_yaml(path), job_dir), source=str(path))
