"""TransformSpec: what one batch transform reads, runs and writes; the CLI's flags are its fields."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from vizsla.base_spec import BaseSpec

JSON_TYPE = "application/json"


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 0 <= K < N; ValueError with the rule otherwise."""
    index, sep, count = str(text).partition("/")
    try:
        k, n = int(index), int(count)
    except ValueError:
        raise ValueError(f"shard must be K/N (e.g. 0/4), got {text!r}") from None
    if not sep or n < 1 or not 0 <= k < n:
        raise ValueError(f"shard K/N needs 0 <= K < N (K counts from 0: 0/4 .. 3/4), got {text!r}")
    return k, n


class TransformSpec(BaseSpec):
    """A batch transform: MODEL over every file of DATA, predictions into OUTPUT."""

    noun: ClassVar[str] = "transform spec"

    model: str = Field(
        description="Training job folder, model folder, tuning job folder with --best, or a registered "
        "model: models:/NAME@ALIAS or models:/NAME/VERSION."
    )
    best: bool = Field(False, description="MODEL is a tuning job: use its best trial's model.")
    tracking_uri: str | None = Field(
        None,
        description="The MLflow store a models:/ MODEL is registered in; default $MLFLOW_TRACKING_URI, else "
        "./runs/mlflow.db.",
    )
    data: str = Field(
        description="Images to classify: a folder (recursive), an fsspec URI (s3://bucket/prefix), a "
        'SageMaker ManifestFile (JSON: [{"prefix": ...}, "rel/path", ...]) or a CSV of paths.'
    )
    output: str = Field(
        description="Folder for one <input name>.out per input (the endpoint's answer), the predictions "
        "file, summary.json and rejected.csv."
    )
    data_type: Literal["auto", "S3Prefix", "ManifestFile", "csv"] = Field(
        "auto",
        description="How to read DATA: auto (a .csv file is a list of paths, any other file a manifest, "
        "a folder or prefix is listed), S3Prefix, ManifestFile or csv.",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options for a remote DATA (JSON), e.g. "
        '{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}.',
    )
    runtime: Literal["auto", "onnx", "onnx-int8", "torch"] = Field(
        "auto",
        description="auto: a head-only job's model on the int8 backbone its feature extraction ran (the "
        "model whose features trained the head and gave the job's metrics; about twice fp32's speed on a "
        "CPU), any other model on onnx. onnx (ONNX Runtime fp32, checked against torch), onnx-int8 (that "
        "int8 backbone, else the model `vizsla export --quantize int8` wrote) or torch, as `vizsla serve "
        "--runtime`.",
    )
    format: Literal["jsonl", "csv"] = Field(
        "jsonl", description="The one predictions file: predictions.jsonl or predictions.csv."
    )
    top_k: int = Field(5, ge=1, description="Classes (with scores) per image in the predictions.")
    all_scores: bool = Field(False, description="Also write every class's score (in label order).")
    shard: str | None = Field(
        None,
        description="K/N: transform only shard K (from 0) of N, a deterministic split by file name, so N "
        "workers can share the input (and OUTPUT).",
    )
    batch_size: int = Field(0, ge=0, description="Images per forward pass (0: sized to the cores).")
    decode_workers: int = Field(0, ge=0, description="Decoding threads (0: one per core).")
    engine: Literal["local", "ray"] = Field(
        "local", description="local (this process) or ray (Ray Data; pip install 'vizsla[ray]')."
    )
    entry_point: str | None = Field(
        None,
        description="inference.py with model_fn/input_fn/predict_fn/output_fn: every file goes through "
        "it, one record at a time (default for a script job: its training entry point).",
    )
    source_dir: str | None = Field(
        None, description="Folder holding the entry point and the modules it imports."
    )
    content_type: str | None = Field(
        None, description="Content type handed to input_fn (default: sniffed per file, e.g. image/jpeg)."
    )
    accept: str = Field(JSON_TYPE, description="Accept handed to output_fn: the .out files' type.")
    name: str = Field("model", description="Model name written in each answer, as `vizsla serve --name`.")
    max_pixels: int = Field(40_000_000, ge=1, description="Larger images are rejected (bombs).")

    @field_validator("shard")
    @classmethod
    def _valid_shard(cls, value: str | None) -> str | None:
        if value is None:
            return None
        k, n = parse_shard(value)
        return f"{k}/{n}"

    @property
    def shard_pair(self) -> tuple[int, int]:
        """(K, N); (0, 1) without --shard."""
        return parse_shard(self.shard) if self.shard else (0, 1)
