"""Experiment tracking: mirror a job into MLflow (params, metrics, dataset, artifacts, its model) and
TensorBoard (epoch curves).

`MlflowRun` is the plain API (start, log params, metrics at a step, artifacts, end with a status);
`MlflowTracker` drives one from trainer events. `registry` logs a job's model (`pyfunc_model`: images in,
class scores out, on its ONNX export), registers it and resolves `models:/` URIs; `tensorboard` writes the
epoch curves. Importing this package does not import mlflow; a run does when it starts.
"""

from vizsla.tracking.mlflow_run import MlflowRun, flatten_params, resolve_tracking_uri
from vizsla.tracking.mlflow_tracker import MlflowTracker
from vizsla.tracking.parent_run import ParentRun

__all__ = ["MlflowRun", "MlflowTracker", "ParentRun", "flatten_params", "resolve_tracking_uri"]
