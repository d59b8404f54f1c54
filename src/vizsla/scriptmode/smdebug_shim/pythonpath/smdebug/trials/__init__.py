"""smdebug.trials (SD smdebug/trials/__init__.py): create_trial and the trial classes over Vizsla's store."""

from vizsla.debugger.smdebug_compat import SmdebugTrial as Trial
from vizsla.debugger.smdebug_compat import create_trial
from vizsla.scriptmode.smdebug_shim.stubs import unavailable_class

LocalTrial = Trial  # a local folder is the only kind of trial here
S3Trial = unavailable_class(
    "smdebug.trials.S3Trial", "tensors are read from the job directory; use create_trial(<job>/debug)"
)

__all__ = ["LocalTrial", "S3Trial", "Trial", "create_trial"]
