"""The sagemaker SDK's names for script-mode processes, provided by Vizsla (vizsla/scriptmode/sagemaker_shim).

`sagemaker.debugger`, `sagemaker.pytorch`, `sagemaker.tuner`, ... are vizsla.sagemaker's modules."""

import importlib as _importlib

from vizsla.sagemaker import *  # noqa: F403
from vizsla.sagemaker import __all__ as _names
from vizsla.scriptmode.sagemaker_shim import install as _install
from vizsla.scriptmode.sagemaker_shim import target as _target

_install()
__version__ = "2.257.6+vizsla"  # the SDK v2 API these names follow
__all__ = list(_names)


def __getattr__(name):
    """`sagemaker.debugger` & co. without importing them first, as the SDK's package allows."""
    if not name.startswith("_") and _target(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'sagemaker' (Vizsla's stand-in) has no attribute {name!r}")
