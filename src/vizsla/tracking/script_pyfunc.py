"""A script job's model as an MLflow pyfunc: request bodies in, what the job's inference.py answers out.

SageMaker serves a script job's model folder (SM_MODEL_DIR) with the job's inference script: model_fn loads
whatever the training script saved, input_fn/predict_fn/output_fn turn a request body into an answer. This
pyfunc runs that same pipeline through `vizsla serve`'s Handler (script mode: the PyTorch inference
toolkit's defaults where the script defines none), so `runs:/<run id>/model` answers as the endpoint does.
The logged model holds the model folder, the inference code and `script_model.json` naming the entry point.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from vizsla.tracking.pyfunc_model import _no_warnings_shown

MODEL_ARTIFACT = "model_dir"  # the job's model folder (SM_MODEL_DIR), as model_fn receives it
CODE_ARTIFACT = "code"  # the inference code: the entry point and the modules beside it
MANIFEST_ARTIFACT = "script_model"  # script_model.json: which entry point (None: the toolkit's defaults)
BODY_COLUMN = "body"
CONTENT_TYPE_COLUMN = "content_type"
ACCEPT = "application/json"  # the answer the pyfunc asks output_fn for: JSON, decoded per row
PIP_REQUIREMENTS = ["torch", "numpy", "pandas"]
# The model as code (MLflow's "models from code"): the logged model holds this file, not a pickle of ours.
MODEL_CODE = """\
from mlflow.models import set_model

from vizsla.tracking.script_pyfunc import ScriptHandlerModel

set_model(ScriptHandlerModel())
"""


def signature() -> Any:
    """Input: the request body (binary) and, optionally, its content type; the output is the handler's."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    return ModelSignature(inputs=Schema([
        ColSpec(DataType.binary, BODY_COLUMN),
        ColSpec(DataType.string, CONTENT_TYPE_COLUMN, required=False),
    ]))


with _no_warnings_shown():  # MLflow warns that predict has no type hint; it has none on purpose

    class ScriptHandlerModel(mlflow.pyfunc.PythonModel):
        """The job's inference script (or the toolkit's defaults) over its model folder, one body a row."""

        def load_context(self, context: Any) -> None:
            from vizsla.serving.handler import Handler

            manifest = json.loads(Path(context.artifacts[MANIFEST_ARTIFACT]).read_text(encoding="utf-8"))
            self.model_dir = str(context.artifacts[MODEL_ARTIFACT])
            entry_point = manifest.get("entry_point")
            code = Path(context.artifacts[CODE_ARTIFACT]) if entry_point else None
            self.handler = Handler(code / entry_point if code else None, source_dir=code, script=True)
            self.model = self.handler.model(self.model_dir, self._context())

        # model_input has no type hint on purpose: MLflow would infer a signature from one and replace ours.
        def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> list[Any]:  # noqa: ANN001
            """One answer per body: output_fn's JSON decoded (text when output_fn answers another type)."""
            return [self._answer(body, content_type, index)
                    for index, (body, content_type) in enumerate(requests_of(model_input))]

        def _answer(self, body: bytes, content_type: str | None, index: int) -> Any:
            from vizsla.serving.errors import RequestError
            from vizsla.serving.handler import sniff

            context = self._context()
            kind = content_type or sniff(body) or "application/octet-stream"  # as batch transform sniffs
            try:
                answer, answer_type = invoke(self.handler, self.model, body, kind, context)
            except RequestError as exc:
                raise ValueError(f"request {index}: {exc.message} (HTTP {exc.status})") from None
            return decode_answer(answer, answer_type, index)

        def _context(self) -> Any:
            from vizsla.serving.handler import RequestContext

            return RequestContext(labels=[], preprocessing={}, model_name="model")


def invoke(handler: Any, model: Any, body: bytes, content_type: str, context: Any) -> tuple[bytes, str]:
    """The handler's steps for one body, as `vizsla serve` runs them: transform_fn, else input, predict,
    output; the answer's bytes and content type."""
    if "transform_fn" in handler.custom:
        return handler.transform(model, body, content_type, ACCEPT, context)
    data = handler.input(body, content_type, context)
    prediction = handler.predict(data, model, context)
    return handler.output(prediction, ACCEPT, context)


def decode_answer(answer: bytes, answer_type: str, index: int) -> Any:
    """A JSON answer decoded; another type's answer as UTF-8 text; ValueError for binary answers."""
    from vizsla.serving.handler import media_type

    kind, _ = media_type(answer_type)
    if kind == ACCEPT:
        try:
            return json.loads(answer)
        except ValueError:
            raise ValueError(f"request {index}: output_fn answered {answer_type} that is not JSON: "
                             f"{answer[:80]!r}") from None
    try:
        return answer.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"request {index}: output_fn answered binary {answer_type or 'data'} for Accept "
                         f"{ACCEPT}; make it return JSON") from None


def requests_of(model_input: Any) -> list[tuple[bytes, str | None]]:
    """(body, content type or None) pairs of any input the pyfunc takes: one body (bytes or text), a list
    of bodies, or a DataFrame with a `body` column and an optional `content_type` column."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if BODY_COLUMN not in model_input.columns:
            raise ValueError(f"the input DataFrame needs a {BODY_COLUMN!r} column (the request bodies); it "
                             f"has {list(model_input.columns)}")
        kinds = (model_input[CONTENT_TYPE_COLUMN] if CONTENT_TYPE_COLUMN in model_input.columns
                 else [None] * len(model_input))
        return [(_body(b, i), _kind(k)) for i, (b, k) in enumerate(zip(model_input[BODY_COLUMN], kinds,
                                                                         strict=True))]
    if isinstance(model_input, pd.Series):
        model_input = list(model_input)
    if isinstance(model_input, list | tuple):
        return [(_body(item, index), None) for index, item in enumerate(model_input)]
    return [(_body(model_input, 0), None)]


def _body(value: Any, index: int) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):  # a text body (JSON, CSV) as a Python caller writes it
        return value.encode("utf-8")
    raise ValueError(f"request {index}: a body must be bytes or text, not {type(value).__name__}")


def _kind(value: Any) -> str | None:
    """A content type cell: None for a missing one (NaN or None in a DataFrame), else its text."""
    return value if isinstance(value, str) and value.strip() else None
