"""smdebug.rules.rule (SD smdebug/rules/rule.py): the Rule interface: implement invoke_at_step(step)."""

from abc import ABC, abstractmethod

from ..core.logger import get_logger
from ..exceptions import RuleEvaluationConditionMet
from .action import Actions
from .req_tensors import RequiredTensors


class Rule(ABC):
    """A rule over a trial: invoke(step) runs invoke_at_step; True raises RuleEvaluationConditionMet."""

    def __init__(self, base_trial, action_str="", other_trials=None):
        self.base_trial = base_trial
        self.other_trials = other_trials
        self.trials = [base_trial, *(other_trials or [])]
        self.req_tensors = RequiredTensors(self.base_trial, self.other_trials)
        self.logger = get_logger()
        self.rule_name = self.__class__.__name__
        self._actions = Actions(action_str, rule_name=self.rule_name)
        self.report = {
            "RuleTriggered": 0,
            "Violations": 0,
            "Details": {},
            "Datapoints": 0,
            "RuleParameters": "",
        }

    def set_required_tensors(self, step):  # noqa: B027 - optional hook, as in smdebug
        pass

    @abstractmethod
    def invoke_at_step(self, step):
        """True when the rule's condition is met at this (global) step."""

    def invoke(self, step):
        self.logger.debug("Invoking rule %s for step %s", self.rule_name, step)
        self.req_tensors.clear()
        self.set_required_tensors(step)
        self.req_tensors.fetch()
        if self.invoke_at_step(step):
            self._actions.invoke()
            raise RuleEvaluationConditionMet(self.rule_name, step)


__all__ = ["Rule"]
