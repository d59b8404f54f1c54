"""smdebug's reader API over Vizsla's tensor store, for notebooks written against `smdebug.trials`.

    from vizsla.debugger.smdebug_compat import ModeKeys, create_trial   # no smdebug needed
    trial = create_trial("runs/job-001")                                 # a job dir or its debug/ folder
    trial.tensor("CrossEntropyLoss_output_0").steps(mode=ModeKeys.TRAIN)

Script-mode processes import the same objects as `smdebug.trials`, `smdebug.core.modes` and
`smdebug.exceptions` (the shim in vizsla/scriptmode/smdebug_shim), so `except TensorUnavailableForStep`
in a notebook catches what this reader raises. Semantics follow smdebug (SD:smdebug/trials/trial.py,
core/tensor.py, exceptions.py): the default mode is GLOBAL; a step that was not saved raises; a tensor saved
as reductions only raises TensorUnavailableForStep(has_reductions=True) from `value` and answers
`reduction_value`. GLOBAL steps: smdebug numbers every step of every mode; the store keeps only saved steps,
so here the GLOBAL step of a saved (mode, step) is its position in the store's write order (0, 1, ...).
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any

import numpy as np

from vizsla.debugger.reader import Trial, open_trial


class ModeKeys(enum.Enum):
    """smdebug's modes (smdebug.modes is this enum)."""

    TRAIN = 1
    EVAL = 2
    PREDICT = 3
    GLOBAL = 4


def mode_key(mode: Any) -> ModeKeys:
    """A ModeKeys from an enum member (ours or any enum named TRAIN/EVAL/...), a name or smdebug's int."""
    if isinstance(mode, ModeKeys):
        return mode
    if isinstance(mode, enum.Enum):
        return ModeKeys[mode.name.upper()]
    if isinstance(mode, int):
        return ModeKeys(mode)
    if isinstance(mode, str):
        return ModeKeys[mode.rsplit(".", 1)[-1].upper()]
    raise TypeError(f"invalid mode {mode!r}: use smdebug.modes.TRAIN / EVAL / PREDICT / GLOBAL")


# --- smdebug.exceptions (same classes, same messages) ------------------------------------------------------
class InvalidCollectionConfiguration(Exception):
    def __init__(self, c_name: str) -> None:
        self.c_name = c_name

    def __str__(self) -> str:
        return (
            f"Collection {self.c_name} has not been configured. Please fill in tensor_name or include_regex"
        )


class StepNotYetAvailable(Exception):
    def __init__(self, step: int, mode: Any) -> None:
        self.step, self.mode = step, mode_key(mode)

    def __str__(self) -> str:
        return f"Step {self.step} of mode {self.mode.name} not yet available"


class MissingCollectionFiles(Exception):
    def __str__(self) -> str:
        return "Training job has ended. All the collection files could not be loaded"


class IndexReaderException(Exception):
    def __init__(self, message: str) -> None:
        self.message = message

    def __str__(self) -> str:
        return self.message


class StepUnavailable(Exception):
    def __init__(self, step: int, mode: Any) -> None:
        self.step, self.mode = step, mode_key(mode)

    def __str__(self) -> str:
        return f"Step {self.step} of mode {self.mode.name} is not available as it was not saved"


class TensorUnavailableForStep(Exception):
    def __init__(
        self, tname: str, step: int, mode: Any = ModeKeys.GLOBAL, has_reductions: bool = False
    ) -> None:
        self.tname, self.step, self.mode = tname, step, mode_key(mode)
        self.has_reductions = has_reductions

    def __str__(self) -> str:
        msg = (
            f"Value for tensor {self.tname} is not available for step {self.step} "
            f"with mode {self.mode.name} as it was not saved."
        )
        if self.has_reductions:
            msg += (
                "This tensor has reductions saved for this step. You might want to query for the reductions."
            )
        return msg


class ShapeUnavailableForStep(Exception):
    def __init__(self, tname: str, step: int, mode: Any = ModeKeys.GLOBAL) -> None:
        self.tname, self.step, self.mode = tname, step, mode_key(mode)

    def __str__(self) -> str:
        return (
            f"Shape for tensor {self.tname} is not available for step {self.step} "
            f"with mode {self.mode.name} as it was not saved."
        )


class TensorUnavailable(Exception):
    def __init__(self, tname: str) -> None:
        self.tname = tname

    def __str__(self) -> str:
        return f"Tensor {self.tname} was not saved."


class InvalidWorker(Exception):
    def __init__(self, worker: str) -> None:
        self.worker = worker

    def __str__(self) -> str:
        return f"Invalid Worker: {self.worker}"


class NoMoreProfilerData(Exception):
    def __init__(self, timestamp: float) -> None:
        self.timestamp = timestamp
        self.msg = f"Looking for timestamp {timestamp} and reached end of training."

    def __str__(self) -> str:
        return self.msg


class NoMoreData(Exception):
    def __init__(self, step: int, mode: Any, last_step: int) -> None:
        self.step, self.mode, self.last_step = step, mode_key(mode), last_step
        self.msg = (
            f"Looking for step {step} of mode {self.mode.name} and reached end of training. "
            f"Max step available is {last_step}"
        )

    def __str__(self) -> str:
        return self.msg


class RuleEvaluationConditionMet(Exception):
    def __init__(self, rule_name: str, step: int) -> None:
        self.rule_name, self.step = rule_name, step

    def __str__(self) -> str:
        return (
            f"Evaluation of the rule {self.rule_name} at step {self.step} resulted in the condition being met"
        )


class InsufficientInformationForRuleInvocation(Exception):
    def __init__(self, rule_name: str, message: str) -> None:
        self.rule_name, self.message = rule_name, message

    def __str__(self) -> str:
        return f"Insufficient information to invoke rule {self.rule_name}: {self.message}"


# --- the trial ---------------------------------------------------------------------------------------------
_MODES = (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT)
WORKER = "worker_0"


def create_trial(path: str | Path, name: str | None = None, **_ignored: Any) -> SmdebugTrial:
    """smdebug's `create_trial`: a job directory, its debug/ folder, or the hook's out_dir.

    smdebug's other arguments (range_steps, check, index_mode, cache) are accepted and ignored.
    """
    path = Path(str(path).removeprefix("file://"))
    if not path.exists():
        raise FileNotFoundError(f"no debugger output at {path}")
    return SmdebugTrial(open_trial(path), name or path.name)


class SmdebugTrial:
    """smdebug's Trial interface, answered from a Vizsla store (`vizsla.debugger.reader.Trial`)."""

    def __init__(self, trial: Trial, name: str) -> None:
        self.trial = trial
        self.name = name
        self.path = str(trial.root)

    def __repr__(self) -> str:
        return f"<SmdebugTrial name={self.name} path={self.path} tensors={len(self.tensor_names())}>"

    # steps ------------------------------------------------------------------------------------------
    def _global(self) -> list[tuple[str, int]]:
        """(mode, mode step) of every saved step in write order: the GLOBAL numbering."""
        entries = [
            (info.get("time", 0.0), mode.name, step)
            for mode in _MODES
            for step in self.trial.steps(mode.name)
            if (info := self.trial.step_info(step, mode.name)) is not None
        ]
        return [(mode, step) for _, mode, step in sorted(entries)]

    def steps(self, mode: Any = ModeKeys.GLOBAL, show_incomplete_steps: bool = False) -> list[int]:
        key = mode_key(mode)
        if key is ModeKeys.GLOBAL:
            return list(range(len(self._global())))
        return self.trial.steps(key.name)

    def modes(self) -> list[ModeKeys]:
        return [ModeKeys[m] for m in self.trial.modes() if m in ModeKeys.__members__]

    def mode(self, global_step: int) -> ModeKeys:
        return ModeKeys[self._locate(global_step)[0]]

    def mode_step(self, global_step: int) -> int:
        return self._locate(global_step)[1]

    def global_step(self, mode: Any, mode_step: int) -> int:
        key = mode_key(mode)
        if key is ModeKeys.GLOBAL:
            return mode_step
        try:
            return self._global().index((key.name, mode_step))
        except ValueError:
            raise StepUnavailable(mode_step, key) from None

    def _locate(self, global_step: int) -> tuple[str, int]:
        order = self._global()
        if not 0 <= global_step < len(order):
            raise StepUnavailable(global_step, ModeKeys.GLOBAL)
        return order[global_step]

    def has_passed_step(self, step: int, mode: Any = ModeKeys.GLOBAL) -> Any:
        available = self.steps(mode)
        if step in available:
            return StepState.AVAILABLE
        if (available and step < available[-1]) or self.training_ended():
            return StepState.UNAVAILABLE
        return StepState.NOT_YET_AVAILABLE

    def training_ended(self) -> bool:
        return self.trial.is_complete()

    @property
    def last_complete_step(self) -> int:
        return len(self._global()) - 1

    @property
    def loaded_all_steps(self) -> bool:
        return self.trial.is_complete()

    def workers(self) -> list[str]:
        return [WORKER]

    def refresh(self) -> None:
        self.trial.refresh()

    maybe_refresh = refresh

    # tensors ----------------------------------------------------------------------------------------
    def tensor_names(
        self,
        *,
        step: int | None = None,
        mode: Any = ModeKeys.GLOBAL,
        regex: str | list[str] | None = None,
        collection: Any = None,
        show_prefixed_tensors: bool = False,
    ) -> list[str]:
        if regex is not None and collection is not None:
            raise ValueError("Only one of `regex` or `collection` can be passed to this method")
        key = mode_key(mode)
        if step is not None:
            where = self._locate(step) if key is ModeKeys.GLOBAL else (key.name, step)
            info = self.trial.step_info(where[1], where[0]) or {}
            names = set(info.get("tensors", []))
        else:
            names = set(self.trial.tensor_names(mode=None if key is ModeKeys.GLOBAL else key.name))
        if collection is not None:
            cname = (
                collection if isinstance(collection, str) else getattr(collection, "name", str(collection))
            )
            names &= set(self.trial.tensor_names(collection=cname))
        if regex is not None:
            patterns = [regex] if isinstance(regex, str) else list(regex)
            names = {n for n in names if any(re.search(p, n) for p in patterns)}
        return sorted(names)

    def has_tensor(self, tname: str) -> bool:
        return self.trial.has_tensor(tname)

    def tensor(self, tname: str) -> SmdebugTensor:
        if not self.trial.has_tensor(tname):
            raise TensorUnavailable(tname)
        return SmdebugTensor(self, tname)

    def collections(self) -> dict[str, Any]:
        return {name: self.collection(name) for name in self.trial.collections()}

    def collection(self, name: str) -> Any:
        config = self.trial.collection_config(name)
        if config is None:
            raise KeyError(
                f"collection {name} was not recorded; recorded: {', '.join(self.trial.collections())}"
            )
        return _CollectionView(name, config, self.trial.tensor_names(collection=name))


class StepState(enum.Enum):
    UNAVAILABLE = 0
    AVAILABLE = 1
    NOT_YET_AVAILABLE = 2


class _CollectionView:
    """What a notebook reads from `trial.collection(name)`."""

    def __init__(self, name: str, config: dict[str, Any], tensor_names: list[str]) -> None:
        self.name = name
        self.include_regex = [config.get("include_regex")] if config.get("include_regex") else []
        self.tensor_names = set(tensor_names)
        self.config = config

    def __repr__(self) -> str:
        return f"<Collection {self.name}: {len(self.tensor_names)} tensors>"


# smdebug reduction name -> how to get it from the store's reductions (abs=True variants as in smdebug)
_REDUCTIONS = ("min", "max", "mean", "std", "variance", "sum", "prod", "l1", "l2")


class SmdebugTensor:
    """smdebug's Tensor interface: steps, value, reduction_value, values, shape."""

    def __init__(self, trial: SmdebugTrial, name: str) -> None:
        self.trial = trial
        self.name = name
        self._tensor = trial.trial.tensor(name)

    def __repr__(self) -> str:
        return f"<Tensor {self.name}>"

    def _where(self, step: int, mode: Any) -> tuple[str, int]:
        key = mode_key(mode)
        if key is ModeKeys.GLOBAL:
            return self.trial._locate(step)
        return key.name, step

    def steps(self, mode: Any = ModeKeys.GLOBAL, show_incomplete_steps: bool = False) -> list[int]:
        key = mode_key(mode)
        if key is not ModeKeys.GLOBAL:
            return self._tensor.steps(key.name)
        saved = {m.name: set(self._tensor.steps(m.name)) for m in _MODES}
        return [g for g, (m, s) in enumerate(self.trial._global()) if s in saved[m]]

    def _check(self, step: int, mode: Any) -> tuple[str, int]:
        mode_name, mode_step = self._where(step, mode)
        if mode_step not in self._tensor.steps(mode_name):
            if mode_step in self.trial.trial.steps(mode_name):
                raise TensorUnavailableForStep(self.name, step, mode)
            raise StepUnavailable(step, mode)
        return mode_name, mode_step

    def value(self, step_num: int, mode: Any = ModeKeys.GLOBAL, worker: str | None = None) -> np.ndarray:
        mode_name, mode_step = self._check(step_num, mode)
        value = self._tensor.value(mode_step, mode_name)
        if value is None:
            has = self._tensor.reduction(mode_step, "mean", mode_name) is not None
            raise TensorUnavailableForStep(self.name, step_num, mode, has_reductions=has)
        return value

    def values(self, mode: Any = ModeKeys.GLOBAL, worker: str | None = None) -> dict[int, np.ndarray]:
        out = {}
        for step in self.steps(mode):
            try:
                out[step] = self.value(step, mode)
            except TensorUnavailableForStep:
                continue
        return out

    def reduction_value(
        self,
        step_num: int,
        reduction_name: str,
        mode: Any = ModeKeys.GLOBAL,
        worker: str | None = None,
        abs: bool = False,  # noqa: A002 - smdebug's parameter name
    ) -> float:
        if reduction_name not in _REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction_name}; known: {', '.join(_REDUCTIONS)}")
        mode_name, mode_step = self._check(step_num, mode)
        raw = self._tensor.value(mode_step, mode_name)
        if raw is not None:
            x = np.asarray(raw, dtype=np.float64)
            x = np.abs(x) if abs else x
            functions = {"variance": np.var, "l1": lambda a: np.abs(a).sum(), "l2": np.linalg.norm}
            function = functions.get(reduction_name) or getattr(np, reduction_name)
            return float(function(x))
        value = self._stored_reduction(mode_step, mode_name, reduction_name, abs)
        if value is None:
            raise TensorUnavailableForStep(self.name, step_num, mode)
        return value

    def _stored_reduction(self, step: int, mode: str, name: str, absolute: bool) -> float | None:
        get = self._tensor.reduction
        if name in ("l1", "l2"):
            return get(step, name, mode)
        if absolute:
            if name == "mean":
                l1, shape = get(step, "l1", mode), self._tensor.shape(step, mode)
                return None if l1 is None or shape is None else l1 / max(1, int(np.prod(shape)))
            if name == "max":
                lo, hi = get(step, "min", mode), get(step, "max", mode)
                return None if lo is None or hi is None else max(abs(lo), abs(hi))
            return None
        if name == "variance":
            std = get(step, "std", mode)
            return None if std is None else std * std
        if name in ("min", "max", "mean", "std"):
            return get(step, name, mode)
        if name == "sum":
            mean, shape = get(step, "mean", mode), self._tensor.shape(step, mode)
            return None if mean is None or shape is None else mean * int(np.prod(shape))
        return None

    def reduction_values(self, step_num: int, mode: Any = ModeKeys.GLOBAL, worker: str | None = None) -> dict:
        out = {}
        for name in _REDUCTIONS:
            for absolute in (False, True):
                try:
                    out[(name, absolute)] = self.reduction_value(step_num, name, mode, abs=absolute)
                except (TensorUnavailableForStep, ValueError):
                    continue
        return out

    def shape(self, step_num: int, mode: Any = ModeKeys.GLOBAL, worker: str | None = None) -> tuple[int, ...]:
        mode_name, mode_step = self._check(step_num, mode)
        shape = self._tensor.shape(mode_step, mode_name)
        if shape is None:
            raise ShapeUnavailableForStep(self.name, step_num, mode)
        return shape

    def workers(self, step_num: int, mode: Any = ModeKeys.GLOBAL) -> list[str]:
        self._check(step_num, mode)
        return [WORKER]

    def prev_steps(self, step: int, n: int, mode: Any = ModeKeys.GLOBAL) -> list[int]:
        earlier = [s for s in self.steps(mode) if s < step]
        return earlier[-n:]
