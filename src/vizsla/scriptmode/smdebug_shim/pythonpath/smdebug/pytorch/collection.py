"""smdebug.pytorch.collection: the module-level collection helpers of older smdebug releases (SD
smdebug/pytorch/collection.py and the smdebug.pytorch exports of that time), acting on the current hook."""

from vizsla.scriptmode.smdebug_shim.config import Collection
from vizsla.scriptmode.smdebug_shim.hook import get_hook
from vizsla.scriptmode.smdebug_shim.stubs import unavailable_class, unavailable_function

_WHY = "collections live on the hook here: use hook.get_collection(name) after creating the hook"


def _hook():
    hook = get_hook(create_if_not_exists=True)
    if hook is None:
        raise NotImplementedError(f"smdebug.pytorch.collection: no hook exists yet; {_WHY}")
    return hook


def get_collection(name):
    """The current hook's collection NAME (created when new)."""
    return _hook().get_collection(name)


def get_collections():
    """The current hook's collections by name."""
    return _hook().get_collections()


def add_to_collection(collection_name, args):
    """Include ARGS (regexes or tensor names) in the current hook's collection COLLECTION_NAME."""
    _hook().get_collection(collection_name).include(args)


def add_to_default_collection(args):
    add_to_collection("default", args)


CollectionManager = unavailable_class("smdebug.pytorch.collection.CollectionManager", _WHY)
load_collections = unavailable_function("smdebug.pytorch.collection.load_collections", _WHY)
reset_collections = unavailable_function("smdebug.pytorch.collection.reset_collections", _WHY)

__all__ = [
    "Collection",
    "CollectionManager",
    "add_to_collection",
    "add_to_default_collection",
    "get_collection",
    "get_collections",
    "load_collections",
    "reset_collections",
]
