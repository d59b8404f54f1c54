"""LitServe peer of bench_serving.py: the same ONNX model, the same pixels, LitServe's own batching.

Runs in its own virtual environment (litserve 0.2.x, onnxruntime, pillow, numpy; neither vizsla nor torch),
made by bench_serving.py on first use, with the settings bench_serving.py writes to a JSON file:

    <peer venv>/bin/python benchmarks/peers/litserve_server.py CONFIG.json

CONFIG: model (an ONNX file: images [N,3,H,W] -> logits), labels, input_hw, resize (the eval resize: the
shorter side, or [H, W]), interpolation, mean, std, draft_size, max_batch_size, batch_timeout (s), port,
threads (ONNX Runtime intra-op threads), fast_queue, decode ("parallel" or "request").

Tuned as a performance-minded LitServe user would: one inference worker, LitServe's dynamic batching
(max_batch_size as ours, batch_timeout 2 ms), ZeroMQ between the API server and the worker (fast_queue),
with decode "parallel" the images of a batch decoded in parallel threads (Pillow releases the GIL) rather
than one by one in decode_request (decode "request": LitServe's usual pattern), the ONNX Runtime session set
up as ours (every core, no spinning, all graph optimisations), and the preprocessing of `vizsla serve`:
Pillow decode with JPEG draft mode, EXIF orientation, resize, centre crop, a per-channel lookup table for
scale + normalize. POST /invocations takes the JPEG bytes and answers ours' JSON shape:
{"model", "predictions": [{"label", "probability", "topk": [...]}]}.
"""

import io
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import litserve as ls
import numpy as np
from fastapi import Body, HTTPException
from PIL import Image, ImageOps

# torchvision InterpolationMode value -> Pillow filter, as torchvision maps them
FILTERS = {
    "nearest": 0,
    "nearest-exact": 0,
    "lanczos": 1,
    "bilinear": 2,
    "bicubic": 3,
    "box": 4,
    "hamming": 5,
}
TOPK = 5


class Preprocess:
    """JPEG bytes -> float32 (3, H, W): decode (draft), resize, centre crop, normalise by lookup table."""

    def __init__(self, config: dict) -> None:
        self.height, self.width = config["input_hw"]
        self.resize = config["resize"]
        self.resample = FILTERS[config["interpolation"]]
        self.draft = int(config["draft_size"])
        offset = np.asarray([255.0 * m for m in config["mean"]], np.float32)[:, None]
        scale = np.asarray([1.0 / (255.0 * s) for s in config["std"]], np.float32)[:, None]
        self.table = (np.arange(256, dtype=np.float32)[None, :] - offset) * scale  # (pixel/255 - mean) / std

    def _size(self, height: int, width: int) -> tuple[int, int]:
        if isinstance(self.resize, list):
            return int(self.resize[0]), int(self.resize[1])
        short, long = min(height, width), max(height, width)
        new_long = int(self.resize * long / short)
        return (new_long, self.resize) if width <= height else (self.resize, new_long)

    def __call__(self, data: bytes) -> np.ndarray:
        image = Image.open(io.BytesIO(data))
        if image.format in ("JPEG", "MPO") and min(image.size) >= 2 * self.draft:
            image.draft("RGB", (self.draft, self.draft))
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        new_h, new_w = self._size(image.height, image.width)
        if (new_h, new_w) != (image.height, image.width):
            image = image.resize((new_w, new_h), resample=self.resample)
        top = int(round((image.height - self.height) / 2.0))
        left = int(round((image.width - self.width) / 2.0))
        image = image.crop((left, top, left + self.width, top + self.height))
        pixels = np.asarray(image)
        out = np.empty((3, self.height, self.width), np.float32)
        for channel in range(3):
            np.take(self.table[channel], pixels[:, :, channel], out=out[channel])
        return out


class ClassifierAPI(ls.LitAPI):
    """One ONNX Runtime session; a batch's images are decoded in parallel, then one forward pass."""

    def __init__(self, config: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config

    def setup(self, device: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.config["threads"])
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(self.config["model"], options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.labels = list(self.config["labels"])
        self.preprocess = Preprocess(self.config)
        self.pool = ThreadPoolExecutor(int(self.config["threads"]), thread_name_prefix="decode")
        warm = np.zeros((1, 3, *self.config["input_hw"]), np.float32)
        self.session.run(None, {self.input_name: warm})

    def decode_request(self, request: Annotated[bytes, Body(media_type="image/jpeg")]):
        if not request:
            raise HTTPException(400, "empty body")
        if self.config.get("decode") == "request":
            try:
                return self.preprocess(request)
            except Exception as exc:  # any undecodable body is the client's fault
                raise HTTPException(400, f"cannot decode image: {exc}") from None
        return request  # decoded in predict, the batch's images in parallel

    def batch(self, inputs: list) -> list:
        return inputs

    def predict(self, x: list) -> list:
        if self.config.get("decode") == "request":
            images = np.stack(x)
        else:
            try:
                images = np.stack(list(self.pool.map(self.preprocess, x)))
            except Exception as exc:  # one undecodable image fails its batch
                raise HTTPException(400, f"cannot decode image: {exc}") from None
        logits = np.asarray(self.session.run(None, {self.input_name: images})[0], np.float32)
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return list(exp / exp.sum(axis=1, keepdims=True))

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: np.ndarray) -> dict:
        order = np.argsort(-output, kind="stable")[: min(TOPK, len(output))]
        top = [{"label": self.labels[i], "index": int(i), "probability": float(output[i])} for i in order]
        return {
            "model": "litserve",
            "predictions": [{"label": top[0]["label"], "probability": top[0]["probability"], "topk": top}],
        }


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        config = json.load(handle)
    api = ClassifierAPI(
        config,
        max_batch_size=int(config["max_batch_size"]),
        batch_timeout=float(config["batch_timeout"]),
        api_path="/invocations",
    )
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=1,
        timeout=60,
        fast_queue=bool(config.get("fast_queue", True)),
        disable_openapi_url=True,
    )
    os.environ.setdefault("LITSERVE_LOG_LEVEL", "WARNING")
    server.run(
        host="127.0.0.1",
        port=int(config["port"]),
        num_api_servers=1,
        generate_client_file=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
