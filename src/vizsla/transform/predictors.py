"""What turns inputs into records: the serving runtime in batches, or a user's inference.py one at a time.

Both split their work the same way: `prepare(item)` runs in the decode pool (read the bytes, and for a
vizsla model decode at the JPEG draft size and apply the model's own eval transform), `finish(items,
prepared)` runs where the model is and returns one Record per input, in order. A file that cannot be read
or decoded becomes a rejected Record with the reason; nothing an input holds stops the run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vizsla.errors import UserError
from vizsla.transform.sources import InputFile, Source
from vizsla.transform.spec import JSON_TYPE, TransformSpec
from vizsla.transform.store import Record

log = logging.getLogger("vizsla.transform")


class Rejected:
    """A prepare() outcome for a file that cannot be used: why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def read_bytes(source: Source, item: InputFile) -> bytes | Rejected:
    """The file's bytes, or why they cannot be read (a missing, unreadable or remote-failing file)."""
    try:
        return source.read(item.location)
    except Exception as exc:  # noqa: BLE001 - OSError or any cloud SDK's error: the file is listed, not fatal
        return Rejected(f"cannot read file: {getattr(exc, 'strerror', None) or exc}")


class ModelPredictor:
    """A vizsla model on the serving runtime (ONNX Runtime fp32 / int8, or torch), batch by batch."""

    def __init__(self, spec: TransformSpec, target: Path, threads: int) -> None:
        from vizsla.data.transforms import draft_size_for
        from vizsla.serving.handler import RequestContext
        from vizsla.serving.preprocess import EvalTransform
        from vizsla.serving.runtime import load_served_model

        self.served = load_served_model(target, runtime=spec.runtime, threads=threads)
        self.runtime = self.served.runtime
        labels = list(self.served.labels)
        self.labels = labels
        self.context = RequestContext(
            labels=labels, preprocessing=self.served.preprocessing, model_name=spec.name,
            topk=min(spec.top_k, len(labels)), full=spec.all_scores, max_pixels=spec.max_pixels,
        )
        self.transform = EvalTransform(self.served.preprocessing)
        self.draft_size = draft_size_for(self.served.preprocessing)
        self.max_pixels = spec.max_pixels
        self.all_scores = spec.all_scores

    def warm_up(self, batch_size: int) -> None:
        """One run at the batch size before timing starts: a runtime's first run at a shape plans and
        allocates for it (vizsla.serving.warmup), which no batch of inputs should pay."""
        height, width = self.served.input_hw
        self.served.predict(np.zeros((batch_size, 3, height, width), np.float32))

    def prepare(self, source: Source, item: InputFile) -> np.ndarray | Rejected:
        """Bytes -> the model's input (3,H,W) float32, as the endpoint makes it; or why not."""
        from vizsla.data.decode import BadImageError, decode_image

        data = read_bytes(source, item)
        if isinstance(data, Rejected):
            return data
        try:
            image = decode_image(data, max_pixels=self.max_pixels, draft_size=self.draft_size)
            return self.transform(image)
        except BadImageError as exc:
            return Rejected(exc.reason)
        except (ValueError, OSError, MemoryError) as exc:  # an image the eval transform cannot take
            return Rejected(f"cannot preprocess: {type(exc).__name__}: {exc}")

    def finish(self, items: Sequence[InputFile], prepared: Sequence[Any]) -> list[Record]:
        """One forward pass over the batch's good images; records in input order."""
        from vizsla.serving.handler import predictions_json

        good = [i for i, p in enumerate(prepared) if not isinstance(p, Rejected)]
        scores = self.served.predict(np.stack([prepared[i] for i in good])) if good else None
        rows = predictions_json(scores, self.context)["predictions"] if good else []
        by_index = dict(zip(good, rows, strict=True))
        records = []
        for index, item in enumerate(items):
            row = by_index.get(index)
            if row is None:
                records.append(Record(item.key, reason=prepared[index].reason))
                continue
            body = {"model": self.context.model_name, "predictions": [row]}
            if self.all_scores:
                body["labels"] = self.labels
            records.append(Record(item.key, row=row, out=json.dumps(body).encode()))
        return records

    def csv_header(self) -> list[str]:
        """path, then label_1, score_1 .. label_K, score_K, then (all scores) one column per class."""
        ranks = [f"{kind}_{r}" for r in range(1, self.context.topk + 1) for kind in ("label", "score")]
        return ["path", *ranks, *(f"score:{label}" for label in self.labels if self.all_scores)]

    def csv_cells(self, row: dict[str, Any]) -> list[Any]:
        cells: list[Any] = []
        for entry in row["topk"]:
            cells += [entry["label"], entry["probability"]]
        return cells + (list(row["scores"]) if self.all_scores else [])


class HandlerPredictor:
    """A model behind an inference.py (a script job's own artefact, or a vizsla model with overrides):
    `vizsla serve`'s handler and model loading, one record at a time (input_fn, predict_fn, output_fn)."""

    def __init__(self, spec: TransformSpec, target: Path, entry_point: Path | None,
                 source_dir: Path | None) -> None:
        from pydantic import ValidationError

        from vizsla.base_spec import format_validation_error
        from vizsla.serving.settings import ServeSettings
        from vizsla.serving.state import ServerState

        try:
            settings = ServeSettings(
                model_path=target, model_name=spec.name, runtime=spec.runtime, handler_path=entry_point,
                handler_source_dir=source_dir, max_pixels=spec.max_pixels, default_topk=spec.top_k,
            )
        except ValidationError as exc:
            raise UserError(format_validation_error(exc, "invalid transform option", one_line=True)) from None
        self.state = ServerState(settings)
        self.runtime = self.state.runtime
        self.spec = spec

    def warm_up(self, batch_size: int) -> None:
        """Nothing: a user's predict_fn runs one record at a time, as it would behind the endpoint."""

    def prepare(self, source: Source, item: InputFile) -> bytes | Rejected:
        return read_bytes(source, item)

    def finish(self, items: Sequence[InputFile], prepared: Sequence[Any]) -> list[Record]:
        return [
            Record(item.key, reason=body.reason) if isinstance(body, Rejected) else self._one(item, body)
            for item, body in zip(items, prepared, strict=True)
        ]

    def _one(self, item: InputFile, body: bytes) -> Record:
        """input_fn -> predict_fn -> output_fn (or transform_fn) on one file; a raise rejects only it."""
        from vizsla.serving.errors import RequestError
        from vizsla.serving.handler import sniff

        content_type = self.spec.content_type or sniff(body) or "application/octet-stream"
        query = {"topk": str(self.spec.top_k), **({"verbose": "full"} if self.spec.all_scores else {})}
        try:
            answer, answer_type = invoke(self.state, body, content_type, self.spec.accept,
                                         self.state.context(query))
        except RequestError as exc:
            return Record(item.key, reason=f"{exc.message} (HTTP {exc.status})")
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code failed on this input: list it, go on
            return Record(item.key, reason=f"{type(exc).__name__}: {exc}")
        row: dict[str, Any] = {"content_type": answer_type, "output": _readable(answer, answer_type)}
        return Record(item.key, row=row, out=answer)

    def csv_header(self) -> list[str]:
        return ["path", "content_type", "output"]

    def csv_cells(self, row: dict[str, Any]) -> list[Any]:
        output = row["output"]
        return [row["content_type"], output if isinstance(output, str) else json.dumps(output)]


def invoke(state: Any, body: bytes, content_type: str, accept: str, context: Any) -> tuple[bytes, str]:
    """ServerState.invoke without the event loop: the handler's steps, synchronously, for one request."""
    handler = state.handler
    if "transform_fn" in handler.custom:
        return handler.transform(state.model, body, content_type, accept, context)
    data = handler.input(body, content_type, context)
    prediction = handler.predict(data, state.model, context)
    return handler.output(prediction, accept, context)


def _readable(answer: bytes, answer_type: str) -> Any:
    """The answer for the predictions file: parsed JSON, else text, else its size."""
    if answer_type.split(";")[0].strip() == JSON_TYPE:
        try:
            return json.loads(answer)
        except ValueError:
            pass
    try:
        return answer.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(answer)} bytes of {answer_type}>"
