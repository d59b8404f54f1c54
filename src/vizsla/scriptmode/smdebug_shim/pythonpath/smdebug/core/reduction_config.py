"""smdebug.core.reduction_config: ReductionConfig (accepted; the store keeps Vizsla's reductions)."""

from vizsla.scriptmode.smdebug_shim.config import ReductionConfig

__all__ = ["ReductionConfig"]
