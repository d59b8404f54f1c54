"""smdebug.rules.req_tensors (SD smdebug/rules/req_tensors.py): bulk prefetch of tensors for a rule.

Vizsla's reader reads tensors on demand, so fetching is a no-op; `add` only records what was asked for."""


class RequiredTensorsForTrial:
    """The tensors (and steps) a rule declared it needs from one trial."""

    def __init__(self, trial):
        self.trial = trial
        self._tensors = {}

    def add(self, name, steps, should_match_regex=False):
        self._tensors.setdefault(name, set()).update(steps)

    def get_names(self):
        return dict(self._tensors)

    def fetch(self):
        """Nothing to prefetch: the reader loads what is asked for."""


class RequiredTensors:
    """RequiredTensorsForTrial per trial (the base trial and the others)."""

    def __init__(self, base_trial, other_trials=None):
        self.base_trial = base_trial
        self.other_trials = list(other_trials or [])
        self.clear()

    def clear(self):
        self._per_trial = {id(t): RequiredTensorsForTrial(t) for t in [self.base_trial, *self.other_trials]}

    def _get_trial_obj(self, trial):
        return self._per_trial.setdefault(id(trial), RequiredTensorsForTrial(trial))

    def add(self, name, steps, trial=None, should_match_regex=False):
        self._get_trial_obj(trial or self.base_trial).add(name, steps, should_match_regex)

    def get(self):
        return list(self._per_trial.values())

    def fetch(self):
        """Nothing to prefetch: the reader loads what is asked for."""


__all__ = ["RequiredTensors", "RequiredTensorsForTrial"]
