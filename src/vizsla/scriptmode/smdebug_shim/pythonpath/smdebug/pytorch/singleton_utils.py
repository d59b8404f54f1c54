"""smdebug.pytorch.singleton_utils: get_hook."""

from vizsla.scriptmode.smdebug_shim.hook import get_hook

__all__ = ["get_hook"]
