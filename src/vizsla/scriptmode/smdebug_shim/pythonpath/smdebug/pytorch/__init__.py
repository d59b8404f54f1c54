"""smdebug.pytorch: Hook, get_hook, modes and the config classes (`import smdebug.pytorch as smd`)."""

from vizsla.scriptmode.smdebug_shim.config import Collection, ReductionConfig, SaveConfig, SaveConfigMode
from vizsla.scriptmode.smdebug_shim.hook import Hook, get_hook

from ..core.collection import CollectionKeys
from ..core.modes import ModeKeys as modes

__all__ = [
    "Collection",
    "CollectionKeys",
    "Hook",
    "ReductionConfig",
    "SaveConfig",
    "SaveConfigMode",
    "get_hook",
    "modes",
]
