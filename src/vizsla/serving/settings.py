"""One settings object for every serving knob, filled by the CLI (or JSON in an env var for workers)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from vizsla.serving.connections import ConnectionLimits

SETTINGS_ENV = "VIZSLA_SERVE_SETTINGS"
RUNTIMES = ("onnx", "torch", "onnx-int8", "auto")
MIB = 1024 * 1024


class ServeSettings(BaseModel):
    """What `create_app` needs: the model, limits, batching, URL fetching and auth."""

    model_config = ConfigDict(extra="forbid")

    model_path: Path
    model_name: str = Field("model", pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$", max_length=63)
    runtime: str = "onnx"
    handler_path: Path | None = None
    handler_source_dir: Path | None = None  # script mode: the entry point's code/ folder
    # limits (6 MiB = SageMaker's InvokeEndpoint body limit)
    max_payload_bytes: int = Field(6 * MIB, ge=1)
    max_pixels: int = Field(40_000_000, ge=1)
    max_images_per_request: int = Field(64, ge=1)
    request_timeout_s: float = Field(60.0, gt=0)
    # slow clients (seconds): headers must arrive within header_timeout_s of a request's first byte; a body
    # may pause at most body_idle_timeout_s and take at most body_timeout_s + its size at body_min_rate
    header_timeout_s: float = Field(10.0, gt=0)
    body_idle_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)
    body_min_rate_bytes_s: float = Field(64 * 1024, gt=0)
    max_connections: int = Field(512, ge=1)  # open connections; requests beyond get 503
    # batching
    max_batch_size: int = Field(16, ge=1)
    max_wait_ms: float = Field(2.0, ge=0)
    max_queue: int = Field(1024, ge=1)
    decode_threads: int = Field(0, ge=0)  # 0: one per core
    inference_threads: int = Field(0, ge=0)  # ONNX Runtime intra-op threads; 0: one per core
    default_topk: int = Field(5, ge=1)
    # image URL fetching (off by default: SSRF)
    allow_url_fetch: bool = False
    url_allow_hosts: list[str] = Field(default_factory=list)  # empty: any public host
    url_allow_private: bool = False
    url_max_bytes: int = Field(6 * MIB, ge=1)
    url_timeout_s: float = Field(5.0, gt=0)
    # auth: API keys and/or SigV4 (access key id -> secret)
    api_keys: list[str] = Field(default_factory=list)
    sigv4_credentials: dict[str, str] = Field(default_factory=dict)
    sigv4_max_skew_s: float = Field(900.0, gt=0)
    static_dir: Path | None = None
    onnx_check_inputs: int = Field(4, ge=1)

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        if value not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}")
        return value

    @property
    def connection_limits(self) -> ConnectionLimits:
        """The bounds the HTTP protocol enforces per connection (vizsla.serving.connections)."""
        from vizsla.serving.connections import ConnectionLimits

        return ConnectionLimits(
            header_timeout_s=self.header_timeout_s,
            body_idle_timeout_s=self.body_idle_timeout_s,
            body_timeout_s=self.body_timeout_s,
            body_min_bytes_per_s=self.body_min_rate_bytes_s,
            max_body_bytes=self.max_payload_bytes,
            max_connections=self.max_connections,
        )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.sigv4_credentials)

    def to_env(self) -> str:
        """JSON for SETTINGS_ENV, so uvicorn worker processes build the same app."""
        return self.model_dump_json()

    @classmethod
    def from_env(cls) -> ServeSettings:
        """Settings written by the parent `vizsla serve` process into SETTINGS_ENV."""
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise RuntimeError(f"{SETTINGS_ENV} is not set; start workers with `vizsla serve`")
        return cls.model_validate(json.loads(raw))
