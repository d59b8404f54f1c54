"""Image folders to validated samples and reproducible torch loaders.

Names are imported on first use (module `__getattr__`), so `import vizsla.data` loads neither torch
nor Pillow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vizsla.data.dataset import ImageFolderDataset, create_loader, default_num_workers
    from vizsla.data.decode import BadImageError, decode_image
    from vizsla.data.prepare import PreparedData, prepare_data
    from vizsla.data.transforms import create_transform
    from vizsla.data.validate import BadFile

_EXPORTS = {
    "prepare_data": "vizsla.data.prepare",
    "PreparedData": "vizsla.data.prepare",
    "BadFile": "vizsla.data.validate",
    "create_transform": "vizsla.data.transforms",
    "create_loader": "vizsla.data.dataset",
    "ImageFolderDataset": "vizsla.data.dataset",
    "default_num_workers": "vizsla.data.dataset",
    "decode_image": "vizsla.data.decode",
    "BadImageError": "vizsla.data.decode",
    "build_features": "vizsla.data.features",
    "FeatureSet": "vizsla.data.features",
    "FeatureLoader": "vizsla.data.features",
}

__all__ = [
    "BadFile",
    "FeatureLoader",
    "FeatureSet",
    "build_features",
    "BadImageError",
    "ImageFolderDataset",
    "PreparedData",
    "create_loader",
    "create_transform",
    "decode_image",
    "default_num_workers",
    "prepare_data",
]


def __getattr__(name: str) -> Any:
    """Import an exported name's module on first access."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vizsla.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
