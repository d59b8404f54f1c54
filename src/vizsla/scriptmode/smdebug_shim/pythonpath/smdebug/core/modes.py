"""smdebug.core.modes: ModeKeys (TRAIN, EVAL, PREDICT, GLOBAL) and its helpers (SD smdebug/core/modes.py)."""

from vizsla.debugger.smdebug_compat import ModeKeys

ALLOWED_MODES = [ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT, ModeKeys.GLOBAL]
ALLOWED_MODE_NAMES = [x.name for x in ALLOWED_MODES]
MODE_STEP_PLUGIN_NAME = "mode_step"
MODE_PLUGIN_NAME = "mode"


_BY_NAME = {
    "train": ModeKeys.TRAIN,
    "eval": ModeKeys.EVAL,
    "predict": ModeKeys.PREDICT,
    "global": ModeKeys.GLOBAL,
}


def str_to_mode_keys(mode_str: str) -> ModeKeys:
    """'train' / 'eval' / 'predict' / 'global' -> ModeKeys; else Exception, as smdebug raises."""
    if mode_str in _BY_NAME:
        return _BY_NAME[mode_str]
    raise Exception("Invalid mode")  # noqa: TRY002 - smdebug's own exception type


__all__ = [
    "ALLOWED_MODES",
    "ALLOWED_MODE_NAMES",
    "MODE_PLUGIN_NAME",
    "MODE_STEP_PLUGIN_NAME",
    "ModeKeys",
    "str_to_mode_keys",
]
