"""smdebug.rules.rule_invoker (SD smdebug/rules/rule_invoker.py): invoke_rule over the steps a trial has."""

from ..core.logger import get_logger
from ..exceptions import (
    NoMoreData,
    NoMoreProfilerData,
    RuleEvaluationConditionMet,
    StepUnavailable,
    TensorUnavailable,
    TensorUnavailableForStep,
)

logger = get_logger()


def invoke_rule(rule_obj, start_step=0, end_step=None, raise_eval_cond=False):
    """Invoke the rule at each step from START_STEP; ends at END_STEP, or after the trial's last step
    (a finished job's store has no more; smdebug would wait for a running one)."""
    step = start_step if start_step is not None else 0
    last = _last_step(rule_obj)
    logger.info("Started execution of rule %s at step %s", type(rule_obj).__name__, step)
    while (end_step is None and (last is None or step <= last)) or (end_step is not None and step < end_step):
        try:
            rule_obj.invoke(step)
        except (TensorUnavailableForStep, StepUnavailable, TensorUnavailable) as e:
            logger.debug(str(e))
        except RuleEvaluationConditionMet as e:
            if raise_eval_cond:
                raise
            logger.debug(str(e))
            if getattr(e, "end_of_rule", False):
                break
        except (NoMoreProfilerData, NoMoreData) as e:
            logger.info("No more data for rule %s: %s", type(rule_obj).__name__, e)
            break
        step += 1
    logger.info("Ended execution of rule %s at end_step %s", type(rule_obj).__name__, step - 1)


def _last_step(rule_obj):
    try:
        steps = rule_obj.base_trial.steps()
    except Exception:  # noqa: BLE001 - a trial without steps(): run to end_step
        return None
    return max(steps) if steps else -1


__all__ = ["invoke_rule"]
