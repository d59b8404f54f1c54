"""Vizsla's SDK-shaped API (vizsla.sagemaker) importable as `sagemaker` inside script-mode processes.

SageMaker's PyTorch training containers ship the sagemaker Python SDK, so training scripts do
`from sagemaker.debugger import DebuggerHookConfig` or `import sagemaker`. Script mode adds
`sagemaker_shim_path()` (this package's `pythonpath/` folder, which holds only a `sagemaker` package) to the
child's PYTHONPATH, unless the script's interpreter has the real SDK installed. `sagemaker.<x>` is the module
vizsla.sagemaker.<x> itself (a sys.modules alias made by AliasFinder), so classes are the same objects under
both names. In the main Vizsla process the folder is not on sys.path, so an installed sagemaker is never
shadowed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# SDK module paths that differ from vizsla.sagemaker's (sagemaker-python-sdk src/sagemaker/estimator.py).
# Deeper paths (sagemaker.pytorch.estimator) are not provided: vizsla.sagemaker.pytorch is a module.
RENAMED = {"sagemaker.estimator": "vizsla.sagemaker.pytorch"}


def sagemaker_shim_path() -> str:
    """Absolute path of the folder to add to a script process's PYTHONPATH (it contains `sagemaker/`)."""
    return str(Path(__file__).resolve().parent / "pythonpath")


def target(fullname: str) -> str | None:
    """The vizsla module behind `sagemaker.<x>`, or None when Vizsla has none."""
    name = RENAMED.get(fullname) or "vizsla." + fullname
    try:
        return name if importlib.util.find_spec(name) is not None else None
    except ImportError:  # a parent that is a module, not a package (vizsla.sagemaker.pytorch.x)
        return None


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports `sagemaker.<x>` as the vizsla.sagemaker module behind it (only under the shim's package)."""

    def find_spec(self, fullname: str, path: Any, target_module: Any = None) -> Any:
        if not fullname.startswith("sagemaker.") or target(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        name = target(module.__name__)
        assert name is not None
        sys.modules[module.__name__] = importlib.import_module(name)  # the import returns this module


def install() -> None:
    """Add the finder once (called by the shim's `sagemaker/__init__.py`)."""
    if not any(isinstance(finder, AliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(AliasFinder())
