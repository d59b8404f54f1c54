"""A job's model as an MLflow pyfunc: images in (bytes, paths, arrays, a DataFrame of them), class scores out.

The pyfunc runs the ONNX model that serving runs (serving/runtime.py): a head-only job's backbone export
(the one its feature cache already made and checked) with the head in numpy, or the whole classifier's
export, both checked against torch when they were made. The logged folder holds the vizsla model folder
(config, labels, preprocessing, weights, so `vizsla serve` takes it as it is) with that export inside, and
`pyfunc.json` naming which runner to build: loading the pyfunc imports neither torch nor vizsla's trainer.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

IMAGE_COLUMN = "image"  # the input's one column: encoded image bytes (or a path, or a pixel array)
LABEL_COLUMN = "label"  # the output's top-1 class, beside one score column per class
MODEL_ARTIFACT = "vizsla_model"  # the name of the vizsla model folder among the pyfunc's artifacts
MANIFEST = "pyfunc.json"
MAX_PIXELS = 40_000_000  # decoded pixels per image, as `vizsla serve` allows by default
PIP_REQUIREMENTS = ["numpy", "pandas", "pillow", "onnxruntime", "safetensors"]
# The model as code (MLflow's "models from code"): the logged model holds this file, not a pickle of ours.
MODEL_CODE = """\
from mlflow.models import set_model

from vizsla.tracking.pyfunc_model import ImageClassifierModel

set_model(ImageClassifierModel())
"""


def prepare_model_folder(model_dir: Path, out: Path) -> dict[str, Any]:
    """Copy the vizsla model in MODEL_DIR and its checked ONNX export into OUT; returns the manifest.

    Raises ValueError when the model has no ONNX export that agrees with torch (serving then runs torch;
    a pyfunc on torch would need the trainer's whole stack, so none is logged)."""
    from vizsla.serving.runtime import load_served_model

    served = load_served_model(model_dir, runtime="onnx")
    onnx_path = served.check.get("reused_backbone") or served.check.get("onnx_path")
    if served.runtime != "onnx" or not onnx_path:
        raise ValueError(f"no ONNX export of {model_dir} agrees with torch ({served.check})")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "labels.json", "preprocessing.json", "model.safetensors"):
        if (served.model_dir / name).is_file():
            shutil.copy2(served.model_dir / name, out / name)
    runner = "composed" if served.check.get("reused_backbone") else "classifier"
    name = Path(onnx_path).name
    target = out / "onnx" / (f"backbone-{name}" if runner == "composed" else name)
    target.parent.mkdir(exist_ok=True)
    shutil.copy2(onnx_path, target)
    record = served.model_dir / "onnx" / "backbone.json"  # lets `vizsla serve` find the cached export
    if runner == "composed" and record.is_file():
        shutil.copy2(record, target.parent / record.name)
    manifest = {"runner": runner, "onnx": target.relative_to(out).as_posix(), "labels": served.labels,
                "preprocessing": served.preprocessing, "check": _jsonable(served.check)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _jsonable(check: dict[str, Any]) -> dict[str, Any]:
    plain = (bool, int, float, str, type(None))
    return {k: v if isinstance(v, plain) else str(v) for k, v in check.items()}


def signature(labels: list[str]) -> Any:
    """Input: one binary column of images; output: a score column per class and the top-1 label."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    outputs = [ColSpec(DataType.float, str(label)) for label in labels]
    return ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, IMAGE_COLUMN)]),
        outputs=Schema([*outputs, ColSpec(DataType.string, LABEL_COLUMN)]),
    )


def input_example(image: bytes) -> Any:
    """A one-row DataFrame of IMAGE (encoded bytes): what `mlflow models serve` shows as its example."""
    import pandas as pd

    return pd.DataFrame({IMAGE_COLUMN: [image]})


def example_image(preprocessing: dict[str, Any], path: Path | None) -> bytes:
    """A small JPEG for the input example: PATH (one of the job's images) shrunk to the model's input
    size, or a grey image when there is none or it cannot be read."""
    from PIL import Image

    size = [int(v) for v in preprocessing["input_size"]]
    try:
        image = Image.open(path).convert("RGB") if path else None
    except OSError:
        image = None
    if image is None:
        image = Image.new("RGB", (size[2], size[1]), (128, 128, 128))
    image.thumbnail((2 * size[2], 2 * size[1]))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@contextlib.contextmanager
def _no_warnings_shown() -> Iterator[None]:
    """Show no warning in the block: MLflow warns (under its own "once" filter, which filters cannot
    override) that predict has no type hint when the class is created; it has none on purpose."""
    shown = warnings.showwarning
    warnings.showwarning = lambda *args, **kwargs: None
    try:
        yield
    finally:
        warnings.showwarning = shown


with _no_warnings_shown():

    class ImageClassifierModel(mlflow.pyfunc.PythonModel):
        """Class scores of images on the model's ONNX export, with its own eval transform and labels."""

        def load_context(self, context: Any) -> None:
            from vizsla.serving.preprocess import EvalTransform

            root = Path(context.artifacts[MODEL_ARTIFACT])
            manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
            self.labels = [str(label) for label in manifest["labels"]]
            self.preprocessing = manifest["preprocessing"]
            self.transform = EvalTransform(self.preprocessing)
            self.runner = _create_runner(root, manifest)

        # model_input has no type hint on purpose: MLflow would infer a signature from one and replace ours.
        def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> Any:  # noqa: ANN001
            """A DataFrame: one float column of probabilities per label and `label`, the top-1 class."""
            import pandas as pd

            from vizsla.serving.runtime import softmax

            items = images_of(model_input)
            if not items:
                return pd.DataFrame(columns=[*self.labels, LABEL_COLUMN])
            batch = np.stack([self._preprocess(item, index) for index, item in enumerate(items)])
            scores = softmax(self.runner(np.ascontiguousarray(batch, dtype=np.float32)))
            frame = pd.DataFrame(scores.astype(np.float32), columns=self.labels)
            frame[LABEL_COLUMN] = [self.labels[i] for i in scores.argmax(axis=1)]
            return frame

        def _preprocess(self, item: Any, index: int) -> np.ndarray:
            """One image as the model's input (3, H, W): decoded and transformed, or checked when it already
            is a preprocessed float array."""
            height, width = self.transform.height, self.transform.width
            if isinstance(item, np.ndarray) and item.dtype.kind == "f":
                if item.shape != (3, height, width):
                    raise ValueError(f"image {index}: a float array must be preprocessed, of shape "
                                     f"[3, {height}, {width}]; got {list(item.shape)}")
                return item.astype(np.float32, copy=False)
            return self.transform(to_pil(item, index))


def _create_runner(root: Path, manifest: dict[str, Any]) -> Any:
    from vizsla.serving.runtime import OrtRunner

    onnx_file = root / manifest["onnx"]
    if manifest["runner"] == "composed":
        from vizsla.serving.composed import NumpyHead, composed_runner, read_json

        config = read_json(root / "config.json")
        return composed_runner(onnx_file, NumpyHead.from_model_dir(root, config))
    return OrtRunner(str(onnx_file))


def images_of(model_input: Any) -> list[Any]:
    """The images of any input the pyfunc takes: a DataFrame (its `image` column, else its first), a
    Series, a list, one image (bytes, path, PIL image) or an array (N images, or one H x W (x C) image)."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        column = IMAGE_COLUMN if IMAGE_COLUMN in model_input.columns else model_input.columns[0]
        return list(model_input[column])
    if isinstance(model_input, pd.Series):
        return list(model_input)
    if isinstance(model_input, dict) and IMAGE_COLUMN in model_input:
        return images_of(model_input[IMAGE_COLUMN])
    if isinstance(model_input, list | tuple):
        return list(model_input)
    if isinstance(model_input, np.ndarray):
        if model_input.dtype == object or model_input.ndim == 4:
            return list(model_input.reshape(-1) if model_input.dtype == object else model_input)
        return [model_input]
    return [model_input]


def to_pil(item: Any, index: int) -> Any:
    """An RGB PIL image from encoded bytes, a file path, base64 text, a uint8 pixel array or a PIL image."""
    from PIL import Image

    from vizsla.data.decode import BadImageError, decode_image

    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3):
            raise ValueError(f"image {index}: a pixel array must be uint8 H x W or H x W x 3/4, "
                             f"got {item.dtype} {list(item.shape)}")
        return Image.fromarray(item).convert("RGB")
    data = _image_bytes(item, index)
    try:
        return decode_image(data, max_pixels=MAX_PIXELS)
    except BadImageError as exc:
        raise ValueError(f"image {index}: undecodable image ({exc.reason})") from None


def _image_bytes(item: Any, index: int) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    if isinstance(item, Path) or (isinstance(item, str) and len(item) < 4096 and Path(item).is_file()):
        return Path(item).read_bytes()
    if isinstance(item, str):  # JSON carries bytes as base64 (`mlflow models serve` decodes most itself)
        try:
            return base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"image {index}: {item[:80]!r} is neither a file nor base64 image bytes"
            ) from None
    raise ValueError(f"image {index}: cannot read an image from a {type(item).__name__}")
