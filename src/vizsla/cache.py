"""The shared cache folder: remote datasets, validation verdicts and backbone features live under it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$VIZSLA_CACHE_DIR, else $XDG_CACHE_HOME/vizsla (default ~/.cache/vizsla)."""
    env = os.environ.get("VIZSLA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vizsla"


def cache_dir(kind: str, override: str | os.PathLike[str] | None = None) -> Path:
    """Folder of one kind of cached data (`datasets`, `validation`, `features`), under `override` if given."""
    base = Path(override).expanduser() if override else cache_root()
    return base / kind
