"""ONNX in one place: export a torch module, compare its outputs with torch's, run it on ONNX Runtime.

Feature extraction (vizsla.data.extract) exports backbones and serving (vizsla.serving.runtime) exports
whole classifiers; both run them in the same kind of CPU session. What differs between them stays with
them: where exports are cached and under which names, which exporter goes first, and what counts as
agreeing with torch (relative feature error there, top-1 and probability drift here).
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vizsla.infra.hardware import available_cores
from vizsla.infra.logs import logger_levels

log = logging.getLogger("vizsla.onnx")

EXPORTERS = ("torchscript", "dynamo")
# The exporters' optimisers log every pass at INFO; a job's log keeps to what matters.
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")
_EXAMPLE_BATCH = 2  # the example the exporters trace; checks use another batch size to prove it dynamic


class CpuSession:
    """An ONNX Runtime CPU session (all graph optimisations) that maps one input array to float32 outputs.

    THREADS intra-op threads (0: every core this job may use), one inter-op thread. Spinning is off by
    default: between batches idle ORT threads would spin on the cores the decoding threads or workers need
    (benchmarks/bench_extract.py measures both)."""

    def __init__(self, model: bytes | str, threads: int = 0, *, spinning: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT warns about unused initializers on every load
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: array})[0], dtype=np.float32)


def export_onnx(
    module: Any,
    input_hw: tuple[int, int],
    *,
    output_name: str,
    exporters: Sequence[str] = EXPORTERS,
    logger: logging.Logger = log,
) -> bytes:
    """ONNX bytes of an fp32 CPU eval copy of MODULE (images (B, 3, H, W) -> OUTPUT_NAME), batch axis
    dynamic; EXPORTERS are tried in order, a failure of one logged on LOGGER and the next tried, the last
    one's error raised. MODULE itself is left as it is."""
    import torch

    model = copy.deepcopy(module).to("cpu", torch.float32).eval()
    example = (torch.zeros(_EXAMPLE_BATCH, 3, *input_hw),)
    with warnings.catch_warnings(), torch.no_grad(), logger_levels(logging.WARNING, *EXPORTER_LOGGERS):
        warnings.simplefilter("ignore")
        for exporter, following in zip(exporters, [*exporters[1:], None], strict=True):
            try:
                return _EXPORT[exporter](model, example, output_name)
            except Exception as exc:  # any exporter failure means: try the next exporter
                if following is None:
                    raise
                logger.info(
                    "%s ONNX export failed (%s: %s); trying the %s exporter",
                    _TITLES[exporter], type(exc).__name__, exc, _TITLES[following],
                )
    raise ValueError("export_onnx needs at least one exporter")


def _torchscript(model: Any, example: tuple[Any, ...], output_name: str) -> bytes:
    """The TorchScript exporter: fast (0.3 s vs 9.3 s for dynamo on efficientnet_lite0), opset 17."""
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(model, example, buffer, dynamo=False, input_names=["images"],
                      output_names=[output_name], opset_version=17,
                      dynamic_axes={"images": {0: "batch"}, output_name: {0: "batch"}})
    return buffer.getvalue()


def _dynamo(model: Any, example: tuple[Any, ...], output_name: str) -> bytes:
    """The dynamo exporter (torch.export), with its graph optimiser: exports what tracing cannot."""
    import torch

    program = torch.onnx.export(model, example, dynamo=True, verbose=False, optimize=True,
                                input_names=["images"], output_names=[output_name],
                                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    return program.model_proto.SerializeToString()  # type: ignore[union-attr]


_EXPORT = {"torchscript": _torchscript, "dynamo": _dynamo}
_TITLES = {"torchscript": "TorchScript", "dynamo": "dynamo"}


@dataclass(frozen=True)
class OutputDiff:
    """How an export's outputs differ from torch's on the same inputs."""

    same_shape: bool
    max_abs_diff: float = float("nan")
    relative: float = float("nan")  # max_abs_diff / max |expected|
    top1_identical: bool = False  # argmax of every row the same (classifiers)


def compare_outputs(expected: np.ndarray, got: np.ndarray) -> OutputDiff:
    """The difference of GOT from EXPECTED (both (N, D)); only same_shape is set when the shapes differ."""
    if got.shape != expected.shape:
        return OutputDiff(same_shape=False)
    max_abs = float(np.abs(got - expected).max())
    return OutputDiff(
        same_shape=True,
        max_abs_diff=max_abs,
        relative=max_abs / max(float(np.abs(expected).max()), 1e-12),
        top1_identical=bool((got.argmax(1) == expected.argmax(1)).all()),
    )
