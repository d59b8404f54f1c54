"""smdebug.rules (SD smdebug/rules/__init__.py): the Rule interface and invoke_rule, over Vizsla's reader.

Vizsla's built-in rules run in the Vizsla process (--debug); these let a script or notebook run its own
rule class the smdebug way."""

from .req_tensors import RequiredTensors, RequiredTensorsForTrial
from .rule import Rule
from .rule_invoker import invoke_rule

__all__ = ["RequiredTensors", "RequiredTensorsForTrial", "Rule", "invoke_rule"]
