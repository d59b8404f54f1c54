"""smdebug.rules.action.action (SD smdebug/rules/action/action.py): the actions a rule runs when it fires.

SageMaker's actions (StopTraining, Email, SMS) need AWS; here an action string is accepted and invoking a
non-empty one raises NotImplementedError (Vizsla's own rules stop a job with `actions: [stop]` under --debug).
"""

import json

ALLOWED_ACTIONS = ["stoptraining", "sms", "email"]


class Actions:
    """The actions of ACTION_STR (smdebug's JSON list of {"name": ...}); empty: nothing to do."""

    def __init__(self, actions_str="", rule_name=""):
        self._actions = json.loads(actions_str) if actions_str and actions_str.strip() else []
        self.rule_name = rule_name

    def invoke(self, message=None):
        if self._actions:
            names = [a.get("name") if isinstance(a, dict) else str(a) for a in self._actions]
            raise NotImplementedError(
                f"rule {self.rule_name}: actions {names} need SageMaker (SNS, StopTrainingJob); run the rule "
                "as a Vizsla debugger rule with `actions: [stop]` instead"
            )


__all__ = ["ALLOWED_ACTIONS", "Actions"]
