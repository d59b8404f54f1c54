"""smdebug.core.collection: Collection and the built-in collection names."""

from vizsla.scriptmode.smdebug_shim.config import Collection


class CollectionKeys:
    DEFAULT = "default"
    ALL = "all"
    WEIGHTS = "weights"
    BIASES = "biases"
    GRADIENTS = "gradients"
    LOSSES = "losses"
    SCALARS = "scalars"
    METRICS = "metrics"
    SM_METRICS = "sm_metrics"


__all__ = ["Collection", "CollectionKeys"]
