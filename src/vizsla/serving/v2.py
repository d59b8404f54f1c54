"""Open Inference Protocol (KServe v2) REST payloads, with Triton's binary-tensor and classification
extensions.

Inputs: "image" (BYTES [-1]: encoded JPEG/PNG/WebP, base64 in JSON or raw in the binary extension, or the
whole body with Inference-Header-Content-Length: 0) or "input" (FP32 [-1,3,H,W], already preprocessed).
Output: "probabilities" (FP32 [-1,C]); with parameters.classification=K it becomes BYTES [-1,K] of
"<prob>:<index>:<label>" strings.
A request is held to that metadata: its input must carry one of those names, datatypes and shapes (400
naming what the model declares otherwise); BYTES data is base64 (400 otherwise, as on /invocations), in a
flat list or nested exactly as the shape says.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from typing import Any

import numpy as np

from vizsla.serving.errors import RequestError, load_json

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


def _describe(value: Any) -> str:
    """A short, safe rendering of a client's value for an error message (never a deep repr)."""
    if isinstance(value, str):
        return repr(value[:64])
    return type(value).__name__


def _declared(name: Any, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's declared input called NAME, or 400 naming the inputs it has."""
    for item in inputs:
        if item["name"] == name:
            return item
    known = " and ".join(f'"{i["name"]}" ({i["datatype"]} {i["shape"]})' for i in inputs)
    shown = _describe(name) if name is not None else "(none)"
    raise RequestError(
        400, f"unknown input name {shown}: this model's inputs are {known} (GET /v2/models/<name>)"
    )


def _check_shape(shape: Any, declared: dict[str, Any]) -> list[int]:
    """SHAPE as a list of ints, matching the declared shape (-1: any size), or 400."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise RequestError(400, "input shape must be a list of non-negative integers")
    want = declared["shape"]
    if len(shape) != len(want) or any(w != -1 and d != w for d, w in zip(shape, want, strict=False)):
        raise RequestError(
            400, f'input "{declared["name"]}" must have shape {want} (-1: any size), got {shape}'
        )
    return shape


def _bytes_elements(data: Any, shape: list[int]) -> list[Any]:
    """BYTES data in row-major order: a flat list, or lists nested exactly as SHAPE says; else 400."""
    if not isinstance(data, list):
        raise RequestError(400, "BYTES data must be a list of base64 strings")
    if not any(isinstance(item, list) for item in data):
        return data
    level, dims = [data], list(shape)
    while dims:  # one pass per dimension: every node at this depth must be a list of dims[0] items
        size = dims.pop(0)
        if any(not isinstance(node, list) or len(node) != size for node in level):
            raise RequestError(
                400, f"BYTES data is nested but its nesting does not match shape {shape}: send a flat list"
            )
        level = [item for node in level for item in node]
    if any(isinstance(item, list) for item in level):
        raise RequestError(
            400, f"BYTES data is nested deeper than shape {shape}: send a flat list of base64 strings"
        )
    return level


def _json_bytes_element(value: Any) -> bytes:
    if not isinstance(value, str):
        raise RequestError(400, f"BYTES data must be base64 strings (encoded images), got {_describe(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "BYTES data is not valid base64 (send each image base64-encoded)") from None


def _fp32_array(data: Any, shape: list[int], count: int) -> np.ndarray:
    """FP32 JSON data as an array of SHAPE: a flat list of numbers or lists nested exactly as SHAPE."""
    try:
        array = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError):
        raise RequestError(400, f"FP32 data must be numbers, flat or nested as shape {shape}") from None
    if array.ndim > 1 and list(array.shape) != shape:
        raise RequestError(400, f"FP32 data is nested as {list(array.shape)}, not as shape {shape}")
    if array.size != count:
        raise RequestError(400, f"input shape {shape} holds {count} elements but {array.size} were sent")
    return array.reshape(shape)


def parse_infer(
    body: bytes, header_length: str | None, inputs: list[dict[str, Any]]
) -> tuple[dict[str, Any], str, Any]:
    """(request JSON, input name, images as list[bytes] or an FP32 array) from an infer request body;
    INPUTS: the model's declared inputs (model_metadata's), which a request's input must match."""
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
    request = load_json(header, "inference request JSON")
    spec = request.get("inputs") if isinstance(request, dict) else None
    if not isinstance(spec, list) or len(spec) != 1 or not isinstance(spec[0], dict):
        raise RequestError(
            400, f'the request needs exactly one input: "{INPUT_IMAGE}" (BYTES) or "{INPUT_TENSOR}" (FP32)'
        )
    if "id" in request and not isinstance(request["id"], str):
        raise RequestError(400, f"the request id must be a string, got {_describe(request['id'])}")
    spec = spec[0]
    declared = _declared(spec.get("name"), inputs)
    name, datatype = declared["name"], spec.get("datatype")
    if datatype != declared["datatype"]:
        raise RequestError(
            400, f'input "{name}" must have datatype {declared["datatype"]}, not {_describe(datatype)}'
        )
    shape = _check_shape(spec.get("shape"), declared)
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError(400, "input parameters must be an object")
    raw = None
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise RequestError(400, "binary_data_size does not fit the binary data after the JSON header")
        raw = binary[:size]
    count = math.prod(shape)
    if datatype == "BYTES":
        images = (
            _split_bytes_elements(raw)
            if raw is not None
            else [_json_bytes_element(v) for v in _bytes_elements(spec.get("data", []), shape)]
        )
        if len(images) != count:
            raise RequestError(400, f"input shape {shape} holds {count} elements but {len(images)} were sent")
        return request, INPUT_IMAGE, images
    if raw is not None:
        if len(raw) != count * 4:
            raise RequestError(400, f"FP32 binary data has {len(raw)} bytes; shape {shape} needs {count * 4}")
        array = np.frombuffer(raw, dtype="<f4").reshape(shape)
    else:
        array = _fp32_array(spec.get("data", []), shape, count)
    return request, INPUT_TENSOR, np.ascontiguousarray(array, dtype=np.float32)


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
    if not isinstance(params, dict):
        raise RequestError(400, "request parameters must be an object")
    wanted = request.get("outputs") or [{"name": OUTPUT}]
    if not isinstance(wanted, list):
        raise RequestError(400, "outputs must be a list")
    default_binary = bool(params.get("binary_data_output", False))
    outputs, blobs = [], []
    for item in wanted:
        if not isinstance(item, dict) or item.get("name") != OUTPUT:
            shown = _describe(item.get("name") if isinstance(item, dict) else item)
            raise RequestError(400, f'unknown output {shown}: this model has one output, "{OUTPUT}"')
        item_params = item.get("parameters") or {}
        if not isinstance(item_params, dict):
            raise RequestError(400, "output parameters must be an object")
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
