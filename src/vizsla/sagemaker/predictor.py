"""A real local endpoint for `deploy()`: Vizsla's server on a free loopback port, and its Predictor.

The server runs in a background thread of the notebook's process (the user's inference.py is imported
there, as the inference toolkit imports it in its worker); `predict` goes over HTTP to the same route
boto3's `invoke_endpoint` uses, so limits, status codes and ModelError behave as a deployed endpoint's.
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

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()


class Predictor:
    """SageMaker's Predictor over a local endpoint: predict(data, initial_args) and delete_endpoint()."""

    def __init__(self, endpoint: LocalEndpoint, serializer: Any = None, deserializer: Any = None) -> None:
        self.endpoint = endpoint
        self.endpoint_name = endpoint.name
        self.serializer = serializer
        self.deserializer = deserializer

    def predict(self, data: Any, initial_args: dict[str, Any] | None = None, **_: Any) -> Any:
        """Send DATA (bytes as they are; arrays as NPY; other values as JSON) and decode the answer."""
        import httpx

        if not self.endpoint.running:
            raise UserError(f"endpoint {self.endpoint_name} was deleted")
        args = dict(initial_args or {})
        body, content_type = self._serialize(data)
        headers = {
            "Content-Type": args.get("ContentType") or content_type,
            "Accept": args.get("Accept") or getattr(self.deserializer, "ACCEPT", None) or "application/json",
        }
        if isinstance(headers["Accept"], tuple | list):
            headers["Accept"] = ", ".join(headers["Accept"])
        url = f"{self.endpoint.url}/endpoints/{self.endpoint_name}/invocations"
        response = httpx.post(url, content=body, headers=headers, timeout=120)
        if response.status_code == 424:
            payload = response.json()
            raise ModelError(int(payload.get("OriginalStatusCode", 424)), str(payload.get("Message")))
        if response.status_code >= 400:
            raise ModelError(response.status_code, response.text)
        return self._deserialize(response.content, response.headers.get("content-type", ""))

    def _serialize(self, data: Any) -> tuple[bytes, str]:
        if self.serializer is not None:
            return self.serializer.serialize(data), getattr(
                self.serializer, "CONTENT_TYPE", "application/json"
            )
        if isinstance(data, bytes | bytearray):
            return bytes(data), "application/octet-stream"
        if isinstance(data, str | Path) and Path(data).is_file():
            return Path(data).read_bytes(), "application/octet-stream"
        import numpy as np

        if isinstance(data, np.ndarray):
            buffer = io.BytesIO()
            np.save(buffer, data, allow_pickle=False)
            return buffer.getvalue(), "application/x-npy"
        return json.dumps(data).encode(), "application/json"

    def _deserialize(self, body: bytes, content_type: str) -> Any:
        if self.deserializer is not None:
            return self.deserializer.deserialize(io.BytesIO(body), content_type)
        kind = content_type.split(";")[0].strip().lower()
        if kind == "application/json":
            return json.loads(body)
        if kind == "application/x-npy":
            import numpy as np

            return np.load(io.BytesIO(body), allow_pickle=False)
        return body

    def delete_endpoint(self, delete_endpoint_config: bool = True) -> None:
        """Stop the local server."""
        self.endpoint.stop()

    def delete_model(self) -> None:
        """Nothing to delete locally once the endpoint is gone: the model files stay in the job folder."""
        self.endpoint.stop()
