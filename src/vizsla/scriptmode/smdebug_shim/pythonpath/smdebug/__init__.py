"""smdebug's API for script-mode processes, provided by Vizsla (vizsla/scriptmode/smdebug_shim)."""

from .core.modes import ModeKeys as modes

__version__ = "1.0.34+vizsla"
__all__ = ["modes"]
