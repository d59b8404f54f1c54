"""Run debugger rules beside training (a callback with a background thread) or on a stored trial.

`RuleRunner` is a trainer Callback placed after the DebugHook. At fit_start it starts a thread that, every
`poll_interval` seconds, reads newly written steps through the reader and feeds them to each rule, so rules
never block a training step. It writes `<debug>/rules.json` atomically whenever a status or finding changes:

    {"rules": [{"name", "status", "parameters", "actions", "findings": [Finding...], "findings_total",
                "steps_evaluated": {mode: n}, "error": str | null, "note": str | null}], "updated": iso time}

Status: InProgress while the job runs, then NoIssuesFound / IssuesFound; NoData when no tensor of the
rule's collections was ever recorded, so it was not evaluated (`note` says why); Error when the rule raised
(the message is kept, training goes on); Skipped when the rule cannot apply to this job (`note` says why).
On a rule's first finding its actions run: "log" (a warning in the job log), "stop" (the job ends Stopped
with the finding as reason), "command:<shell>" (the finding as JSON on stdin, 10 s timeout) and
"webhook:<url>" (the finding POSTed as JSON, 5 s timeout). At fit_end, after the hook has closed the store,
the remaining steps are evaluated and every rule's `finish` runs.

`evaluate_offline(trial, rule_specs)` re-runs rules on a finished (or running) job's stored tensors.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vizsla.callbacks import Callback, TrainState
from vizsla.debugger.rules.base import BaseRule, Finding
from vizsla.debugger.rules.registry import DEFAULT_RULES, create_rule, get_rule_class
from vizsla.debugger.threads import lower_thread_priority
from vizsla.errors import SpecError
from vizsla.infra.io import atomic_write_json
from vizsla.jobdir import JobDir

log = logging.getLogger("vizsla.debugger")

RULES_FILE = "rules.json"
MAX_FINDINGS = 100  # findings kept per rule in rules.json; findings_total counts them all
COMMAND_TIMEOUT_S = 10.0
WEBHOOK_TIMEOUT_S = 5.0
END_WAIT_S = 30.0  # how long fit_end waits for the hook's END marker
# Rules look at new steps twice a second, so a "stop" action ends a diverging job within a few steps; each
# step is evaluated once whatever the interval, on a thread nicer than the training threads.
POLL_INTERVAL_S = 0.5


@dataclass
class RuleEntry:
    """One configured rule and everything the runner knows about it."""

    rule: BaseRule
    actions: list[str]
    status: str = "InProgress"
    findings: list[Finding] = field(default_factory=list)
    findings_total: int = 0
    steps_evaluated: dict[str, int] = field(default_factory=dict)
    last_step: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    note: str | None = None
    saw_data: bool = False  # a tensor of the rule's collections (or regex) was found at least once

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def active(self) -> bool:
        return self.status not in ("Error", "Skipped")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "parameters": self.rule.parameters(),
            "actions": list(self.actions),
            "findings": [f.to_dict() for f in self.findings],
            "findings_total": self.findings_total,
            "steps_evaluated": dict(self.steps_evaluated),
            "error": self.error,
            "note": self.note,
        }


def _field(spec: Any, key: str, default: Any) -> Any:
    if isinstance(spec, dict):
        return spec.get(key, default)
    return getattr(spec, key, default)


def build_entries(rule_specs: Iterable[Any] | None, *, default_rules: bool) -> list[RuleEntry]:
    """Rule entries from RuleSpec objects, dicts or names after the default set (a named rule overrides)."""
    chosen: dict[str, tuple[str, dict[str, Any], list[str]]] = {}
    if default_rules:
        for name in DEFAULT_RULES:
            chosen[name] = (name, {}, ["log"])
    for spec in rule_specs or ():
        name = spec if isinstance(spec, str) else _field(spec, "name", None)
        if not name:
            raise SpecError(f"debug rule without a name: {spec!r}")
        params = {} if isinstance(spec, str) else dict(_field(spec, "parameters", None) or {})
        actions = ["log"] if isinstance(spec, str) else list(_field(spec, "actions", None) or ["log"])
        key = get_rule_class(name).name or name
        chosen[key] = (name, params, actions)
    entries = []
    for name, params, actions in chosen.values():
        rule = create_rule(name, **params)
        if getattr(rule, "stop_training_on_fire", False) and "stop" not in actions:
            actions = [*actions, "stop"]
        entries.append(RuleEntry(rule, actions))
    return entries


# A rule that never found a tensor to look at has not been evaluated: "NoIssuesFound" would claim a clean
# bill of health it never checked (SageMaker's rule containers fail such a rule's evaluation instead).
NO_DATA = "NoData"


class _WatchedTrial:
    """The trial as one rule sees it: notes whether any tensor the rule asked for exists."""

    def __init__(self, trial: Any, entry: RuleEntry) -> None:
        self._trial = trial
        self._entry = entry

    def tensor_names(self, *args: Any, **kwargs: Any) -> Any:
        names = self._trial.tensor_names(*args, **kwargs)
        if names:
            self._entry.saw_data = True
        return names

    def tensor(self, name: str, *args: Any, **kwargs: Any) -> Any:
        tensor = self._trial.tensor(name, *args, **kwargs)
        if not self._entry.saw_data:
            try:
                self._entry.saw_data = bool(tensor.steps())
            except Exception:  # noqa: BLE001 - a missing tensor is the rule's own business
                pass
        return tensor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


def no_data_reason(entry: RuleEntry, trial: Any) -> str | None:
    """Why ENTRY could not be evaluated on TRIAL (None when it could): no steps, or none of its tensors."""
    needed = tuple(entry.rule.collections_needed)
    if not needed or entry.saw_data:
        return None
    if trial is None:
        return "no tensors were recorded (the job ended before the hook wrote any)"
    wanted = ", ".join(needed)
    modes = "/".join(entry.rule.modes) or "any"
    if not entry.steps_evaluated:
        return f"not evaluated: no {modes} steps were recorded"
    return f"not evaluated: no recorded tensor matched its collections ({wanted})"


def _finding_payload(entry: RuleEntry, finding: Finding, job: str | None) -> dict[str, Any]:
    return {"job": job, "status": entry.status, **finding.to_dict()}


def modes_to_evaluate(modes: tuple[str, ...], trial: Any) -> tuple[str, ...]:
    """A rule's modes, or GLOBAL for a training rule when the trial has only GLOBAL steps.

    A script whose smdebug hook never calls set_mode records every step as GLOBAL; SageMaker's rules read
    GLOBAL steps, so a rule watching TRAIN reads them too rather than seeing nothing at all."""
    if "TRAIN" not in modes or any(trial.steps(mode) for mode in modes):
        return modes
    return ("GLOBAL",) if trial.steps("GLOBAL") else modes


class RuleEngine:
    """Evaluates rule entries over the new steps of a trial; shared by the live runner and offline runs."""

    def __init__(self, entries: list[RuleEntry]) -> None:
        self.entries = entries
        self.version = 0  # bumped on every change worth writing
        self.on_first_finding: Any = None  # callable(entry, finding), set by the live runner

    def cycle(self, trial: Any, *, now: float | None = None) -> None:
        """Feed every rule the steps that appeared since the last cycle (and poll live rules)."""
        for entry in self.entries:
            if not entry.active:
                continue
            watched = _WatchedTrial(trial, entry)
            try:
                for mode in modes_to_evaluate(entry.rule.modes, trial):
                    last = entry.last_step.get(mode, -1)
                    for step in [s for s in trial.steps(mode) if s > last]:
                        finding = entry.rule.evaluate(watched, step, mode)
                        entry.last_step[mode] = step
                        entry.steps_evaluated[mode] = entry.steps_evaluated.get(mode, 0) + 1
                        if finding is not None:
                            self.record(entry, finding)
                if now is not None:
                    finding = entry.rule.poll(watched, now)
                    if finding is not None:
                        self.record(entry, finding)
            except Exception as exc:  # noqa: BLE001 - a broken rule is reported, never fatal
                self.fail(entry, exc)

    def finish(self, trial: Any) -> None:
        """Run each rule's `finish` and settle InProgress rules to NoIssuesFound / IssuesFound, or NoData
        (with the reason in `note`) when none of the rule's tensors was ever recorded."""
        for entry in self.entries:
            if not entry.active:
                continue
            try:
                finding = entry.rule.finish(_WatchedTrial(trial, entry))
                if finding is not None:
                    self.record(entry, finding)
            except Exception as exc:  # noqa: BLE001
                self.fail(entry, exc)
                continue
            if entry.status == "InProgress":
                self.settle(entry, trial)

    def settle(self, entry: RuleEntry, trial: Any) -> None:
        """An InProgress rule at the end: NoData when it never had a tensor to check, else NoIssuesFound."""
        reason = no_data_reason(entry, trial)
        if reason is not None:
            entry.status, entry.note = NO_DATA, reason
        else:
            entry.status = "NoIssuesFound"
        self.version += 1

    def record(self, entry: RuleEntry, finding: Finding) -> None:
        first = entry.findings_total == 0
        entry.findings_total += 1
        if len(entry.findings) < MAX_FINDINGS:
            entry.findings.append(finding)
        entry.status = "IssuesFound"
        self.version += 1
        if first and self.on_first_finding is not None:
            self.on_first_finding(entry, finding)

    def fail(self, entry: RuleEntry, exc: Exception) -> None:
        entry.status, entry.error = "Error", f"{type(exc).__name__}: {exc}"
        self.version += 1
        log.error("debugger rule %s failed and is disabled: %s", entry.name, entry.error, exc_info=exc)

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": [entry.to_json() for entry in self.entries],
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def _uses_feature_cache(spec: Any) -> bool:
    train = getattr(spec, "train", None)
    return bool(train is not None and train.finetune == "head" and train.feature_cache == "auto")


class RuleRunner(Callback):
    """Evaluates rules in a background thread while the job trains, applies actions, writes rules.json."""

    def __init__(
        self,
        debug_spec: Any,
        job_dir: Any,
        hook: Any = None,
        *,
        poll_interval: float = POLL_INTERVAL_S,
        end_wait: float = END_WAIT_S,
        trial: Any = None,
    ) -> None:
        job_dir = job_dir if isinstance(job_dir, JobDir) else JobDir(job_dir)
        self.debug_dir = job_dir.debug_store(getattr(debug_spec, "out_dir", None))
        self.rules_file = self.debug_dir / RULES_FILE
        self.hook = hook
        self.poll_interval = poll_interval
        self.end_wait = end_wait
        self.engine = RuleEngine(
            build_entries(
                getattr(debug_spec, "rules", ()), default_rules=getattr(debug_spec, "default_rules", True)
            )
        )
        self.engine.on_first_finding = self._act
        self._state: TrainState | None = None
        self._job: str | None = None
        self._trial: Any = trial  # None: open the store once the hook has created it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written = -1
        self._loop_error: str | None = None

    # trainer events -----------------------------------------------------------------------------------
    def fit_start(self, state: TrainState) -> None:
        self._state = state
        self._job = getattr(state.spec, "job_name", None) if state.spec is not None else None
        if _uses_feature_cache(state.spec):
            for entry in self.engine.entries:
                if entry.rule.needs_images:
                    entry.status = "Skipped"
                    entry.note = "the head trains on cached backbone features: no images reach the model"
        self._write(force=True)
        self._thread = threading.Thread(target=self._loop, name="vizsla-debugger-rules", daemon=True)
        self._thread.start()

    def fit_end(self, state: TrainState) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.end_wait)
        deadline = time.monotonic() + self.end_wait
        trial = self._open()
        while trial is not None and not trial.is_complete() and time.monotonic() < deadline:
            time.sleep(0.05)  # the hook closes the store at its own fit_end, just before ours
        with self._lock:
            if trial is not None:
                self.engine.cycle(trial)
                self.engine.finish(trial)
            else:
                for entry in self.engine.entries:
                    if entry.status == "InProgress":
                        self.engine.settle(entry, None)
            self._write(force=True)
        self._state = None

    # background loop ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        lower_thread_priority()
        while not self._stop.wait(self.poll_interval):
            trial = self._open()
            if trial is None:
                continue
            try:
                with self._lock:
                    self.engine.cycle(trial, now=time.monotonic())
                    self._write()
            except Exception as exc:  # noqa: BLE001 - the rule thread must never take the job down
                message = f"{type(exc).__name__}: {exc}"
                if message != self._loop_error:
                    log.warning("debugger rule runner: %s", message)
                    self._loop_error = message

    def _open(self) -> Any:
        """The trial once the hook has created the store (None before that)."""
        if self._trial is None and (self.debug_dir / "index.jsonl").is_file():
            from vizsla.debugger.reader import open_trial

            self._trial = open_trial(self.debug_dir)
        return self._trial

    def _write(self, *, force: bool = False) -> None:
        if not force and self.engine.version == self._written:
            return
        self._written = self.engine.version
        try:
            atomic_write_json(self.rules_file, self.engine.to_json())
        except OSError as exc:
            log.warning("debugger: cannot write %s: %s", self.rules_file, exc)

    # actions ------------------------------------------------------------------------------------------
    def _act(self, entry: RuleEntry, finding: Finding) -> None:
        """Run the entry's actions for its first finding; an action that fails is logged, never raised."""
        for action in entry.actions:
            kind, _, target = action.partition(":")
            try:
                if kind == "log":
                    log.warning("debugger rule %s: %s", entry.name, finding.message)
                elif kind == "stop":
                    state = self._state
                    if state is not None and state.status == "InProgress":
                        log.warning("debugger rule %s stops the job: %s", entry.name, finding.message)
                        state.request_stop(f"debugger rule {entry.name}: {finding.message}")
                elif kind == "command":
                    run_command(target, _finding_payload(entry, finding, self._job))
                elif kind == "webhook":
                    post_webhook(target, _finding_payload(entry, finding, self._job))
                else:
                    log.warning("debugger rule %s: unknown action %r", entry.name, action)
            except Exception as exc:  # noqa: BLE001 - an action must never break the runner or the job
                log.warning("debugger rule %s: action %r failed: %s", entry.name, action, exc)


def run_command(command: str, payload: dict[str, Any]) -> None:
    """Run a shell command with the finding as JSON on stdin (10 s timeout); log a non-zero exit."""
    result = subprocess.run(
        command,
        shell=True,
        input=json.dumps(payload),
        text=True,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        log.warning(
            "debugger action command %r exited %d: %s",
            command,
            result.returncode,
            result.stderr.strip()[-500:],
        )


def post_webhook(url: str, payload: dict[str, Any]) -> None:
    """POST the finding as JSON to a URL (5 s timeout)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"webhook URL must start with http:// or https:// (got {url!r})")
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:  # noqa: S310 - user's URL
        response.read()


def create_rule_runner(debug_spec: Any, job_dir: Any, hook: Any = None) -> RuleRunner:
    """The runner callback for `create_debug_callbacks` (placed after the hook)."""
    return RuleRunner(debug_spec, job_dir, hook=hook)


def evaluate_offline(
    trial: Any, rule_specs: Iterable[Any] | None = None, *, job_spec: Any = None
) -> dict[str, Any]:
    """Re-run rules on stored tensors and return the rules.json content (actions are listed, not run).

    `trial` is a Trial (or a job / debug directory path); `rule_specs` are RuleSpec objects, dicts or names
    (None or empty: the default set). Rules that need the live wall clock (StalledTraining) are left out of
    the default set and reported as Error when asked for by name.
    """
    if isinstance(trial, (str, Path)):
        from vizsla.debugger.reader import open_trial

        trial = open_trial(trial)
    specs = list(rule_specs or [])
    entries = build_entries(specs, default_rules=not specs)
    if not specs:
        entries = [e for e in entries if not e.rule.live_only]
    for entry in entries:
        if entry.rule.live_only:
            entry.status = "Error"
            entry.error = f"{entry.name} needs a live job (wall clock); it cannot be re-run on stored tensors"
        elif entry.rule.needs_images and _uses_feature_cache(job_spec):
            entry.status, entry.note = "Skipped", "the head trained on cached backbone features"
    engine = RuleEngine(entries)
    engine.cycle(trial)
    engine.finish(trial)
    return engine.to_json()
