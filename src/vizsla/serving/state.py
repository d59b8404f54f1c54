"""The state one served model shares across requests: settings, handler, model, pools, batcher, metrics.

`ServerState(settings)` loads the handler and the model (a vizsla model folder without torch, or a script's
own artefact through its model_fn) and runs every request's pipeline: decode in a thread pool, predict
through the dynamic batcher or the user's predict_fn, encode, all under the request timeout. The routers
in serving/routers/ reach it through `request.app.state.vizsla`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from vizsla.errors import UserError
from vizsla.serving import v2
from vizsla.serving.batching import DynamicBatcher
from vizsla.serving.errors import RequestError
from vizsla.serving.handler import Handler, RequestContext
from vizsla.serving.metrics import ServingMetrics
from vizsla.serving.runtime import ServedModel, load_served_model
from vizsla.serving.security import UrlFetcher
from vizsla.serving.settings import ServeSettings
from vizsla.serving.toolkit import has_model_file, is_vizsla_model, resolve_artefact_dir
from vizsla.serving.warmup import WarmUp, warm_up_now

# answers of up to this many scores are encoded on the event loop (~0.1 ms), larger ones in the pool
INLINE_ENCODE_VALUES = 4096

log = logging.getLogger("vizsla.serving")


class ServerState:
    """Everything a request needs: settings, handler, model, pools, batcher, metrics."""

    def __init__(self, settings: ServeSettings) -> None:
        from vizsla.data.transforms import draft_size_for
        from vizsla.infra.hardware import available_cores
        from vizsla.serving.preprocess import EvalTransform

        self.settings = settings
        log.info("loading the model from %s (runtime %s)", settings.model_path, settings.runtime)
        # A script's own artefact (served by the inference toolkit's rules): an entry point was given, or
        # the folder holds a TorchScript model.pt rather than a vizsla model.
        self.script = not is_vizsla_model(settings.model_path) and (
            settings.handler_path is not None or has_model_file(settings.model_path)
        )
        self.handler = Handler(
            settings.handler_path, source_dir=settings.handler_source_dir, script=self.script
        )
        self.labels: list[str] = []
        self.preprocessing: dict[str, Any] = {}
        self.model = self.load_model()
        self.runtime = self.model.runtime if isinstance(self.model, ServedModel) else "custom"
        self.v2_inputs: list[dict[str, Any]] = []  # the inputs v2 metadata declares; a request names one
        if not self.script:
            metadata = v2.model_metadata(settings.model_name, self.labels, self.preprocessing, self.runtime)
            self.v2_inputs = metadata["inputs"]
        self.transform = None if self.script else EvalTransform(self.preprocessing)
        self.draft_size = None if self.script else draft_size_for(self.preprocessing)
        self.fetcher = _url_fetcher(settings)
        self.decode_pool = ThreadPoolExecutor(
            settings.decode_threads or available_cores(), thread_name_prefix="vizsla-decode"
        )
        self.infer_pool = ThreadPoolExecutor(1, thread_name_prefix="vizsla-infer")
        self.metrics = ServingMetrics()
        self.batcher: DynamicBatcher | None = None
        self.decoding = 0  # requests in input_fn now: the batcher waits for them only
        self.inline_output = not self.script and "output_fn" not in self.handler.custom
        self.ready = False
        self.warm_up: WarmUp | None = None
        if isinstance(self.model, ServedModel):  # no request pays the runtime's first run at its batch size
            log.info("warming up %s at batch sizes up to %d", self.model.runtime, settings.max_batch_size)
            self.warm_up = warm_up_now(self.model.predict, self.model.input_hw, settings.max_batch_size)

    def load_model(self) -> Any:
        """The model to serve; sets model_dir, and labels and preprocessing from its config."""
        settings = self.settings
        if self.script:  # a script's own artefact: its model_fn loads whatever it saved
            self.model_dir = resolve_artefact_dir(settings.model_path)
        else:
            self.model_dir, config = _model_dir_and_config(settings.model_path)
            self.labels = list(config["labels"])
            self.preprocessing = dict(config["preprocessing"])
        if self.script or "model_fn" in self.handler.custom:
            model = self.load_user_model()
        else:
            model = load_served_model(
                self.model_dir,
                runtime=settings.runtime,
                threads=settings.inference_threads,
                check_inputs=settings.onnx_check_inputs,
            )
        if isinstance(model, ServedModel):
            self.labels, self.preprocessing = model.labels, model.preprocessing
        return model

    def load_user_model(self) -> Any:
        """The entry point's model_fn(model_dir); a failure is a user error, without a traceback."""
        context = RequestContext(
            labels=self.labels, preprocessing=self.preprocessing, model_name=self.settings.model_name
        )
        try:
            return self.handler.model(str(self.model_dir), context)
        except UserError:  # the default model_fn's own message
            raise
        except Exception as exc:
            raise UserError(
                f"model_fn in {self.handler.source} failed on {self.model_dir}: {type(exc).__name__}: {exc}",
                hint="model_dir is the folder the training script saved into (SM_MODEL_DIR).",
            ) from None

    @property
    def batchable(self) -> bool:
        return self.handler.default_predict and isinstance(self.model, ServedModel)

    def context(self, query: dict[str, str]) -> RequestContext:
        """A request's context; `?topk=K` and `?verbose=full` (or `?full=true`) shape the JSON answer."""
        topk = self.settings.default_topk
        if "topk" in query:
            try:
                topk = int(query["topk"])
            except ValueError:
                raise RequestError(400, "topk must be an integer") from None
            if topk < 1:
                raise RequestError(400, "topk must be at least 1")
        full = query.get("verbose", "").lower() == "full" or query.get("full", "").lower() in (
            "1",
            "true",
            "yes",
        )
        return RequestContext(
            labels=self.labels,
            preprocessing=self.preprocessing,
            model_name=self.settings.model_name,
            topk=min(topk, len(self.labels)) if self.labels else topk,
            full=full,
            max_pixels=self.settings.max_pixels,
            max_images=self.settings.max_images_per_request,
            fetch_url=self.fetcher,
            transform=self.transform,
            draft_size=self.draft_size,
        )

    async def in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.decode_pool, fn, *args)

    async def decode(self, fn: Callable[..., Any], *args: Any) -> Any:
        """FN in the pool, counted while it runs: a batch waits for requests still decoding, not in vain."""
        self.decoding += 1
        try:
            return await self.in_pool(fn, *args)
        finally:
            self.decoding -= 1

    async def predict(self, data: Any, context: RequestContext) -> Any:
        """Batched forward pass for our model and a standard batch; the user's predict_fn otherwise."""
        if self.batchable and isinstance(data, np.ndarray) and data.dtype == np.float32 and data.ndim == 4:
            assert isinstance(self.model, ServedModel) and self.batcher is not None
            height, width = self.model.input_hw
            if data.shape[1:] != (3, height, width):
                raise RequestError(
                    400, f"expected images of shape [3, {height}, {width}], got {list(data.shape[1:])}"
                )
            return await self.batcher.submit(data)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.infer_pool, self.handler.predict, data, self.model, context)

    async def invoke(
        self, body: bytes, content_type: str, accept: str, context: RequestContext
    ) -> tuple[bytes, str]:
        """input_fn -> predict_fn -> output_fn (or the user's transform_fn) for one request."""
        if "transform_fn" in self.handler.custom:
            return await self.in_pool(self.handler.transform, self.model, body, content_type, accept, context)
        data = await self.decode(self.handler.input, body, content_type, context)
        prediction = await self.predict(data, context)
        small = isinstance(prediction, np.ndarray) and prediction.size <= INLINE_ENCODE_VALUES
        if self.inline_output and small:  # a hop to the pool and back costs more than encoding it here
            return self.handler.output(prediction, accept, context)
        return await self.in_pool(self.handler.output, prediction, accept, context)

    async def with_timeout(self, work: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                return await work
        except TimeoutError:
            raise RequestError(
                504, f"inference did not finish within {self.settings.request_timeout_s:g} s"
            ) from None

    def shutdown_pools(self) -> None:
        self.decode_pool.shutdown(wait=True, cancel_futures=False)
        self.infer_pool.shutdown(wait=True, cancel_futures=False)


def _model_dir_and_config(path: Path) -> tuple[Path, dict[str, Any]]:
    """The model folder and its config.json, read without torch; vizsla.models.io names any problem."""
    from vizsla.serving.composed import CONFIG_FILE, find_model_dir, read_json

    model_dir = find_model_dir(path)
    config = read_json(model_dir / CONFIG_FILE) if model_dir is not None else None
    if model_dir is None or not isinstance(config, dict) or not {"labels", "preprocessing"} <= set(config):
        from vizsla.models.io import read_config, resolve_model_dir

        model_dir = resolve_model_dir(path)
        config = read_config(model_dir)
    return model_dir, config


def _url_fetcher(settings: ServeSettings) -> UrlFetcher | None:
    """The fetcher of `{"url": ...}` payloads when the settings allow URL fetching, else None."""
    if not settings.allow_url_fetch:
        return None
    return UrlFetcher(
        allow_hosts=settings.url_allow_hosts,
        allow_private=settings.url_allow_private,
        max_bytes=settings.url_max_bytes,
        timeout_s=settings.url_timeout_s,
    )
