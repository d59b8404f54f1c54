"""smdebug.core.reduction_config: ReductionConfig (accepted; the store keeps Vizsla's reductions) and its
allowed values (SD smdebug/core/reduction_config.py)."""

from vizsla.scriptmode.smdebug_shim.config import ReductionConfig

ALLOWED_REDUCTIONS = ["min", "max", "mean", "std", "variance", "sum", "prod"]
ALLOWED_NORMS = ["l1", "l2"]
REDUCTION_CONFIG_VERSION_NUM = "v0"
ALLOWED_PARAMS = ["reductions", "abs_reductions", "norms", "abs_norms", "save_raw_tensor"]

__all__ = [
    "ALLOWED_NORMS",
    "ALLOWED_PARAMS",
    "ALLOWED_REDUCTIONS",
    "REDUCTION_CONFIG_VERSION_NUM",
    "ReductionConfig",
]
