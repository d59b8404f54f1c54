"""A real local endpoint for `deploy()`: Vizsla's server on a free loopback port, and its Predictor.

The server runs in a background thread of the notebook's process (the user's inference.py is imported
there, as the inference toolkit imports it in its worker); `predict` goes over HTTP to the same route
boto3's `invoke_endpoint` uses, so limits, status codes and ModelError behave as a deployed endpoint's.
Running endpoints are registered by name, so `Predictor(endpoint_name, sagemaker_session=...)` (and a
model's `predictor_cls`) finds them as the SDK's Predictor finds a SageMaker endpoint.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from vizsla.errors import UserError

START_TIMEOUT_S = 120.0


class ModelError(Exception):
    """The endpoint's model (the user's inference functions) failed: boto3's ModelError, status 424."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(
            f"An error occurred (ModelError) when calling the InvokeEndpoint operation: {message}"
        )
        self.status = status
        self.message = message


class LocalEndpoint:
    """`vizsla serve` in a thread: create the app (loads the model now), serve until stop()."""

    def __init__(
        self, model_path: Path, *, name: str, entry_point: Path | None, source_dir: Path | None
    ) -> None:
        import uvicorn

        from vizsla.serving.app import create_app
        from vizsla.serving.settings import ServeSettings

        settings = ServeSettings(
            model_path=model_path, model_name=name, handler_path=entry_point, handler_source_dir=source_dir
        )
        self.name = name
        self.app = create_app(settings)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True, name=f"endpoint-{name}"
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._sock.close()
                raise UserError(f"the local endpoint {name} did not start")
            time.sleep(0.02)
        _ENDPOINTS[name] = self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()
        if _ENDPOINTS.get(self.name) is self:
            del _ENDPOINTS[self.name]


# Endpoints running in this process, by name (what the SDK would find through DescribeEndpoint).
_ENDPOINTS: dict[str, LocalEndpoint] = {}


def find_endpoint(name: str) -> LocalEndpoint | None:
    """The running local endpoint called NAME, or None."""
    endpoint = _ENDPOINTS.get(name)
    return endpoint if endpoint is not None and endpoint.running else None


def delete_endpoint(name: str) -> None:
    """Stop the local endpoint NAME (Session.delete_endpoint): one in this process, else a registered
    one (`vizsla endpoints`); UserError when none runs."""
    from vizsla.endpoints.notebook import find_managed

    endpoint = find_endpoint(name) or find_managed(name)
    if endpoint is None:
        raise UserError(f"no local endpoint named {name!r} is running")
    endpoint.stop()


class Predictor:
    """SageMaker's Predictor (sagemaker/base_predictor.py) over a local endpoint, found by its name.

    `Predictor(endpoint_name, sagemaker_session=None, serializer=IdentitySerializer(),
    deserializer=BytesDeserializer())` as in the SDK (a subclass like the dog-breed notebooks'
    `ImagePredictor(endpoint_name, sagemaker_session)` works as a model's predictor_cls). The body sent is
    `serializer.serialize(data)` (str encoded as UTF-8, as boto3 does); Content-Type and Accept come from
    the serializer's CONTENT_TYPE and the deserializer's ACCEPT unless initial_args names them.
    """

    def __init__(
        self,
        endpoint_name: str | LocalEndpoint,
        sagemaker_session: Any = None,
        serializer: Any = None,
        deserializer: Any = None,
        component_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        from vizsla.sagemaker.deserializers import BytesDeserializer
        from vizsla.sagemaker.serializers import IdentitySerializer

        if "endpoint" in kwargs and not endpoint_name:  # the SDK's renamed keyword
            endpoint_name = kwargs.pop("endpoint")
        self._endpoint: Any = None  # a LocalEndpoint (this process) or a ManagedEndpoint (registered)
        if isinstance(endpoint_name, LocalEndpoint):
            self._endpoint = endpoint_name
            endpoint_name = endpoint_name.name
        self.endpoint_name = str(endpoint_name)
        self.sagemaker_session = sagemaker_session
        self.component_name = component_name
        self.serializer = serializer if serializer is not None else IdentitySerializer()
        self.deserializer = deserializer if deserializer is not None else BytesDeserializer()

    @property
    def endpoint(self) -> str:
        """The SDK's deprecated alias of endpoint_name."""
        return self.endpoint_name

    @property
    def content_type(self) -> str:
        return str(getattr(self.serializer, "CONTENT_TYPE", "application/octet-stream"))

    @property
    def accept(self) -> tuple[str, ...]:
        accept = getattr(self.deserializer, "ACCEPT", ("*/*",))
        return (accept,) if isinstance(accept, str) else tuple(accept)

    def _local_endpoint(self) -> Any:
        from vizsla.endpoints.notebook import find_managed

        if self._endpoint is not None and self._endpoint.running:
            return self._endpoint
        found = find_endpoint(self.endpoint_name) or find_managed(self.endpoint_name)
        if found is not None:
            self._endpoint = found
            return found
        if self._endpoint is not None:
            raise UserError(f"endpoint {self.endpoint_name} was deleted")
        raise UserError(
            f"no local endpoint named {self.endpoint_name!r} is running in this process",
            hint="deploy() the model first (endpoints live as long as the notebook's process).",
        )

    def predict(
        self,
        data: Any,
        initial_args: dict[str, Any] | None = None,
        target_model: str | None = None,
        target_variant: str | None = None,
        inference_id: str | None = None,
        custom_attributes: str | None = None,
        **_: Any,
    ) -> Any:
        """Serialize DATA, invoke the endpoint, deserialize the answer; ModelError when the model fails."""
        import httpx

        endpoint = self._local_endpoint()
        args = dict(initial_args or {})
        body = _body(self.serializer.serialize(data))  # first: AutoSerializer's type depends on DATA
        content_type = args.get("ContentType") or self.content_type
        accept = args.get("Accept") or ", ".join(self.accept)
        if isinstance(content_type, tuple | list):
            content_type = ", ".join(content_type)
        if isinstance(accept, tuple | list):
            accept = ", ".join(accept)
        headers = {"Content-Type": str(content_type), "Accept": str(accept)}
        if custom_attributes or args.get("CustomAttributes"):
            headers["X-Amzn-SageMaker-Custom-Attributes"] = str(custom_attributes or args["CustomAttributes"])
        if inference_id or args.get("InferenceId"):
            headers["X-Amzn-SageMaker-Inference-Id"] = str(inference_id or args["InferenceId"])
        url = f"{endpoint.url}/endpoints/{self.endpoint_name}/invocations"
        response = httpx.post(url, content=body, headers=headers, timeout=120)
        if response.status_code == 424:
            payload = response.json()
            raise ModelError(int(payload.get("OriginalStatusCode", 424)), str(payload.get("Message")))
        if response.status_code >= 400:
            raise ModelError(response.status_code, response.text)
        # the media type without parameters: the SDK's deserializers compare it exactly ("text/csv")
        kind = response.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
        return self.deserializer.deserialize(io.BytesIO(response.content), kind)

    def delete_endpoint(self, delete_endpoint_config: bool = True) -> None:
        """Stop the local server (a registered endpoint: drained, its port freed, unregistered)."""
        self._local_endpoint().stop()

    def update_endpoint(
        self,
        initial_instance_count: int | None = None,
        instance_type: str | None = None,
        model_name: str | Path | None = None,
        data_capture_config_dict: dict[str, Any] | None = None,
        wait: bool = True,
        **_: Any,
    ) -> None:
        """Blue/green update of a registered endpoint (deploy(endpoint_name=...) made it): MODEL_NAME is
        the job or model folder to serve now, INITIAL_INSTANCE_COUNT its workers, DATA_CAPTURE_CONFIG_DICT
        SageMaker's {"EnableCapture": ..., "InitialSamplingPercentage": ...}."""
        endpoint = self._local_endpoint()
        if not hasattr(endpoint, "update"):
            raise UserError(
                f"endpoint {self.endpoint_name} runs inside this process and cannot be updated",
                hint="deploy(endpoint_name=...) creates a registered one, which update_endpoint updates.",
            )
        endpoint.update(model_name, workers=initial_instance_count, capture=data_capture_config_dict)

    def delete_model(self) -> None:
        """Nothing to delete locally once the endpoint is gone: the model files stay in the job folder."""
        if self._endpoint is not None and self._endpoint.running:
            self._endpoint.stop()

    def delete_predictor(self, *args: Any, **kwargs: Any) -> None:
        self.delete_endpoint()


def _body(serialized: Any) -> bytes:
    """What boto3 sends for a Body: bytes as they are, str as UTF-8, a file-like's content."""
    if hasattr(serialized, "read"):
        serialized = serialized.read()
    if isinstance(serialized, str):
        return serialized.encode("utf-8")
    if isinstance(serialized, bytes | bytearray | memoryview):
        return bytes(serialized)
    raise TypeError(
        f"the serializer returned {type(serialized).__name__}; a request body must be bytes or str "
        "(pass serializer=JSONSerializer() or NumpySerializer() for Python objects)"
    )


class AutoSerializer:
    """Vizsla's default when deploy() gets no serializer: bytes and str as they are, arrays as NPY,
    other objects as JSON (the SDK's PyTorchPredictor would send NumPy for everything)."""

    def __init__(self) -> None:
        self.content_type = "application/octet-stream"

    @property
    def CONTENT_TYPE(self) -> str:  # noqa: N802 - the SDK's name; the type of the last body serialized
        return self.content_type

    def serialize(self, data: Any) -> bytes:
        if isinstance(data, bytes | bytearray | memoryview):
            self.content_type = "application/octet-stream"
            return bytes(data)
        if isinstance(data, str):
            if _is_file(data):
                self.content_type = "application/octet-stream"
                return Path(data).read_bytes()
            self.content_type = "application/json" if _is_json(data) else "text/plain"
            return data.encode("utf-8")
        if isinstance(data, Path):
            self.content_type = "application/octet-stream"
            return data.read_bytes()
        import numpy as np

        if isinstance(data, np.ndarray):
            self.content_type = "application/x-npy"
            buffer = io.BytesIO()
            np.save(buffer, data, allow_pickle=False)
            return buffer.getvalue()
        self.content_type = "application/json"
        return json.dumps(data).encode()


class AutoDeserializer:
    """Vizsla's default when deploy() gets no deserializer: JSON and NPY decoded, anything else bytes."""

    ACCEPT = ("application/json",)

    def deserialize(self, stream: Any, content_type: str) -> Any:
        body = stream.read()
        if content_type == "application/json":
            return json.loads(body)
        if content_type == "application/x-npy":
            import numpy as np

            return np.load(io.BytesIO(body), allow_pickle=False)
        return body


def _is_file(text: str) -> bool:
    try:
        return len(text) < 4096 and "\n" not in text and Path(text).is_file()
    except (OSError, ValueError):
        return False


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
