"""The local endpoint registry: one folder per endpoint, its record (endpoint.json) and its paths.

The registry lives under $VIZSLA_HOME/endpoints (default ~/.vizsla/endpoints), one place per user as ports
are: `Predictor("name")` in a notebook and `vizsla endpoints list` in a shell find the same endpoints
wherever they run. The CLI and the endpoint's supervisor both change a record, always read-modify-write
under the endpoint's file lock and written atomically, so neither ever loses the other's change.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vizsla.endpoints.spec import NAME_PATTERN
from vizsla.errors import UserError
from vizsla.infra.io import atomic_write_json, file_lock

HOME_ENV = "VIZSLA_HOME"
SUPERVISOR_MODULE = "vizsla.endpoints.supervisor"

# SageMaker's EndpointStatus values that a local endpoint takes
CREATING, IN_SERVICE, UPDATING, OUT_OF_SERVICE, DELETING, FAILED = (
    "Creating",
    "InService",
    "Updating",
    "OutOfService",
    "Deleting",
    "Failed",
)


def registry_root() -> Path:
    """$VIZSLA_HOME/endpoints, $VIZSLA_HOME defaulting to ~/.vizsla."""
    home = os.environ.get(HOME_ENV) or str(Path.home() / ".vizsla")
    return Path(home).expanduser() / "endpoints"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_name(name: str) -> str:
    """NAME when SageMaker would accept it as an EndpointName, else a UserError saying what is allowed."""
    if not re.match(NAME_PATTERN, name) or len(name) > 63:
        raise UserError(
            f"invalid endpoint name {name!r}: use letters, digits and single dashes, at most 63 characters"
        )
    return name


@dataclass(frozen=True)
class EndpointDir:
    """Paths of one endpoint's folder; creating one creates nothing on disk."""

    root: Path

    @classmethod
    def of(cls, name: str) -> EndpointDir:
        return cls(registry_root() / check_name(name))

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def record(self) -> Path:
        return self.root / "endpoint.json"

    @property
    def lock(self) -> Path:
        return self.root / ".endpoint.lock"

    @property
    def log(self) -> Path:
        return self.root / "endpoint.log"

    @property
    def capture(self) -> Path:
        return self.root / "capture"

    def exists(self) -> bool:
        return self.record.is_file()


def read_record(name: str) -> dict[str, Any]:
    """The record of endpoint NAME; UserError naming the registry when there is none."""
    folder = EndpointDir.of(name)
    record = _load(folder)
    if record is None:
        raise UserError(
            f"no endpoint named {name!r} in {folder.root.parent}",
            hint="`vizsla endpoints list` shows the endpoints; `vizsla endpoints create` starts one.",
        )
    return record


def _load(folder: EndpointDir) -> dict[str, Any] | None:
    try:
        record = json.loads(folder.record.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder.record} cannot be read ({exc}): delete the endpoint's folder") from None
    return record if isinstance(record, dict) else None


def write_new_record(name: str, record: dict[str, Any]) -> EndpointDir:
    """Register endpoint NAME with RECORD; UserError when one of that name is registered and alive."""
    folder = EndpointDir.of(name)
    folder.root.mkdir(parents=True, exist_ok=True)
    with file_lock(folder.lock):
        existing = _load(folder)
        if existing is not None and supervisor_alive(existing):
            raise UserError(
                f"endpoint {name!r} exists ({existing.get('status')}, {existing.get('url')})",
                hint=f"delete it first (`vizsla endpoints delete {name}`) or update it.",
            )
        atomic_write_json(folder.record, record)
    return folder


def update_record(name: str, **changes: Any) -> dict[str, Any]:
    """Apply CHANGES to NAME's record under its lock; the record as written."""
    folder = EndpointDir.of(name)
    with file_lock(folder.lock):
        record = _load(folder)
        if record is None:
            raise UserError(f"endpoint {name!r} is no longer registered in {folder.root.parent}")
        record.update(changes, updated=now_iso())
        atomic_write_json(folder.record, record)
    return record


def iter_records() -> Iterator[dict[str, Any]]:
    """Every registered endpoint's record, by name, as `shown` says it is."""
    root = registry_root()
    if not root.is_dir():
        return
    for folder in sorted(root.iterdir()):
        if folder.is_dir():
            record = _load(EndpointDir(folder))
            if record is not None:
                yield shown(record)


def shown(record: dict[str, Any]) -> dict[str, Any]:
    """RECORD, but Failed when it claims to serve and its supervisor is gone (killed, machine restarted)."""
    if record.get("status") == FAILED:
        return record
    if record.get("supervisor_pid") and not supervisor_alive(record):
        reason = "its supervisor is not running (killed, or the machine restarted): delete, create again"
        return {**record, "status": FAILED, "failure_reason": reason}
    return record


def supervisor_alive(record: dict[str, Any]) -> bool:
    """Whether the record's supervisor process still runs (and is a supervisor: pids get reused)."""
    import psutil

    pid = record.get("supervisor_pid")
    if not isinstance(pid, int):
        return False
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and SUPERVISOR_MODULE in " ".join(process.cmdline())
    except (psutil.Error, OSError):
        return False
