"""smdebug.core.save_config: SaveConfig, SaveConfigMode and the defaults (SD smdebug/core/save_config.py)."""

from vizsla.scriptmode.smdebug_shim.config import DEFAULT_SAVE_INTERVAL, SaveConfig, SaveConfigMode

DEFAULT_SAVE_CONFIG_INTERVAL = DEFAULT_SAVE_INTERVAL  # what this stand-in saves at (smdebug 1.0.x: 500)
DEFAULT_SAVE_CONFIG_START_STEP = 0
DEFAULT_SAVE_CONFIG_END_STEP = None
DEFAULT_SAVE_CONFIG_SAVE_STEPS: list[int] = []
ALLOWED_PARAMS = ["save_interval", "save_steps", "start_step", "end_step"]

__all__ = [
    "ALLOWED_PARAMS",
    "DEFAULT_SAVE_CONFIG_END_STEP",
    "DEFAULT_SAVE_CONFIG_INTERVAL",
    "DEFAULT_SAVE_CONFIG_SAVE_STEPS",
    "DEFAULT_SAVE_CONFIG_START_STEP",
    "SaveConfig",
    "SaveConfigMode",
]
