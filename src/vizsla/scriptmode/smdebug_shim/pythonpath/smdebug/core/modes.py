"""smdebug.core.modes: ModeKeys (TRAIN, EVAL, PREDICT, GLOBAL)."""

from vizsla.debugger.smdebug_compat import ModeKeys

__all__ = ["ModeKeys"]
