"""Experiment tracking: mirror a job into MLflow (params, metrics, artifacts) as a trainer callback.

Importing this package does not import mlflow; the tracker does on its first `fit_start`.
"""

from vizsla.tracking.mlflow_tracker import MlflowTracker, flatten_params, resolve_tracking_uri
from vizsla.tracking.parent_run import ParentRun

__all__ = ["MlflowTracker", "ParentRun", "flatten_params", "resolve_tracking_uri"]
