"""smdebug.pytorch.hook: the Hook class."""

from vizsla.scriptmode.smdebug_shim.hook import Hook

__all__ = ["Hook"]
