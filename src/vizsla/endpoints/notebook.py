"""The notebook API's view of managed endpoints: `deploy(endpoint_name=...)`, `Predictor(name)`,
`predictor.update_endpoint(...)` and `delete_endpoint()` (vizsla.sagemaker) map onto these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vizsla.endpoints import registry
from vizsla.endpoints.lifecycle import create_endpoint, delete_endpoint, resolve_model, update_endpoint
from vizsla.endpoints.spec import CaptureSpec, EndpointConfig, VariantSpec

SERVING = (registry.IN_SERVICE, registry.UPDATING, registry.OUT_OF_SERVICE)


class ManagedEndpoint:
    """A registered endpoint held by name: its URL while it serves; stop() deletes it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _record(self) -> dict[str, Any] | None:
        folder = registry.EndpointDir.of(self.name)
        if not folder.exists():
            return None
        try:
            return registry.read_record(self.name)
        except Exception:  # noqa: BLE001 - deleted while being read: not running
            return None

    @property
    def url(self) -> str:
        return str(registry.read_record(self.name)["url"])

    @property
    def running(self) -> bool:
        record = self._record()
        return record is not None and record.get("status") in SERVING and registry.supervisor_alive(record)

    def stop(self) -> None:
        delete_endpoint(self.name)

    def update(
        self,
        model: str | Path | None = None,
        *,
        workers: int | None = None,
        capture: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Blue/green to MODEL (a job or model folder) and/or new WORKERS or data capture settings."""
        current = EndpointConfig.model_validate(registry.read_record(self.name)["config"])
        changes: dict[str, Any] = {}
        if model is not None:
            changes["variants"] = [VariantSpec(name=current.variants[0].name, model=resolve_model(model))]
        if workers is not None:
            changes["workers"] = max(1, int(workers))
        if capture is not None:
            changes["capture"] = capture_from_sdk(capture)
        return update_endpoint(self.name, current.model_copy(update=changes))


def capture_from_sdk(config: dict[str, Any]) -> CaptureSpec:
    """SageMaker's DataCaptureConfig dict (EnableCapture, InitialSamplingPercentage) as a CaptureSpec."""
    enabled = bool(config.get("EnableCapture", True))
    percent = float(config.get("InitialSamplingPercentage", 100)) if enabled else 0.0
    return CaptureSpec(percent=percent)


def find_managed(name: str) -> ManagedEndpoint | None:
    """The registered endpoint NAME when it is serving, else None."""
    try:
        endpoint = ManagedEndpoint(registry.check_name(name))
    except Exception:  # noqa: BLE001 - not a valid endpoint name: not registered
        return None
    return endpoint if endpoint.running else None


def deploy_managed(
    model: Path, name: str, *, workers: int = 1, entry_point: str | None = None, source_dir: str | None = None
) -> ManagedEndpoint:
    """Create endpoint NAME serving MODEL (through ENTRY_POINT when given) on a free port; once InService."""
    from vizsla.endpoints.backends import free_port

    config = EndpointConfig(
        variants=[VariantSpec(name="AllTraffic", model=resolve_model(model))],
        workers=max(1, workers),
        handler=_absolute(entry_point, source_dir),
        source_dir=_absolute(source_dir),
    )
    create_endpoint(name, config, port=free_port())
    return ManagedEndpoint(name)


def _absolute(path: str | None, base: str | None = None) -> str | None:
    """PATH made absolute (against BASE when it lies there, as the SDK reads entry_point in source_dir)."""
    if not path:
        return None
    if base and not Path(path).is_absolute() and (Path(base) / path).exists():
        return str((Path(base) / path).resolve())
    return str(Path(path).resolve()) if Path(path).exists() else path
