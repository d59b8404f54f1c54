"""`Transformer` shaped like the SageMaker SDK's (`sagemaker.transformer.Transformer`), running locally.

`estimator.transformer(instance_count, instance_type, output_path=...)` returns one; `.transform(data,
data_type="S3Prefix"|"ManifestFile", content_type=..., split_type=..., wait=True)` runs `vizsla transform`
over DATA (a folder, an s3:// prefix or a manifest) into OUTPUT_PATH, through the model's inference script
as SageMaker's PyTorch container would. Names and defaults follow aws/sagemaker-python-sdk
`src/sagemaker/transformer.py` (`Transformer.__init__`, `transform`, `wait`) and `estimator.py`
(`Framework.transformer`). Arguments that only mean something in AWS (instance type, KMS keys, tags,
max_concurrent_transforms, max_payload) are kept on the object and ignored.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from vizsla.errors import UserError

DEFAULT_OUTPUT = "runs/transform"
JSON_TYPE = "application/json"
SPLIT_NONE = (None, "None")
# Transformer's SDK keyword arguments after (model_name, instance_count, instance_type)
SDK_ARGUMENTS = (
    "strategy", "assemble_with", "output_path", "output_kms_key", "accept", "max_concurrent_transforms",
    "max_payload", "tags", "env", "base_transform_job_name", "sagemaker_session", "volume_kms_key",
)  # one record per object: images are never split into lines or RecordIO


class TransformJob:
    """`transformer.latest_transform_job`: its name, and the summary once it finished."""

    def __init__(self, name: str, output_path: str) -> None:
        self.name = self.job_name = name
        self.output_path = output_path
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def describe(self) -> dict[str, Any]:
        """TransformJobStatus (InProgress / Completed / Failed) and, when done, the transform's summary."""
        if self.error is not None:
            status = "Failed"
        elif self.summary is not None:
            status = "Completed"
        else:
            status = "InProgress"
        return {"TransformJobName": self.name, "TransformJobStatus": status,
                "TransformOutput": {"S3OutputPath": self.output_path}, "Summary": self.summary,
                **({"FailureReason": str(self.error)} if self.error is not None else {})}

    def wait(self, logs: bool = True) -> None:
        """Block until the job ends; its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error


class Transformer:
    """A batch transform of one model (a job's model folder plus its inference script)."""

    def __init__(
        self,
        model_name: str,
        instance_count: int,
        instance_type: str,
        strategy: str | None = None,
        assemble_with: str | None = None,
        output_path: str | None = None,
        output_kms_key: str | None = None,
        accept: str | None = None,
        max_concurrent_transforms: int | None = None,
        max_payload: int | None = None,
        tags: list[dict[str, str]] | None = None,
        env: dict[str, str] | None = None,
        base_transform_job_name: str | None = None,
        sagemaker_session: Any = None,
        volume_kms_key: str | None = None,
        *,
        model_data: str | None = None,
        entry_point: str | None = None,
        source_dir: str | None = None,
    ) -> None:
        """SDK arguments, plus where the model is: MODEL_DATA (a job's model/ or job folder) and the
        inference script (ENTRY_POINT, SOURCE_DIR); without MODEL_DATA, MODEL_NAME is a job folder."""
        self.model_name = model_name
        self.instance_count, self.instance_type = instance_count, instance_type
        self.strategy, self.assemble_with = strategy, assemble_with
        self.output_path = output_path
        self.accept = accept
        self.env = dict(env or {})
        self.base_transform_job_name = base_transform_job_name
        self.sagemaker_session = sagemaker_session
        self.recorded: dict[str, Any] = {
            "output_kms_key": output_kms_key, "max_concurrent_transforms": max_concurrent_transforms,
            "max_payload": max_payload, "tags": tags, "volume_kms_key": volume_kms_key,
        }
        self.model_data = model_data or model_name
        self.entry_point, self.source_dir = entry_point, source_dir
        self.latest_transform_job: TransformJob | None = None

    def transform(
        self,
        data: str,
        data_type: str = "S3Prefix",
        content_type: str | None = None,
        compression_type: str | None = None,
        split_type: str | None = None,
        job_name: str | None = None,
        input_filter: str | None = None,
        output_filter: str | None = None,
        join_source: str | None = None,
        experiment_config: dict[str, str] | None = None,
        model_client_config: dict[str, str] | None = None,
        wait: bool = True,
        logs: bool = True,
    ) -> None:
        """Start the transform of DATA (a folder or s3:// prefix, or with data_type="ManifestFile" a
        manifest); with WAIT, return when it is done (its error raised if it failed)."""
        spec = self._spec(data, data_type, content_type, compression_type, split_type,
                          (input_filter, output_filter, join_source))
        from vizsla.sagemaker.pytorch import job_name_from_base

        name = job_name or job_name_from_base(self.base_transform_job_name or _base(self.model_name))
        if self.output_path is None:
            self.output_path = str(Path(DEFAULT_OUTPUT) / name)
            spec = spec.model_copy(update={"output": self.output_path})
        job = TransformJob(name, self.output_path)
        self.latest_transform_job = job
        job._thread = threading.Thread(
            target=_run, args=(job, spec, logs and wait), name=f"transform-{name}", daemon=True
        )
        job._thread.start()
        if wait:
            job.wait(logs=logs)

    def wait(self, logs: bool = True) -> None:
        """Block until the latest transform job ends (the SDK's Transformer.wait)."""
        if self.latest_transform_job is None:
            raise ValueError("No transform job available")
        self.latest_transform_job.wait(logs=logs)

    def _spec(self, data: str, data_type: str, content_type: str | None, compression_type: str | None,
              split_type: str | None, filters: tuple[Any, ...]) -> Any:
        from vizsla.transform.spec import TransformSpec

        if data_type not in ("S3Prefix", "ManifestFile"):
            raise UserError(f"data_type must be 'S3Prefix' or 'ManifestFile', got {data_type!r}")
        if split_type not in SPLIT_NONE or compression_type not in SPLIT_NONE:
            raise UserError(f"split_type={split_type!r}, compression_type={compression_type!r}: an image "
                            "is one record per file here; leave both None")
        if any(f is not None for f in filters):
            raise UserError("input_filter, output_filter and join_source apply to JSON/CSV records, not "
                            "to images; leave them None")
        return TransformSpec(
            model=str(self.model_data), data=str(data), output=self.output_path or DEFAULT_OUTPUT,
            data_type="auto" if data_type == "S3Prefix" else "ManifestFile",
            entry_point=self.entry_point, source_dir=self.source_dir, content_type=content_type,
            accept=self.accept or JSON_TYPE,
        )


def _run(job: TransformJob, spec: Any, progress: bool) -> None:
    from vizsla.transform.runner import run_transform

    try:
        job.summary = run_transform(spec, progress=progress)
    except BaseException as exc:  # noqa: BLE001 - handed to wait()
        job.error = exc


def _base(model_name: str) -> str:
    """A job-name base from the model's name (the SDK derives one from the model's image)."""
    import re

    cleaned = re.sub(r"[^a-zA-Z0-9-]+", "-", Path(str(model_name)).name).strip("-")[:40].strip("-")
    return cleaned or "transform-job"


def transformer_for(model_data: str, model_name: str, entry_point: str | None, source_dir: str | None,
                    instance_count: int, instance_type: str, **kwargs: Any) -> Transformer:
    """What `PyTorch.transformer()` and `PyTorchModel.transformer()` return (their SDK arguments in
    KWARGS; role, model_server_workers, vpc_config_override and the like are recorded only)."""
    transformer = Transformer(
        model_name, instance_count, instance_type, model_data=model_data, entry_point=entry_point,
        source_dir=source_dir, **{k: v for k, v in kwargs.items() if k in SDK_ARGUMENTS},
    )
    transformer.recorded.update({k: v for k, v in kwargs.items() if k not in SDK_ARGUMENTS})
    return transformer
