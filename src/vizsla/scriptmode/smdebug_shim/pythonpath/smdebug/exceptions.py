"""smdebug.exceptions (SD smdebug/exceptions.py): SMDebugError and the reader's exceptions.

The classes are those vizsla.debugger.smdebug_compat's reader raises. In smdebug 1.0.x they all derive from
SMDebugError; the reader's classes derive from Exception, so in this (script) process they are re-based on
SMDebugError here, so that `except SMDebugError` catches what the reader raises.
"""

from vizsla.debugger.smdebug_compat import (
    IndexReaderException,
    InsufficientInformationForRuleInvocation,
    InvalidCollectionConfiguration,
    InvalidWorker,
    MissingCollectionFiles,
    NoMoreData,
    NoMoreProfilerData,
    RuleEvaluationConditionMet,
    ShapeUnavailableForStep,
    StepNotYetAvailable,
    StepUnavailable,
    TensorUnavailable,
    TensorUnavailableForStep,
)

from .core.modes import ModeKeys as modes


class SMDebugError(Exception):
    """Base class of smdebug's exceptions (smdebug also logs each one at creation; this does not, since the
    reader raises TensorUnavailableForStep & co. in normal use)."""

    __slots__ = ()  # Exception's own layout, so the reader's classes can be re-based onto it


_NAMES = [
    IndexReaderException,
    InsufficientInformationForRuleInvocation,
    InvalidCollectionConfiguration,
    InvalidWorker,
    MissingCollectionFiles,
    NoMoreData,
    NoMoreProfilerData,
    RuleEvaluationConditionMet,
    ShapeUnavailableForStep,
    StepNotYetAvailable,
    StepUnavailable,
    TensorUnavailable,
    TensorUnavailableForStep,
]
for _cls in _NAMES:
    if _cls.__bases__ == (Exception,):
        _cls.__bases__ = (SMDebugError,)  # see the module docstring
if not hasattr(RuleEvaluationConditionMet, "end_of_rule"):
    RuleEvaluationConditionMet.end_of_rule = False  # read by invoke_rule (SD smdebug/rules/rule_invoker.py)

__all__ = [
    "SMDebugError",
    "modes",
    "IndexReaderException",
    "InsufficientInformationForRuleInvocation",
    "InvalidCollectionConfiguration",
    "InvalidWorker",
    "MissingCollectionFiles",
    "NoMoreData",
    "NoMoreProfilerData",
    "RuleEvaluationConditionMet",
    "ShapeUnavailableForStep",
    "StepNotYetAvailable",
    "StepUnavailable",
    "TensorUnavailable",
    "TensorUnavailableForStep",
]
