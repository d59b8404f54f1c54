"""`PyTorch` estimator and `PyTorchModel` shaped like the SageMaker SDK's, running script jobs locally.

`PyTorch(entry_point=..., source_dir=..., hyperparameters=...).fit({"training": path})` runs the script as a
Vizsla script job in OUTPUT_PATH/<job name> (default ./runs), under SageMaker's training contract; `deploy()`
serves the job's model/ through an inference script on a real local endpoint. Arguments that only mean
something in AWS (role, instance_type, framework_version, ...) are recorded in the job spec's `sagemaker`.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vizsla.errors import UserError
from vizsla.jobdir import JobDir
from vizsla.sagemaker.debugger import debug_section, profile_section
from vizsla.sagemaker.predictor import AutoDeserializer, AutoSerializer, LocalEndpoint, Predictor

DEFAULT_BASE_JOB_NAME = "pytorch-training"  # the SDK derives it from the training image's name
DEFAULT_OUTPUT = "runs"
DEFAULT_CHANNEL = "training"  # fit("path") -> the "training" channel, as the SDK does


class UnexpectedStatusException(ValueError):
    """Raised by fit()/wait() when the job ends other than Completed (the SDK's exception of that name)."""

    def __init__(self, message: str, allowed_statuses: list[str], actual_status: str) -> None:
        super().__init__(message)
        self.allowed_statuses = allowed_statuses
        self.actual_status = actual_status


def job_name_from_base(base: str) -> str:
    """<base>-YYYY-MM-DD-HH-MM-SS-mmm, as sagemaker.utils.name_from_base names training jobs."""
    now = datetime.now(UTC)
    return f"{base}-{now.strftime('%Y-%m-%d-%H-%M-%S')}-{now.microsecond // 1000:03d}"


def _channels(inputs: Any) -> dict[str, str]:
    """fit()'s inputs: a path (the training channel), or {channel: path or TrainingInput-like}."""
    if inputs is None:
        return {}
    if isinstance(inputs, str | Path):
        return {DEFAULT_CHANNEL: str(inputs)}
    if isinstance(inputs, dict):
        out = {}
        for name, value in inputs.items():
            uri = getattr(value, "config", None)
            if isinstance(uri, dict):  # sagemaker.inputs.TrainingInput
                value = uri["DataSource"]["S3DataSource"]["S3Uri"]
            out[str(name)] = str(value)
        return out
    raise UserError(f"fit() inputs must be a path or a dict of channel -> path, got {type(inputs).__name__}")


class TrainingJob:
    """`estimator.latest_training_job`: the job's name, folder and result."""

    def __init__(self, name: str, job_dir: Path, thread: threading.Thread | None = None) -> None:
        self.name = self.job_name = name
        self.job_dir = job_dir
        self._thread = thread
        self.error: BaseException | None = None

    def describe(self) -> dict[str, Any]:
        """result.json of the job (status, metrics, failure_reason, ...)."""
        import json

        path = JobDir(self.job_dir).result
        return json.loads(path.read_text()) if path.is_file() else {"status": "InProgress"}

    def wait(self, logs: bool = True) -> None:
        """Block until the job ends; UnexpectedStatusException unless it Completed."""
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
        check_status(self.name, self.describe())


def check_status(name: str, result: dict[str, Any]) -> None:
    status = result.get("status")
    if status == "Completed":
        return
    reason = result.get("failure_reason") or result.get("stop_reason") or "no reason recorded"
    raise UnexpectedStatusException(
        f"Error for Training job {name}: {status}. Reason: {reason}",
        allowed_statuses=["Completed"],
        actual_status=str(status),
    )


class PyTorch:
    """The SDK's PyTorch estimator, running the entry point on this machine."""

    def __init__(
        self,
        entry_point: str,
        source_dir: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        role: str | None = None,
        instance_count: int = 1,
        instance_type: str | None = None,
        framework_version: str | None = None,
        py_version: str | None = None,
        metric_definitions: list[dict[str, str]] | None = None,
        rules: list[Any] | None = None,
        debugger_hook_config: Any = None,
        profiler_config: Any = None,
        output_path: str | None = None,
        base_job_name: str | None = None,
        environment: dict[str, str] | None = None,
        max_run: float | None = None,
        distribution: dict[str, Any] | None = None,
        tracking: bool | dict[str, Any] = True,
        **kwargs: Any,
    ) -> None:
        """SDK arguments, plus Vizsla's `tracking` (False, or a TrackingSpec mapping: MLflow recording)."""
        self.entry_point = entry_point
        self.tracking = tracking if isinstance(tracking, dict) else {"enabled": bool(tracking)}
        self.source_dir = source_dir
        self._hyperparameters = dict(hyperparameters or {})
        self.metric_definitions = list(metric_definitions or [])
        self.rules = list(rules or [])
        # False is the SDK's "no hook config at all" (no default one either); None lets the default apply
        self.hook_config_off = debugger_hook_config is False
        self.debugger_hook_config = debugger_hook_config or None
        self.profiler_config = profiler_config
        self.output_path = output_path if output_path and "://" not in output_path else DEFAULT_OUTPUT
        self.base_job_name = base_job_name or DEFAULT_BASE_JOB_NAME
        self.environment = dict(environment or {})
        self.max_run = max_run
        self.distribution = distribution  # {"torch_distributed": {"enabled": True}}: torchrun, as the toolkit
        self.role = role
        self.instance_count, self.instance_type = instance_count, instance_type
        self.framework_version, self.py_version = framework_version, py_version
        from vizsla.sagemaker.session import Session

        self.sagemaker_session = kwargs.get("sagemaker_session") or Session()  # recorded below if given
        self.recorded = {
            "role": role,
            "instance_count": instance_count,
            "instance_type": instance_type,
            "framework_version": framework_version,
            "py_version": py_version,
            "output_path": output_path,
            **{k: _recordable(v) for k, v in kwargs.items()},
        }
        self.latest_training_job: TrainingJob | None = None

    def hyperparameters(self) -> dict[str, str]:
        """Every value JSON-encoded, as the SDK's Framework.hyperparameters() returns them ('"64"' for the
        string "64", '0.01' for 0.01): aws/sagemaker-python-sdk `src/sagemaker/estimator.py`
        `Framework.hyperparameters` -> `EstimatorBase._json_encode_hyperparameters` (json.dumps each)."""
        return {str(k): json.dumps(v) for k, v in self._hyperparameters.items()}

    def set_hyperparameters(self, **kwargs: Any) -> None:
        self._hyperparameters.update(kwargs)

    def script_section(self, inputs: Any = None) -> dict[str, Any]:
        """The script job mapping (without output) this estimator runs for INPUTS."""
        section: dict[str, Any] = {
            "entry_point": self.entry_point,
            "channels": _channels(inputs),
            "hyperparameters": dict(self._hyperparameters),
            "metric_definitions": [dict(d) for d in self.metric_definitions],
            "environment": self.environment,
            "tracking": dict(self.tracking),
            "sagemaker": {k: v for k, v in self.recorded.items() if v is not None},
        }
        if self.source_dir:
            section["source_dir"] = str(self.source_dir)
        if self.max_run:
            section["max_run_s"] = float(self.max_run)
        if self.distribution:
            section["distribution"] = dict(self.distribution)
        debug = debug_section(self.rules, self.debugger_hook_config)
        if debug:
            section["debug"] = debug
        if self.hook_config_off:
            section["debug_hook"] = False
        profile = profile_section(self.rules, self.profiler_config)
        if profile:
            section["profile"] = profile
        return section

    def fit(
        self, inputs: Any = None, wait: bool = True, logs: bool | str = True, job_name: str | None = None
    ) -> None:
        """Run the training job; UnexpectedStatusException when it fails (after the wait)."""
        from vizsla.scriptmode.runner import run_script_job
        from vizsla.scriptmode.spec import build_script_spec

        name = job_name or job_name_from_base(self.base_job_name)
        job_dir = Path(self.output_path).expanduser().resolve() / name
        spec = build_script_spec({**self.script_section(inputs), "name": name, "output": str(job_dir)})
        job = TrainingJob(name, job_dir)
        self.latest_training_job = job
        from vizsla.sagemaker.session import remember_job

        remember_job(name, job_dir)
        if wait:
            check_status(name, run_script_job(spec, progress=bool(logs)))
            return

        def run() -> None:
            try:
                run_script_job(spec, progress=False)
            except BaseException as exc:  # noqa: BLE001 - handed to wait()
                job.error = exc

        job._thread = threading.Thread(target=run, name=f"job-{name}", daemon=True)
        job._thread.start()

    @classmethod
    def attach(
        cls, training_job_name: str, sagemaker_session: Any = None, model_channel_name: str = "model"
    ) -> PyTorch:
        """An estimator for a finished (or running) job NAME, as the SDK's Estimator.attach rebuilds one from
        DescribeTrainingJob: its entry point, source dir, hyperparameters (JSON-decoded) and metrics.
        NAME is a job started in this process, a job folder, or a job under ./runs (or an output_path
        searched by SAGEMAKER_SESSION)."""
        from vizsla.sagemaker.session import Session

        session = sagemaker_session or Session()
        job_dir = session.find_training_job(training_job_name)
        result, spec = _saved(job_dir)
        recorded = dict(result.get("sagemaker") or spec.get("sagemaker") or {})
        estimator = cls(
            entry_point=str(spec.get("entry_point") or result.get("entry_point")),
            source_dir=spec.get("source_dir") or result.get("source_dir"),
            hyperparameters=dict(spec.get("hyperparameters") or result.get("hyperparameters") or {}),
            role=recorded.get("role"),
            instance_count=recorded.get("instance_count") or 1,
            instance_type=recorded.get("instance_type"),
            framework_version=recorded.get("framework_version"),
            py_version=recorded.get("py_version"),
            metric_definitions=list(spec.get("metric_definitions") or []),
            output_path=str(job_dir.parent),
            environment=dict(spec.get("environment") or {}),
            sagemaker_session=session,
        )
        name = str(result.get("job_name") or spec.get("job_name") or job_dir.name)
        estimator.latest_training_job = TrainingJob(name, job_dir)
        estimator.base_job_name = name
        return estimator

    def _job(self) -> TrainingJob:
        if self.latest_training_job is None:
            raise UserError("no training job yet: call fit() first (or use a tuner's best_estimator())")
        return self.latest_training_job

    @property
    def model_data(self) -> str:
        """The job's model folder (SM_MODEL_DIR), where SageMaker would have put model.tar.gz."""
        return str(JobDir(self._job().job_dir).model_dir)

    def latest_job_debugger_artifacts_path(self) -> str:
        """The job's debugger store (read it with create_trial)."""
        return str(JobDir(self._job().job_dir).saved_debug_store())

    def latest_job_profiler_artifacts_path(self) -> str:
        """The job's profiler output folder."""
        return str(JobDir(self._job().job_dir).profile)

    def deploy(
        self,
        initial_instance_count: int = 1,
        instance_type: str = "local",
        serializer: Any = None,
        deserializer: Any = None,
        entry_point: str | None = None,
        source_dir: str | None = None,
        endpoint_name: str | None = None,
        predictor_cls: Any = None,
        **kwargs: Any,
    ) -> Predictor:
        """A real local endpoint for the job's model, through ENTRY_POINT (default: the training script)."""
        model = PyTorchModel(
            model_data=self.model_data,
            role=self.role,
            entry_point=entry_point or self.entry_point,
            source_dir=source_dir if source_dir is not None else self.source_dir,
            predictor_cls=predictor_cls,
            sagemaker_session=self.sagemaker_session,
            name=self._job().name,
        )
        return model.deploy(
            initial_instance_count,
            instance_type,
            serializer=serializer,
            deserializer=deserializer,
            endpoint_name=endpoint_name,  # named: a registered endpoint; else one in this process
        )

    def transformer(
        self, instance_count: int, instance_type: str, entry_point: str | None = None, **kwargs: Any
    ) -> Any:
        """A batch Transformer of the job's model through ENTRY_POINT (default: the training script), as
        the SDK's Framework.transformer (strategy, assemble_with, output_path, accept, env, ... in KWARGS)."""
        from vizsla.sagemaker.transformer import transformer_for

        return transformer_for(self.model_data, self._job().name, entry_point or self.entry_point,
                               self.source_dir, instance_count, instance_type, **kwargs)


class PyTorchModel:
    """A saved model plus its inference script, deployable to a local endpoint."""

    def __init__(
        self,
        model_data: str,
        role: str | None = None,
        entry_point: str | None = None,
        source_dir: str | None = None,
        framework_version: str | None = None,
        py_version: str | None = None,
        name: str | None = None,
        predictor_cls: Any = None,
        sagemaker_session: Any = None,
        **kwargs: Any,
    ) -> None:
        """PREDICTOR_CLS(endpoint_name, sagemaker_session) builds what deploy() returns, as in the SDK."""
        self.model_data = model_data
        self.role = role
        self.entry_point = entry_point
        self.source_dir = source_dir
        self.name = name
        self.predictor_cls = predictor_cls
        self.sagemaker_session = sagemaker_session
        self.endpoint_name: str | None = None
        self.recorded = {"framework_version": framework_version, "py_version": py_version, **kwargs}

    def deploy(
        self,
        initial_instance_count: int = 1,
        instance_type: str = "local",
        serializer: Any = None,
        deserializer: Any = None,
        endpoint_name: str | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Start `vizsla serve` on a free port in this process and return its Predictor.

        With predictor_cls: `predictor_cls(endpoint_name, sagemaker_session)`, then serializer and
        deserializer set on it when given (aws/sagemaker-python-sdk `src/sagemaker/model.py`
        `Model.deploy`). Without: a Predictor that sends bytes/str as they are, arrays as NPY, other
        objects as JSON, and decodes JSON/NPY answers, unless serializer/deserializer say otherwise."""
        path = Path(str(self.model_data).removeprefix("file://"))
        if "://" in str(path) or str(path).endswith(".tar.gz"):
            raise UserError(
                f"model_data must be a local model folder (a job's model/), got {self.model_data}"
            )
        name = _endpoint_name(endpoint_name or self.name or path.parent.name)
        endpoint: Any
        if endpoint_name:  # a named endpoint is registered: `vizsla endpoints` and Predictor(name) see it
            from vizsla.endpoints.notebook import deploy_managed

            endpoint = deploy_managed(path, name, workers=initial_instance_count or 1,
                                      entry_point=self.entry_point, source_dir=self.source_dir)
        else:
            endpoint = LocalEndpoint(
                path,
                name=name,
                entry_point=Path(self.entry_point) if self.entry_point else None,
                source_dir=Path(self.source_dir) if self.source_dir else None,
            )
        self.endpoint_name = name
        if self.predictor_cls is None:
            return Predictor(
                endpoint if isinstance(endpoint, LocalEndpoint) else name,
                serializer=serializer if serializer is not None else AutoSerializer(),
                deserializer=deserializer if deserializer is not None else AutoDeserializer(),
            )
        try:
            predictor = self.predictor_cls(name, self.sagemaker_session)
        except Exception:
            endpoint.stop()
            raise
        if serializer is not None:
            predictor.serializer = serializer
        if deserializer is not None:
            predictor.deserializer = deserializer
        return predictor

    def transformer(self, instance_count: int, instance_type: str, **kwargs: Any) -> Any:
        """A batch Transformer of this model through its entry point (the SDK's Model.transformer)."""
        from vizsla.sagemaker.transformer import transformer_for

        return transformer_for(str(self.model_data).removeprefix("file://"), self.name or "model",
                               self.entry_point, self.source_dir, instance_count, instance_type, **kwargs)


def _saved(job_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(result.json, spec.yaml) of a script job folder, {} for what is missing."""
    import yaml

    result: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    try:
        result = json.loads(JobDir(job_dir).result.read_text())
    except (OSError, ValueError):
        pass
    try:
        spec = yaml.safe_load(JobDir(job_dir).spec.read_text()) or {}
    except (OSError, yaml.YAMLError):
        pass
    return result, spec


def _endpoint_name(text: str) -> str:
    """An endpoint name the server accepts: letters, digits and single-dash runs, at most 63 chars."""
    import re

    cleaned = re.sub(r"[^a-zA-Z0-9-]+", "-", text).strip("-")[:63].strip("-")
    return cleaned or "model"


def _recordable(value: Any) -> Any:
    """Keep JSON-able arguments as they are; record others (sessions, objects) by their type."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "_to_request_dict"):  # TensorBoardOutputConfig and other SDK config objects
        try:
            return _recordable(value._to_request_dict())
        except Exception:  # noqa: BLE001 - recording only
            return f"<{type(value).__name__}>"
    if isinstance(value, list | tuple):
        return [_recordable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _recordable(v) for k, v in value.items()}
    return f"<{type(value).__name__}>"
