"""Batch transform: every image of a folder, bucket prefix or manifest through a model, without a server.

The serving runtime (ONNX Runtime fp32 / int8 or torch, the model's own preprocessing, JPEG draft
decoding) without HTTP, in batches sized to the cores; or a script job's inference.py one record at a time,
as SageMaker Batch Transform runs it. Outputs follow SageMaker's layout (`<input name>.out` per input, the
endpoint's JSON answer) plus one predictions file, a summary and the rejected files with their reasons.
Progress is committed in input order, so a killed run continues where it stopped:

    from vizsla.transform import TransformSpec, run_transform
    run_transform(TransformSpec(model="runs/job", data="photos/", output="out/"))
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module: imported on first use, so `vizsla --help` (which reads TransformSpec) stays light
_EXPORTS = {
    "InputFile": "vizsla.transform.sources",
    "TransformSpec": "vizsla.transform.spec",
    "list_inputs": "vizsla.transform.sources",
    "run_transform": "vizsla.transform.runner",
    "select_shard": "vizsla.transform.sources",
    "shard_of": "vizsla.transform.sources",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vizsla.transform' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
