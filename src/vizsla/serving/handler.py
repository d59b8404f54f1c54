"""The request pipeline with SageMaker's inference-toolkit names: model_fn, input_fn, predict_fn, output_fn.

A user's handler file (`--handler` / `--entry-point inference.py`) overrides any subset; each function may
take one extra trailing `context` argument (RequestContext), as in the toolkit, and a user's input_fn or
transform_fn gets JSON and CSV bodies as `str`, others as `bytes`, as the toolkit passes them. Defaults for a
vizsla model: images (JPEG/PNG/WebP), JSON with an image URL, base64 or instances, and NPY (never unpickled)
become a float32 batch [N,3,H,W] through the model's own eval transform; predictions are class probabilities
[N,C]; output: JSON top-k, all scores, NPY. For a script's own artefact (script mode) the defaults are the
PyTorch inference toolkit's (serving/toolkit.py) and model_fn is required.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import inspect
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vizsla.errors import UserError
from vizsla.serving.errors import RequestError, load_json

JSON_TYPE = "application/json"
NPY_TYPE = "application/x-npy"
IMAGE_TYPES = {"image/jpeg", "image/jpg", "image/png", "image/webp", "application/x-image"}
SNIFFED_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
ACCEPTED_TYPES = sorted(IMAGE_TYPES | {JSON_TYPE, NPY_TYPE})
HOOKS = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")
_BASE_ARITY = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4}


@dataclass
class RequestContext:
    """What a request's steps may need beyond the toolkit's arguments: labels, preprocessing, options."""

    labels: list[str]
    preprocessing: dict[str, Any]
    model_name: str
    topk: int = 5
    full: bool = False
    max_pixels: int = 40_000_000
    max_images: int = 64
    fetch_url: Callable[[str], bytes] | None = None
    transform: Callable[[Any], Any] | None = None
    draft_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """'Type/Sub; a=b' -> ('type/sub', {'a': 'b'}), lower-cased."""
    if not value:
        return "", {}
    head, *params = value.split(";")
    parsed = {}
    for param in params:
        key, _, val = param.partition("=")
        if key.strip():
            parsed[key.strip().lower()] = val.strip().strip('"').lower()
    return head.strip().lower(), parsed


def sniff(body: bytes) -> str | None:
    """The content type of BODY from its first bytes: the formats we accept, else None."""
    if body.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    if body.startswith(b"\x93NUMPY"):
        return NPY_TYPE
    if body.lstrip()[:1] in (b"{", b"["):
        return JSON_TYPE
    return None


# ---------------------------------------------------------------- decoding


def decode_to_array(data: bytes, context: RequestContext) -> np.ndarray:
    """Encoded JPEG/PNG/WebP bytes -> one preprocessed image (3,H,W); 415 for other formats, 400 if broken."""
    from vizsla.data.decode import BadImageError, decode_image

    kind = sniff(data)
    if kind not in ("image/jpeg", "image/png", "image/webp"):
        if not data:
            raise RequestError(400, "undecodable image: empty body")
        raise RequestError(415, "image format not accepted: send JPEG, PNG or WebP bytes")
    try:
        image = decode_image(data, max_pixels=context.max_pixels, draft_size=context.draft_size)
    except BadImageError as exc:
        raise RequestError(400, f"undecodable image: {exc.reason}", reason="bad_image") from None
    return pil_to_array(image, context)


def pil_to_array(image: Any, context: RequestContext) -> np.ndarray:
    """An RGB PIL image through the model's eval transform (the pixels training's transform makes)."""
    if context.transform is None:
        from vizsla.serving.preprocess import EvalTransform

        context.transform = EvalTransform(context.preprocessing)
    array = context.transform(image)
    return array if isinstance(array, np.ndarray) else array.numpy()


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise RequestError(400, "b64 must be a base64 string")
    try:
        return base64.b64decode(value.split(",", 1)[1] if value.startswith("data:") else value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "b64 is not valid base64") from None


def _json_instance(item: Any, context: RequestContext) -> np.ndarray:
    if isinstance(item, dict) and "b64" in item:
        return decode_to_array(_b64(item["b64"]), context)
    if isinstance(item, dict) and "url" in item:
        if context.fetch_url is None:
            raise RequestError(400, "image URL fetching is off on this server; send the image bytes or b64")
        if not isinstance(item["url"], str):
            raise RequestError(400, "url must be a string")
        return decode_to_array(context.fetch_url(item["url"]), context)
    if isinstance(item, str):
        return decode_to_array(_b64(item), context)
    if isinstance(item, list):
        try:
            array = np.asarray(item, dtype=np.float32)
        except (TypeError, ValueError):
            raise RequestError(400, "a numeric instance must be a nested list of numbers [3, H, W]") from None
        return _check_chw(array, context)
    raise RequestError(
        400, 'each instance must be {"b64": ...}, {"url": ...}, a base64 string or a [3,H,W] list'
    )


def _check_chw(array: np.ndarray, context: RequestContext) -> np.ndarray:
    size = [int(v) for v in context.preprocessing["input_size"]]
    if list(array.shape) != size:
        raise RequestError(400, f"a preprocessed image must have shape {size}, got {list(array.shape)}")
    if not np.isfinite(array).all():
        raise RequestError(400, "a preprocessed image holds NaN or infinite values")
    return array


def _decode_json(body: bytes, context: RequestContext) -> np.ndarray:
    payload = load_json(body)
    if isinstance(payload, dict) and "instances" in payload:
        items = payload["instances"]
    elif isinstance(payload, dict) and ("url" in payload or "b64" in payload):
        items = [payload]
    elif isinstance(payload, list):
        items = payload
    else:
        raise RequestError(400, 'JSON must be {"url": ...}, {"b64": ...} or {"instances": [...]}')
    if not isinstance(items, list) or not items:
        raise RequestError(400, "instances must be a non-empty list")
    _check_count(len(items), context)
    return np.stack([_json_instance(item, context) for item in items])


def _check_count(count: int, context: RequestContext) -> None:
    if count > context.max_images:
        raise RequestError(413, f"{count} images in one request; the limit is {context.max_images}")


def _decode_npy(body: bytes, context: RequestContext) -> np.ndarray:
    from PIL import Image

    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RequestError(400, f"invalid NPY payload (object arrays are refused): {exc}") from None
    if not isinstance(array, np.ndarray):
        raise RequestError(400, "NPY payload must hold one array, not an archive")
    if array.dtype == np.uint8:  # raw RGB images, HWC
        batch = array[None] if array.ndim == 3 else array
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise RequestError(
                400, f"a uint8 NPY image must be [H, W, 3] or [N, H, W, 3], got {list(array.shape)}"
            )
        _check_count(len(batch), context)
        if batch.shape[1] * batch.shape[2] > context.max_pixels:
            raise RequestError(400, "undecodable image: decompression bomb (too many pixels)")
        return np.stack([pil_to_array(Image.fromarray(image, "RGB"), context) for image in batch])
    if array.dtype.kind == "f":
        batch = array[None] if array.ndim == 3 else array
        if batch.ndim != 4:
            raise RequestError(
                400, f"a float NPY payload must be [3, H, W] or [N, 3, H, W], got {list(array.shape)}"
            )
        _check_count(len(batch), context)
        return np.stack([_check_chw(image.astype(np.float32), context) for image in batch])
    raise RequestError(
        400, f"NPY dtype {array.dtype} not accepted: send float32 [N,3,H,W] or uint8 [N,H,W,3]"
    )


def default_input_fn(body: bytes, content_type: str, context: RequestContext) -> np.ndarray:
    """Request body -> float32 batch [N,3,H,W]; the type is sniffed when absent or octet-stream."""
    kind, _ = media_type(content_type)
    if kind in SNIFFED_TYPES:
        kind = sniff(body) or ""
        if not kind:
            raise RequestError(
                415, f"cannot tell the payload type; set Content-Type to one of {', '.join(ACCEPTED_TYPES)}"
            )
    if kind in IMAGE_TYPES:
        return decode_to_array(body, context)[None]
    if kind == JSON_TYPE:
        return _decode_json(body, context)
    if kind == NPY_TYPE:
        return _decode_npy(body, context)
    raise RequestError(
        415, f"unsupported Content-Type {content_type!r}; use one of {', '.join(ACCEPTED_TYPES)}"
    )


# ---------------------------------------------------------------- predicting and encoding


def default_model_fn(model_dir: str) -> Any:
    """Overridden by the server with the configured runtime; standalone it loads the model on ONNX Runtime."""
    from vizsla.serving.runtime import load_served_model

    return load_served_model(model_dir)


def default_predict_fn(data: Any, model: Any, context: RequestContext | None = None) -> np.ndarray:
    """Probabilities [N,C] from a served model, a torch module (softmaxed logits) or any callable."""
    from vizsla.serving.runtime import ServedModel, softmax

    if isinstance(model, ServedModel):
        try:
            return model.predict(np.asarray(data, dtype=np.float32))
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
    import torch

    if isinstance(model, torch.nn.Module):
        with torch.inference_mode():
            tensor = (
                data if isinstance(data, torch.Tensor) else torch.from_numpy(np.asarray(data, np.float32))
            )
            return softmax(model.eval()(tensor).float().numpy())
    return model(data)


def top_k(scores: np.ndarray, labels: list[str], k: int) -> list[dict[str, Any]]:
    """The K best classes of one score row, best first."""
    order = np.argsort(-scores, kind="stable")[: max(1, min(k, len(scores)))]
    return [
        {"label": labels[i] if i < len(labels) else str(i), "index": int(i), "probability": float(scores[i])}
        for i in order
    ]


def predictions_json(scores: np.ndarray, context: RequestContext) -> dict[str, Any]:
    """The JSON body: per image the top-1, the top-k and (full) every score in label order."""
    rows = []
    for row in np.asarray(scores, dtype=np.float32).reshape(len(scores), -1):
        best = top_k(row, context.labels, context.topk)
        item: dict[str, Any] = {
            "label": best[0]["label"],
            "probability": best[0]["probability"],
            "topk": best,
        }
        if context.full:
            item["scores"] = [float(v) for v in row]
        rows.append(item)
    body: dict[str, Any] = {"model": context.model_name, "predictions": rows}
    if context.full:
        body["labels"] = list(context.labels)
    return body


def negotiate(accept: str | None, context: RequestContext) -> str:
    """The response type for ACCEPT (first supported wins; missing or */* -> JSON); 406 when none fits."""
    for part in (accept or "").split(",") or [""]:
        kind, params = media_type(part)
        if kind in ("", "*/*", "application/*", JSON_TYPE):
            if params.get("verbose") == "full":
                context.full = True
            return JSON_TYPE
        if kind == NPY_TYPE:
            return NPY_TYPE
    raise RequestError(
        406, f"cannot answer with Accept {accept!r}; use application/json or application/x-npy"
    )


def default_output_fn(prediction: Any, accept: str, context: RequestContext) -> tuple[bytes, str]:
    """Probabilities -> JSON (top-k, or all scores with verbose=full) or NPY float32 [N,C]."""
    kind = negotiate(accept, context)
    scores = np.asarray(prediction, dtype=np.float32)
    if kind == NPY_TYPE:
        buffer = io.BytesIO()
        np.save(buffer, scores, allow_pickle=False)
        return buffer.getvalue(), NPY_TYPE
    return json.dumps(predictions_json(scores, context)).encode(), JSON_TYPE


# ---------------------------------------------------------------- user overrides


def resolve_entry_point(path: Path, source_dir: Path | None = None) -> Path:
    """The handler file: a relative entry point is looked up in SOURCE_DIR first (SageMaker's code/)."""
    path = Path(path).expanduser()
    if source_dir is not None and not path.is_absolute():
        source = Path(source_dir).expanduser()
        if not source.is_dir():
            raise UserError(f"source dir not found: {source}")
        if (source / path).is_file() or not path.is_file():
            path = source / path
    return path.resolve()


def load_user_module(path: Path, source_dir: Path | None = None) -> Any:
    """Import a handler file by path; its folder and SOURCE_DIR join sys.path, as SageMaker's code/ does."""
    path = resolve_entry_point(path, source_dir)
    if not path.is_file():
        raise UserError(f"handler file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"vizsla_user_handler_{abs(hash(str(path)))}", path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import handler file {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    from vizsla.scriptmode.environment import prepare_handler_process

    prepare_handler_process()  # smdebug / sagemaker importable, this interpreter's bin first on PATH
    folders = [path.parent] + ([Path(source_dir).expanduser().resolve()] if source_dir else [])
    for folder in reversed(folders):  # first on sys.path, even when an earlier handler put it further down
        if str(folder) in sys.path:
            sys.path.remove(str(folder))
        sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UserError(f"handler file {path} failed to import: {type(exc).__name__}: {exc}") from None
    return module


def _takes_context(name: str, fn: Callable[..., Any], source: str) -> bool:
    base = _BASE_ARITY[name]
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > base + 1 or len(positional) < base:
        raise UserError(
            f"{name} in {source} must take {base} arguments (or {base + 1} with context), "
            f"it takes {len(positional)}"
        )
    return len(positional) >= base + 1


class Handler:
    """The four steps, defaults replaced by a user file's functions where it defines them.

    SCRIPT: the model is a script's own artefact, so the defaults are the inference toolkit's (its
    model_fn loads a TorchScript model.pt; anything else needs the file's own model_fn).
    """

    def __init__(
        self, path: Path | None = None, *, source_dir: Path | None = None, script: bool = False
    ) -> None:
        self.source = str(path) if path else "vizsla defaults"
        self.script = script
        defaults = (
            _script_defaults()
            if script
            else {
                "model_fn": default_model_fn,
                "input_fn": default_input_fn,
                "predict_fn": default_predict_fn,
                "output_fn": default_output_fn,
                "transform_fn": None,
            }
        )
        self.custom: set[str] = set()
        module = load_user_module(path, source_dir) if path else None
        self.fns: dict[str, Callable[..., Any] | None] = {}
        self.with_context: dict[str, bool] = {}
        for name in HOOKS:
            fn = getattr(module, name, None) if module is not None else None
            if fn is not None:
                if not callable(fn):
                    raise UserError(f"{name} in {self.source} is not a function")
                self.custom.add(name)
                self.with_context[name] = _takes_context(name, fn, self.source)
            else:
                fn = defaults[name]
                self.with_context[name] = fn is not None and name != "model_fn" and not script
            self.fns[name] = fn
        if "transform_fn" in self.custom and self.custom & {"input_fn", "predict_fn", "output_fn"}:
            raise UserError(
                f"{self.source} defines transform_fn together with input_fn/predict_fn/output_fn; "
                "define either transform_fn or the others"
            )

    @property
    def default_predict(self) -> bool:
        return "predict_fn" not in self.custom and "transform_fn" not in self.custom

    def _call(self, name: str, args: tuple[Any, ...], context: RequestContext) -> Any:
        fn = self.fns[name]
        assert fn is not None
        return fn(*args, context) if self.with_context[name] else fn(*args)

    def model(self, model_dir: str, context: RequestContext | None = None) -> Any:
        fn = self.fns["model_fn"]
        assert fn is not None
        return fn(model_dir, context) if self.with_context["model_fn"] else fn(model_dir)

    def input(self, body: bytes, content_type: str, context: RequestContext) -> Any:
        from vizsla.serving.toolkit import body_for_user

        data = body_for_user(body, content_type) if "input_fn" in self.custom else body
        return self._call("input_fn", (data, content_type), context)

    def predict(self, data: Any, model: Any, context: RequestContext) -> Any:
        return self._call("predict_fn", (data, model), context)

    def _toolkit_accept(self, name: str, accept: str) -> str:
        """A script's or user's handler gets the toolkit's Accept (missing or */* -> the default accept)."""
        if self.script or name in self.custom:
            from vizsla.serving.toolkit import resolve_accept

            return resolve_accept(accept)
        return accept

    def output(self, prediction: Any, accept: str, context: RequestContext) -> tuple[bytes, str]:
        """The response body and type; a plain return value is sent with the negotiated (or JSON) type."""
        accept = self._toolkit_accept("output_fn", accept)
        result = self._call("output_fn", (prediction, accept), context)
        return as_response(result, accept)

    def transform(
        self, model: Any, body: bytes, content_type: str, accept: str, context: RequestContext
    ) -> tuple[bytes, str]:
        from vizsla.serving.toolkit import body_for_user

        accept = self._toolkit_accept("transform_fn", accept)
        data = body_for_user(body, content_type)
        return as_response(self._call("transform_fn", (model, data, content_type, accept), context), accept)


def _script_defaults() -> dict[str, Callable[..., Any] | None]:
    from vizsla.serving import toolkit

    return {
        "model_fn": toolkit.toolkit_model_fn,
        "input_fn": toolkit.toolkit_input_fn,
        "predict_fn": toolkit.toolkit_predict_fn,
        "output_fn": toolkit.toolkit_output_fn,
        "transform_fn": None,
    }


def as_response(result: Any, accept: str) -> tuple[bytes, str]:
    """output_fn may return bytes, str, a JSON-able value, or (body, content_type) as in the toolkit."""
    content_type = None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], str):
        result, content_type = result
    if content_type is None:
        kind, _ = media_type((accept or "").split(",")[0])
        content_type = kind if kind and kind != "*/*" else JSON_TYPE
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result), content_type
    if isinstance(result, str):
        return result.encode(), content_type
    if isinstance(result, np.ndarray):
        result = result.tolist()
    return json.dumps(result).encode(), content_type
