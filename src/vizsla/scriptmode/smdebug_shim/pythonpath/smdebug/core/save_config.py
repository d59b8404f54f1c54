"""smdebug.core.save_config: SaveConfig and SaveConfigMode."""

from vizsla.scriptmode.smdebug_shim.config import SaveConfig, SaveConfigMode

__all__ = ["SaveConfig", "SaveConfigMode"]
