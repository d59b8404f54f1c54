"""Managed local endpoints: a registry, a supervisor per endpoint, production variants and data capture.

`vizsla endpoints create|list|describe|logs|update|delete` and the notebook API (`deploy(endpoint_name=)`,
`Predictor(name)`) use these functions; the supervisor (vizsla.endpoints.supervisor) does the serving.
"""

from vizsla.endpoints.lifecycle import create_endpoint, delete_endpoint, resolve_model, update_endpoint
from vizsla.endpoints.registry import EndpointDir, iter_records, read_record, registry_root
from vizsla.endpoints.spec import CaptureSpec, EndpointConfig, VariantSpec

__all__ = [
    "CaptureSpec",
    "EndpointConfig",
    "EndpointDir",
    "VariantSpec",
    "create_endpoint",
    "delete_endpoint",
    "iter_records",
    "read_record",
    "registry_root",
    "resolve_model",
    "update_endpoint",
]
