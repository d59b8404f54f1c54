"""A notebook-facing API shaped like the SageMaker Python SDK (v2), running everything on this machine.

A notebook written for SageMaker ports by changing its imports::

    from vizsla.sagemaker.pytorch import PyTorch, PyTorchModel
    from vizsla.sagemaker.tuner import HyperparameterTuner, ContinuousParameter, CategoricalParameter
    from vizsla.sagemaker.debugger import Rule, ProfilerRule, rule_configs, DebuggerHookConfig
    from vizsla.sagemaker.serializers import IdentitySerializer
    from vizsla.sagemaker.deserializers import JSONDeserializer

or, for notebooks that `import sagemaker` and write `sagemaker.serializers.IdentitySerializer(...)`,
`sagemaker.Session()`, `sagemaker.get_execution_role()`: `from vizsla import sagemaker`.

`get_execution_role()` returns this machine's local identity, "local:<user>": it is recorded with each job
(AWS roles mean nothing here) so a notebook's `role = get_execution_role()` line keeps working.
"""

from __future__ import annotations

import getpass
import os

from vizsla.sagemaker import debugger, deserializers, predictor, pytorch, serializers, session, tuner
from vizsla.sagemaker.predictor import ModelError, Predictor
from vizsla.sagemaker.pytorch import PyTorch, PyTorchModel, UnexpectedStatusException
from vizsla.sagemaker.session import Session
from vizsla.sagemaker.tuner import (
    CategoricalParameter,
    ContinuousParameter,
    HyperparameterTuner,
    IntegerParameter,
)

LocalSession = Session  # sagemaker.local.LocalSession: everything is local here anyway

__all__ = [
    "CategoricalParameter",
    "ContinuousParameter",
    "HyperparameterTuner",
    "IntegerParameter",
    "LocalSession",
    "ModelError",
    "Predictor",
    "PyTorch",
    "PyTorchModel",
    "Session",
    "UnexpectedStatusException",
    "debugger",
    "deserializers",
    "get_execution_role",
    "predictor",
    "pytorch",
    "serializers",
    "session",
    "tuner",
]


def get_execution_role(sagemaker_session: object = None) -> str:
    """The local identity jobs are recorded under: "local:<user>" (no AWS role exists locally)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"local:{user}"
