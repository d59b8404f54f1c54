"""smdebug.core.singleton_utils: get_hook, set_hook, del_hook (SD smdebug/core/singleton_utils.py)."""

from vizsla.scriptmode.smdebug_shim import hook as _hook_module
from vizsla.scriptmode.smdebug_shim.hook import get_hook


def set_hook(custom_hook):
    """Make CUSTOM_HOOK the hook get_hook() returns."""
    _hook_module._hook = custom_hook


def del_hook():
    """Forget the current hook (get_hook() returns None, or creates one from the JSON config)."""
    _hook_module._hook = None


__all__ = ["del_hook", "get_hook", "set_hook"]
