"""smdebug.trials: create_trial over Vizsla's tensor store."""

from vizsla.debugger.smdebug_compat import SmdebugTrial as Trial
from vizsla.debugger.smdebug_compat import create_trial

__all__ = ["Trial", "create_trial"]
