"""smdebug.pytorch (`import smdebug.pytorch as smd`): Hook, get_hook, modes, configs, create_trial and the
collection helpers, as SD smdebug/pytorch/__init__.py exports them (the union of its 1.0.x versions)."""

from vizsla.scriptmode.smdebug_shim.hook import Hook

from ..core.collection import CollectionKeys
from ..core.modes import ModeKeys as modes
from ..core.reduction_config import ReductionConfig
from ..core.save_config import SaveConfig, SaveConfigMode
from ..trials import create_trial
from .collection import (
    Collection,
    CollectionManager,
    add_to_collection,
    add_to_default_collection,
    get_collection,
    get_collections,
    load_collections,
    reset_collections,
)
from .singleton_utils import del_hook, get_hook, set_hook

__all__ = [
    "Collection",
    "CollectionKeys",
    "CollectionManager",
    "Hook",
    "ReductionConfig",
    "SaveConfig",
    "SaveConfigMode",
    "add_to_collection",
    "add_to_default_collection",
    "create_trial",
    "del_hook",
    "get_collection",
    "get_collections",
    "get_hook",
    "load_collections",
    "modes",
    "reset_collections",
    "set_hook",
]
