"""smdebug's API for script-mode processes, provided by Vizsla (vizsla/scriptmode/smdebug_shim).

Public names as smdebug 1.0.x's smdebug/__init__.py exports them (awslabs/sagemaker-debugger).
"""

from .core.collection import CollectionKeys
from .core.modes import ModeKeys as modes
from .core.reduction_config import ReductionConfig
from .core.save_config import SaveConfig, SaveConfigMode

__version__ = "1.0.34+vizsla"
__all__ = ["CollectionKeys", "ReductionConfig", "SaveConfig", "SaveConfigMode", "__version__", "modes"]
