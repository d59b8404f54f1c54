"""smdebug.pytorch.singleton_utils: get_hook, set_hook, del_hook (SD smdebug/pytorch/singleton_utils.py)."""

from ..core.singleton_utils import del_hook, get_hook, set_hook

__all__ = ["del_hook", "get_hook", "set_hook"]
