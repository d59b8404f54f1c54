"""smdebug.core.collection: Collection, CollectionKeys, collection sets (SD smdebug/core/collection.py)."""

from vizsla.scriptmode.smdebug_shim.config import Collection

ALLOWED_PARAMS = [
    "name",
    "include_regex",
    "reduction_config",
    "save_config",
    "tensor_names",
    "save_histogram",
]


class CollectionKeys:
    DEFAULT = "default"
    ALL = "all"
    INPUTS = "inputs"
    OUTPUTS = "outputs"
    WEIGHTS = "weights"
    GRADIENTS = "gradients"
    LOSSES = "losses"
    BIASES = "biases"
    LAYERS = "layers"
    SM_METRICS = "sm_metrics"
    OPTIMIZER_VARIABLES = "optimizer_variables"
    TENSORFLOW_SUMMARIES = "tensorflow_summaries"
    METRICS = "metrics"
    HYPERPARAMETERS = "hyperparameters"
    PREDICTIONS = "predictions"
    LABELS = "labels"
    FEATURE_IMPORTANCE = "feature_importance"
    AVERAGE_SHAP = "average_shap"
    FULL_SHAP = "full_shap"
    TREES = "trees"
    SCALARS = "scalars"  # Vizsla's stand-in: where save_scalar values go


_K = CollectionKeys
SUMMARIES_COLLECTIONS = {_K.TENSORFLOW_SUMMARIES}
SCALAR_COLLECTIONS = {_K.LOSSES, _K.METRICS, _K.FEATURE_IMPORTANCE, _K.AVERAGE_SHAP, _K.SM_METRICS}
SM_METRIC_COLLECTIONS = {_K.LOSSES, _K.METRICS, _K.SM_METRICS}
NON_REDUCTION_COLLECTIONS = SCALAR_COLLECTIONS.union(SUMMARIES_COLLECTIONS)
NON_HISTOGRAM_COLLECTIONS = SCALAR_COLLECTIONS.union(SUMMARIES_COLLECTIONS)
DEFAULT_TF_COLLECTIONS = {
    _K.ALL, _K.DEFAULT, _K.WEIGHTS, _K.BIASES, _K.GRADIENTS, _K.LOSSES, _K.METRICS, _K.INPUTS, _K.OUTPUTS,
    _K.LAYERS, _K.SM_METRICS, _K.OPTIMIZER_VARIABLES,
}  # fmt: skip
DEFAULT_PYTORCH_COLLECTIONS = {_K.ALL, _K.DEFAULT, _K.WEIGHTS, _K.BIASES, _K.GRADIENTS, _K.LOSSES}
DEFAULT_MXNET_COLLECTIONS = {_K.ALL, _K.DEFAULT, _K.WEIGHTS, _K.BIASES, _K.GRADIENTS, _K.LOSSES}
DEFAULT_XGBOOST_COLLECTIONS = {
    _K.ALL, _K.DEFAULT, _K.HYPERPARAMETERS, _K.PREDICTIONS, _K.LABELS, _K.FEATURE_IMPORTANCE,
    _K.AVERAGE_SHAP, _K.FULL_SHAP, _K.TREES,
}  # fmt: skip

__all__ = [
    "ALLOWED_PARAMS",
    "Collection",
    "CollectionKeys",
    "DEFAULT_MXNET_COLLECTIONS",
    "DEFAULT_PYTORCH_COLLECTIONS",
    "DEFAULT_TF_COLLECTIONS",
    "DEFAULT_XGBOOST_COLLECTIONS",
    "NON_HISTOGRAM_COLLECTIONS",
    "NON_REDUCTION_COLLECTIONS",
    "SCALAR_COLLECTIONS",
    "SM_METRIC_COLLECTIONS",
    "SUMMARIES_COLLECTIONS",
]
