"""EndpointConfig: what one managed endpoint serves (its production variants, workers, runtime, capture).

It is written into the endpoint's endpoint.json by `vizsla endpoints create` and `update`, and read by the
endpoint's supervisor, which starts one `vizsla serve` backend per variant.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from vizsla.base_spec import BaseSpec
from vizsla.errors import UserError

NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$"  # SageMaker's EndpointName / VariantName pattern
RUNTIMES = ("onnx", "torch", "onnx-int8", "auto")


class VariantSpec(BaseSpec):
    """One production variant: a model and its share of the traffic."""

    name: str = Field(
        pattern=NAME_PATTERN, max_length=63, description="Variant name (SageMaker VariantName)."
    )
    model: str = Field(description="Absolute path of the job or model folder the variant serves.")
    weight: float = Field(1.0, gt=0, description="Relative traffic weight (SageMaker InitialVariantWeight).")


class CaptureSpec(BaseSpec):
    """SageMaker's DataCaptureConfig: which share of requests is recorded and how big a file grows."""

    percent: float = Field(0.0, ge=0, le=100, description="Share of requests captured, in percent.")
    max_mb: float = Field(16.0, gt=0, description="A capture file is rotated once it reaches this size (MB).")

    @property
    def enabled(self) -> bool:
        return self.percent > 0


class EndpointConfig(BaseSpec):
    """The served models and how they are served (SageMaker's EndpointConfig)."""

    noun = "endpoint config"

    variants: list[VariantSpec] = Field(min_length=1, description="Production variants, one backend each.")
    workers: int = Field(1, ge=1, description="`vizsla serve` worker processes per variant.")
    runtime: str = Field("onnx", description="Serving runtime: onnx, torch or onnx-int8.")
    handler: str | None = Field(None, description="Inference script (model_fn/input_fn/...), absolute path.")
    source_dir: str | None = Field(None, description="Folder of the inference script's modules.")
    capture: CaptureSpec = Field(default_factory=CaptureSpec, description="Data capture settings.")
    seed: int = Field(0, description="Seed of the variant picker and the capture sampler.")

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        if value not in RUNTIMES:
            raise ValueError(f"unknown runtime {value!r}; choose one of {', '.join(RUNTIMES)}")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> EndpointConfig:
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {', '.join(names)}")
        return self

    def weights(self) -> dict[str, float]:
        """Each variant's share of the traffic, summing to 1."""
        total = sum(variant.weight for variant in self.variants)
        return {variant.name: variant.weight / total for variant in self.variants}


def parse_variant(text: str) -> tuple[str, str, float]:
    """`NAME=MODEL:WEIGHT` (or `NAME=MODEL`, weight 1) -> (name, model, weight); UserError when malformed."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise UserError(f"--variant wants NAME=MODEL:WEIGHT (e.g. a=runs/job-1:0.9), got {text!r}")
    model, colon, weight_text = rest.rpartition(":")
    if not colon:
        return name, rest, 1.0
    try:
        weight = float(weight_text)
    except ValueError:
        return name, rest, 1.0  # a path holding a colon, no weight
    if weight <= 0:
        raise UserError(f"--variant {text!r}: the weight must be above 0, got {weight_text}")
    return name, model, weight
