"""`sagemaker.Session` for the local API: describe jobs from their folders, delete local endpoints.

Notebooks call `estimator.sagemaker_session.describe_training_job(name)` and read `TrainingJobStatus`,
`HyperParameters`, `ModelArtifacts.S3ModelArtifacts`, `FinalMetricDataList`, ...; the dict returned here has
the DescribeTrainingJob response's shape (botocore `sagemaker/2017-07-24/service-2.json`
`DescribeTrainingJobResponse`), built from the job folder's result.json and spec.yaml. HyperParameters
are JSON-encoded strings, as the SDK's Framework estimators send them (aws/sagemaker-python-sdk
`src/sagemaker/estimator.py` `Framework._json_encode_hyperparameters`, `_script_mode_hyperparam_update`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from vizsla.errors import UserError
from vizsla.jobdir import JobDir

DEFAULT_OUTPUT = "runs"
LOCAL_REGION = "local"
LOCAL_ACCOUNT = "000000000000"
# Our job statuses -> DescribeTrainingJob's TrainingJobStatus / SecondaryStatus.
_SECONDARY = {"Completed": "Completed", "Failed": "Failed", "Stopped": "Stopped", "InProgress": "Training"}

# Jobs and tuning jobs started or attached in this process, by name: where describe_* looks first.
_TRAINING_JOBS: dict[str, Path] = {}
_TUNING_JOBS: dict[str, Path] = {}


def remember_job(name: str, job_dir: Path) -> None:
    _TRAINING_JOBS[name] = Path(job_dir)


def remember_tuning_job(name: str, tune_dir: Path) -> None:
    _TUNING_JOBS[name] = Path(tune_dir)


class Session:
    """The SDK's Session, locally: no AWS calls; jobs are folders, endpoints run in this process.

    `default_output` (default ./runs) is where job names are looked up besides the jobs this process
    started; `boto_region_name` is "local". Other SDK arguments are accepted and ignored.
    """

    def __init__(self, boto_session: Any = None, default_output: str | Path | None = None, **_: Any) -> None:
        self.boto_session = boto_session
        self.boto_region_name = LOCAL_REGION
        self.local_mode = True
        self.default_output = Path(default_output or DEFAULT_OUTPUT)

    def default_bucket(self) -> str:
        """The local output folder stands in for the default S3 bucket."""
        return str(self.default_output.expanduser().resolve())

    def upload_data(
        self, path: str | Path, bucket: str | None = None, key_prefix: str = "data", **_: Any
    ) -> str:
        """The SDK uploads PATH to s3://bucket/key_prefix and returns that URI; locally the data stays where
        it is and its absolute path is returned (fit() reads channels from local folders)."""
        local = Path(path).expanduser().resolve()
        if not local.exists():
            raise UserError(f"upload_data: {local} does not exist")
        return str(local)

    # ------------------------------------------------------------------ finding jobs
    def find_training_job(self, name: str) -> Path:
        """The folder of training job NAME (UserError when none is found)."""
        found = _TRAINING_JOBS.get(name) or _find_job(name, self.default_output)
        if found is None:
            raise UserError(
                f"training job {name!r} not found (not started in this process, not a job folder, and not "
                f"in {self.default_output})",
                hint="Pass the job's folder, or Session(default_output=<the estimator's output_path>).",
            )
        return found

    def find_tuning_job(self, name: str) -> Path:
        """The folder of tuning job NAME (UserError when none is found)."""
        found = _TUNING_JOBS.get(name)
        if found is None:
            for candidate in (Path(name), self.default_output / name):
                if JobDir(candidate).spec.is_file() and (candidate / "trials").is_dir():
                    found = candidate.resolve()
                    break
        if found is None:
            raise UserError(
                f"tuning job {name!r} not found (not started in this process, not a tuning job folder, and "
                f"not in {self.default_output})"
            )
        return found

    # ------------------------------------------------------------------ the API
    def describe_training_job(self, job_name: str) -> dict[str, Any]:
        """DescribeTrainingJob's response for a local job (status, hyperparameters, artefacts, metrics)."""
        return describe_job_dir(self.find_training_job(job_name), job_name)

    def describe_tuning_job(self, job_name: str) -> dict[str, Any]:
        """A DescribeHyperParameterTuningJob-shaped summary of a local tuning job."""
        tune_dir = self.find_tuning_job(job_name)
        from vizsla.tuning.job import read_tune_result

        try:
            result = read_tune_result(tune_dir)
        except (OSError, ValueError):
            result = {}
        status = result.get("status") or "InProgress"
        best = result.get("best") or {}
        described: dict[str, Any] = {
            "HyperParameterTuningJobName": job_name,
            "HyperParameterTuningJobStatus": status,
            "TrainingJobStatusCounters": result.get("counts") or {},
        }
        if best.get("job_dir"):
            best_dir = Path(best["job_dir"])
            described["BestTrainingJob"] = {
                "TrainingJobName": _job_name(best_dir),
                "TrainingJobStatus": "Completed",
                "FinalHyperParameterTuningJobObjectiveMetric": {"Value": best.get("objective")},
                "TunedHyperParameters": {
                    k: json.dumps(v) for k, v in (best.get("hyperparameters") or {}).items()
                },
            }
        return described

    def wait_for_job(self, job: str, poll: int = 5) -> dict[str, Any]:
        """Block until the job NAME started in this process ends; its description."""
        import time

        while True:
            described = self.describe_training_job(job)
            if described["TrainingJobStatus"] != "InProgress":
                return described
            time.sleep(poll)

    def delete_endpoint(self, endpoint_name: str) -> None:
        """Stop the local endpoint ENDPOINT_NAME."""
        from vizsla.sagemaker.predictor import delete_endpoint

        delete_endpoint(endpoint_name)

    def delete_endpoint_config(self, endpoint_config_name: str) -> None:
        """Nothing to delete locally (an endpoint has no separate config here)."""

    def delete_model(self, model_name: str) -> None:
        """Nothing to delete locally: model files stay in their job folder."""


def _find_job(name: str, output: Path) -> Path | None:
    for candidate in (Path(name), output / name):
        if JobDir(candidate).result.is_file() or JobDir(candidate).spec.is_file():
            return candidate.resolve()
    # a tuning trial's job: <output>/<tuning job>/trials/<trial>/ with result.json naming it
    if output.is_dir():
        for result in output.glob(f"*/trials/*/{JobDir.RESULT_FILE}"):
            try:
                if json.loads(result.read_text()).get("job_name") == name:
                    return result.parent.resolve()
            except (OSError, ValueError):
                continue
    return None


def _job_name(job_dir: Path) -> str:
    try:
        return str(json.loads(JobDir(job_dir).result.read_text())["job_name"])
    except (OSError, ValueError, KeyError):
        return job_dir.name


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def describe_job_dir(job_dir: Path, name: str | None = None) -> dict[str, Any]:
    """DescribeTrainingJob's shape for the script job in JOB_DIR (InProgress while no result.json)."""
    from vizsla.sagemaker.pytorch import _saved

    result, spec = _saved(job_dir)
    name = str(result.get("job_name") or spec.get("job_name") or name or job_dir.name)
    recorded = dict(result.get("sagemaker") or spec.get("sagemaker") or {})
    status = str(result.get("status") or "InProgress")
    hyperparameters = dict(result.get("hyperparameters") or spec.get("hyperparameters") or {})
    entry_point = result.get("entry_point") or spec.get("entry_point")
    source_dir = result.get("source_dir") or spec.get("source_dir")
    encoded = {str(k): json.dumps(v) for k, v in hyperparameters.items()}
    # the SDK's script-mode entries (sagemaker_program, ...) as Framework.fit adds them
    encoded.update(
        {
            "sagemaker_program": json.dumps(entry_point),
            "sagemaker_submit_directory": json.dumps(source_dir),
            "sagemaker_container_log_level": "20",
            "sagemaker_job_name": json.dumps(name),
            "sagemaker_region": json.dumps(LOCAL_REGION),
        }
    )
    start, end = _time(result.get("start_time")), _time(result.get("end_time"))
    channels = dict(result.get("channels") or spec.get("channels") or {})
    metrics = dict(result.get("metrics") or {})
    described: dict[str, Any] = {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:{LOCAL_REGION}:{LOCAL_ACCOUNT}:training-job/{name.lower()}",
        "TrainingJobStatus": status,
        "SecondaryStatus": _SECONDARY.get(status, status),
        "HyperParameters": encoded,
        "AlgorithmSpecification": {
            "TrainingImage": "vizsla-local",
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": d.get("name", d.get("Name")), "Regex": d.get("regex", d.get("Regex"))}
                for d in spec.get("metric_definitions") or []
            ],
        },
        "RoleArn": recorded.get("role"),
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": str(location),
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel, location in channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": str(job_dir.parent)},
        "ResourceConfig": {
            "InstanceType": recorded.get("instance_type") or "local",
            "InstanceCount": recorded.get("instance_count") or 1,
            "VolumeSizeInGB": 0,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": int(spec.get("max_run_s") or 86400)},
        "ModelArtifacts": {"S3ModelArtifacts": str(JobDir(job_dir).model_dir)},
        "CreationTime": start,
        "TrainingStartTime": start,
        "TrainingEndTime": end,
        "LastModifiedTime": end or start,
        "FinalMetricDataList": [
            {"MetricName": metric, "Value": float(value), "Timestamp": end}
            for metric, value in metrics.items()
            if isinstance(value, int | float)
        ],
    }
    if result.get("duration_s") is not None and status != "InProgress":
        described["TrainingTimeInSeconds"] = described["BillableTimeInSeconds"] = int(result["duration_s"])
    if status == "Failed":
        described["FailureReason"] = result.get("failure_reason") or "no reason recorded"
    rules = _rule_statuses(result)
    if rules:
        described["DebugRuleEvaluationStatuses"] = rules
    return {k: v for k, v in described.items() if v is not None}


def _rule_statuses(result: dict[str, Any]) -> list[dict[str, Any]]:
    """DebugRuleEvaluationStatuses from the debugger summary in result.json, when present.

    SageMaker's RuleEvaluationStatus has no "not evaluated" value: a rule whose tensors never appeared fails
    there (Error), so Vizsla's NoData is reported as Error with its reason in StatusDetails."""
    debugger = result.get("debugger")
    rules = debugger.get("rules") if isinstance(debugger, dict) else None
    out = []
    for rule in rules or []:
        if not isinstance(rule, dict):
            continue
        status = str(rule.get("status"))
        details = rule.get("error") or rule.get("note") or rule.get("first_finding")
        if status == "NoData":
            status, details = "Error", f"NoData: {details or 'no tensors of its collections were recorded'}"
        entry = {"RuleConfigurationName": rule.get("name"), "RuleEvaluationStatus": status}
        if details:
            entry["StatusDetails"] = str(details)
        out.append(entry)
    return out
