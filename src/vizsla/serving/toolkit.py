"""Script-mode serving: a user's `inference.py` over whatever files their training script saved.

The defaults follow SageMaker's PyTorch inference toolkit (sagemaker-pytorch-inference-toolkit
`default_pytorch_inference_handler.py`, sagemaker-inference-toolkit `decoder.py` / `encoder.py`): JSON, CSV
and NPY bodies become a float tensor, `predict_fn` calls `model(data)` under `torch.no_grad()` in eval mode,
`output_fn` encodes to the first supported Accept type (JSON by default, CSV, NPY). The default `model_fn` is
the PyTorch toolkit's too: `model.pt`, else the one `*.pt`/`*.pth` file, loaded with `torch.jit.load`
(TorchScript only: a pickled module or a state_dict needs the script's own model_fn; the error says so).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vizsla.errors import UserError
from vizsla.jobdir import JobDir
from vizsla.serving.errors import RequestError, load_json

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
NPY_TYPE = "application/x-npy"
UTF8_TYPES = (JSON_TYPE, CSV_TYPE)  # the toolkit decodes these bodies to str before input_fn
ENCODABLE = (JSON_TYPE, CSV_TYPE, NPY_TYPE)
JOB_MARKERS = (JobDir.RESULT_FILE, JobDir.SPEC_FILE, "output")
ANY_TYPE = "*/*"
DEFAULT_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"


def default_accept() -> str:
    """$SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, else application/json (sagemaker-inference-toolkit
    `environment.py` `Environment.default_accept`, `parameters.py` DEFAULT_INVOCATIONS_ACCEPT_ENV)."""
    return os.environ.get(DEFAULT_ACCEPT_ENV) or JSON_TYPE


def resolve_accept(accept: str | None) -> str:
    """The Accept a handler sees: a missing, empty or exactly `*/*` one becomes the default accept.

    sagemaker-inference-toolkit `src/sagemaker_inference/transformer.py` `Transformer.transform`: `if not
    accept or accept == content_types.ANY: accept = self._environment.default_accept`, before transform_fn
    (and so input_fn/predict_fn/output_fn) runs. boto3's invoke_endpoint without Accept sends none at all.
    """
    if not accept or not accept.strip() or accept.strip() == ANY_TYPE:
        return default_accept()
    return accept


def resolve_artefact_dir(path: str | Path) -> Path:
    """The folder model_fn receives: a script job's `model/` (SM_MODEL_DIR), else PATH itself."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise UserError(
            f"model path not found or not a folder: {path}",
            hint="Pass a script job's folder or the folder its script saved the model into.",
        )
    model = JobDir(path).model_dir
    if model.is_dir() and any((path / marker).exists() for marker in JOB_MARKERS):
        return model
    return path


def is_vizsla_model(path: str | Path) -> bool:
    """Whether PATH (or its model/) holds a vizsla model folder rather than a script's own files."""
    from vizsla.serving.composed import find_model_dir

    return find_model_dir(path) is not None


def body_for_user(body: bytes, content_type: str) -> bytes | str:
    """JSON and CSV bodies as str (UTF-8), anything else as bytes, as the toolkit hands them to input_fn."""
    from vizsla.serving.handler import media_type

    kind, params = media_type(content_type)
    if kind not in UTF8_TYPES:
        return body
    try:
        return body.decode(params.get("charset") or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise RequestError(400, f"a {kind} body must be UTF-8 text: {exc}") from None


DEFAULT_MODEL_FILE = "model.pt"


def model_file(model_dir: str | Path) -> Path | None:
    """The file the toolkit's default model_fn loads: model.pt, else the only *.pt/*.pth; None if none."""
    folder = Path(model_dir)
    if (folder / DEFAULT_MODEL_FILE).is_file():
        return folder / DEFAULT_MODEL_FILE
    found = sorted(p for p in folder.iterdir() if p.suffix in (".pt", ".pth") and p.is_file())
    if len(found) > 1:
        raise UserError(
            f"the default model_fn needs {DEFAULT_MODEL_FILE} or a single *.pt/*.pth file in {folder}, found "
            f"{', '.join(p.name for p in found)}",
            hint="Name the TorchScript file model.pt, or add model_fn(model_dir) to the entry point.",
        )
    return found[0] if found else None


def has_model_file(path: str | Path) -> bool:
    """Whether PATH (a folder, or a script job's) holds a file the default model_fn would load."""
    try:
        return model_file(resolve_artefact_dir(path)) is not None
    except UserError:
        return Path(path).is_dir()  # several candidates: the default model_fn names them when it runs


def toolkit_model_fn(model_dir: str) -> Any:
    """The PyTorch inference toolkit's default_model_fn: load the TorchScript model file of MODEL_DIR."""
    import torch

    path = model_file(model_dir)
    if path is None:
        raise UserError(
            f"no model_fn in the entry point and no TorchScript model file (model.pt, or one *.pt/*.pth) in "
            f"{model_dir}",
            hint="Add model_fn(model_dir) that loads what the training script saved, or save the model with "
            "torch.jit.save(torch.jit.script(model), os.path.join(SM_MODEL_DIR, 'model.pt')).",
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path} is not a TorchScript file ({first}); the default model_fn, like SageMaker's PyTorch "
            "inference toolkit, loads TorchScript only",
            hint="Add model_fn(model_dir) to the entry point (it rebuilds the network and loads the "
            "weights), or save the model with torch.jit.save.",
        ) from None


def toolkit_input_fn(data: bytes | str, content_type: str) -> Any:
    """JSON/CSV/NPY -> float32 torch tensor (the toolkit's default_input_fn); 415 for other types."""
    import torch

    from vizsla.serving.handler import media_type

    kind, _ = media_type(content_type)
    try:
        if kind == JSON_TYPE:
            array = np.asarray(load_json(data, f"{kind} body"), dtype=np.float32)
        elif kind == CSV_TYPE:
            text = data if isinstance(data, str) else data.decode("utf-8")
            array = np.genfromtxt(io.StringIO(text), dtype=np.float32, delimiter=",")
        elif kind == NPY_TYPE:
            raw = data.encode() if isinstance(data, str) else data
            array = np.load(io.BytesIO(raw), allow_pickle=False)  # never unpickle a request
        else:
            raise RequestError(
                415,
                f"unsupported Content-Type {content_type!r} for the default input_fn; send "
                f"{', '.join(ENCODABLE)} or define input_fn in the entry point",
            )
    except RequestError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise RequestError(400, f"cannot decode the {kind} body: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise RequestError(400, f"the {kind} body must hold numbers, got dtype {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def toolkit_predict_fn(data: Any, model: Any) -> Any:
    """model(data) under no_grad, in eval mode (the toolkit's default_predict_fn, on CPU)."""
    import torch

    with torch.no_grad():
        if hasattr(model, "eval"):
            model.eval()
        return model(data)


def toolkit_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    """Encode to the first Accept type we can write (missing or */* -> JSON); 406 when none fits."""
    from vizsla.serving.handler import media_type

    if hasattr(prediction, "detach"):
        prediction = prediction.detach().cpu().numpy()
    for part in (accept or "").split(","):
        kind, _ = media_type(part)
        if kind in ("", "*/*", "application/*", JSON_TYPE):
            return json.dumps(prediction, default=_tolist).encode(), JSON_TYPE
        if kind == CSV_TYPE:
            stream = io.StringIO()
            np.savetxt(stream, np.atleast_1d(np.asarray(prediction)), delimiter=",", fmt="%s")
            return stream.getvalue().encode(), CSV_TYPE
        if kind == NPY_TYPE:
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(prediction), allow_pickle=False)
            return buffer.getvalue(), NPY_TYPE
    raise RequestError(406, f"cannot answer with Accept {accept!r}; use one of {', '.join(ENCODABLE)}")


def _tolist(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable; define output_fn")
