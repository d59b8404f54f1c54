"""Open Inference Protocol (KServe v2) REST payloads, with Triton's binary-tensor and classification
extensions.

Inputs: "image" (BYTES [-1]: encoded JPEG/PNG/WebP, base64 in JSON or raw in the binary extension, or the
whole body with Inference-Header-Content-Length: 0) or "input" (FP32 [-1,3,H,W], already preprocessed).
Output: "probabilities" (FP32 [-1,C]); with parameters.classification=K it becomes BYTES [-1,K] of
"<prob>:<index>:<label>" strings.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

import numpy as np

from vizsla.serving.errors import RequestError

INPUT_IMAGE = "image"
INPUT_TENSOR = "input"
OUTPUT = "probabilities"
HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ["binary_tensor_data", "classification"]


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "vizsla", "version": version, "extensions": EXTENSIONS}


def model_metadata(
    name: str, labels: list[str], preprocessing: dict[str, Any], runtime: str
) -> dict[str, Any]:
    """Inputs, outputs and platform of the served model, variable batch dims as -1."""
    _, height, width = (int(v) for v in preprocessing["input_size"])
    return {
        "name": name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx" if runtime.startswith("onnx") else "pytorch_torch",
        "inputs": [
            {"name": INPUT_IMAGE, "datatype": "BYTES", "shape": [-1]},
            {"name": INPUT_TENSOR, "datatype": "FP32", "shape": [-1, 3, height, width]},
        ],
        "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, len(labels)]}],
        "parameters": {"labels": json.dumps(labels)},
    }


def _split_bytes_elements(raw: bytes) -> list[bytes]:
    """Triton BYTES tensor: each element is a 4-byte little-endian length, then that many bytes."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise RequestError(400, "truncated BYTES element length in binary data")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise RequestError(400, "truncated BYTES element in binary data")
        items.append(raw[offset : offset + length])
        offset += length
    return items


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [leaf for item in data for leaf in _flatten(item)]
    return [data]


def _json_bytes_element(value: Any, params: dict[str, Any]) -> bytes:
    if not isinstance(value, str):
        raise RequestError(400, "BYTES data must be strings (base64-encoded images)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        if params.get("content_type") == "base64":
            raise RequestError(400, "BYTES data is not valid base64") from None
        return value.encode("utf-8")


def parse_infer(body: bytes, header_length: str | None) -> tuple[dict[str, Any], str, Any]:
    """(request JSON, input name, images as list[bytes] or an FP32 array) from an infer request body."""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise RequestError(400, f"{HEADER_LENGTH} must be an integer") from None
        if size < 0 or size > len(body):
            raise RequestError(400, f"{HEADER_LENGTH} {size} does not fit a {len(body)}-byte body")
        if size == 0:  # raw binary request: the body is the one image
            return {"parameters": {"binary_data_output": True}}, INPUT_IMAGE, [body]
        header, binary = body[:size], body[size:]
    else:
        header, binary = body, b""
    try:
        request = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"invalid inference request JSON: {exc}") from None
    inputs = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(
            400, f'the request needs exactly one input: "{INPUT_IMAGE}" (BYTES) or "{INPUT_TENSOR}" (FP32)'
        )
    spec = inputs[0]
    name, datatype = spec.get("name"), spec.get("datatype")
    shape = spec.get("shape")
    params = spec.get("parameters") or {}
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise RequestError(400, "input shape must be a list of non-negative integers")
    raw = None
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise RequestError(400, "binary_data_size does not fit the binary data after the JSON header")
        raw = binary[:size]
    count = int(np.prod(shape)) if shape else 1
    if name == INPUT_IMAGE or (datatype == "BYTES" and name != INPUT_TENSOR):
        if datatype != "BYTES":
            raise RequestError(400, f'input "{INPUT_IMAGE}" must have datatype BYTES, not {datatype}')
        images = (
            _split_bytes_elements(raw)
            if raw is not None
            else [_json_bytes_element(v, params) for v in _flatten(spec.get("data", []))]
        )
        if len(images) != count:
            raise RequestError(400, f"input shape {shape} holds {count} elements but {len(images)} were sent")
        return request, INPUT_IMAGE, images
    if name == INPUT_TENSOR or datatype == "FP32":
        if datatype != "FP32":
            raise RequestError(400, f'input "{INPUT_TENSOR}" must have datatype FP32, not {datatype}')
        if raw is not None:
            if len(raw) != count * 4:
                raise RequestError(
                    400, f"FP32 binary data has {len(raw)} bytes; shape {shape} needs {count * 4}"
                )
            array = np.frombuffer(raw, dtype="<f4").reshape(shape)
        else:
            try:
                array = np.asarray(_flatten(spec.get("data", [])), dtype=np.float32)
            except (TypeError, ValueError):
                raise RequestError(400, "FP32 data must be numbers") from None
            if array.size != count:
                raise RequestError(
                    400, f"input shape {shape} holds {count} elements but {array.size} were sent"
                )
            array = array.reshape(shape)
        return request, INPUT_TENSOR, np.ascontiguousarray(array, dtype=np.float32)
    raise RequestError(400, f'unknown input {name!r}: use "{INPUT_IMAGE}" (BYTES) or "{INPUT_TENSOR}" (FP32)')


def _classification(scores: np.ndarray, labels: list[str], k: int) -> list[str]:
    rows = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[: max(1, min(k, len(row)))]
        rows.extend(f"{row[i]:.6f}:{int(i)}:{labels[i]}" for i in order)
    return rows


def build_response(
    request: dict[str, Any], scores: np.ndarray, labels: list[str], model_name: str
) -> tuple[bytes, dict[str, str]]:
    """The infer response (JSON, or JSON header + binary tensors when asked) and its headers."""
    params = request.get("parameters") or {}
    wanted = request.get("outputs") or [{"name": OUTPUT}]
    if not isinstance(wanted, list):
        raise RequestError(400, "outputs must be a list")
    default_binary = bool(params.get("binary_data_output", False))
    outputs, blobs = [], []
    for item in wanted:
        if not isinstance(item, dict) or item.get("name") != OUTPUT:
            raise RequestError(400, f'unknown output {item!r}: this model has one output, "{OUTPUT}"')
        item_params = item.get("parameters") or {}
        binary = bool(item_params.get("binary_data", default_binary))
        k = item_params.get("classification")
        if k is not None:
            if not isinstance(k, int) or k < 1:
                raise RequestError(400, "classification must be a positive integer")
            strings = _classification(scores, labels, k)
            shape = [len(scores), min(k, len(labels))]
            out: dict[str, Any] = {"name": OUTPUT, "datatype": "BYTES", "shape": shape}
            if binary:
                blob = b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in strings)
            else:
                out["data"] = strings
        else:
            out = {"name": OUTPUT, "datatype": "FP32", "shape": list(scores.shape)}
            if binary:
                blob = np.ascontiguousarray(scores, dtype="<f4").tobytes()
            else:
                out["data"] = [float(v) for v in scores.reshape(-1)]
        if binary:
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        outputs.append(out)
    response: dict[str, Any] = {"model_name": model_name, "model_version": "1", "outputs": outputs}
    if "id" in request:
        response["id"] = request["id"]
    header = json.dumps(response).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
