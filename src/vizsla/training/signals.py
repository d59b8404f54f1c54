"""SIGTERM, SIGINT (Ctrl-C) and SIGHUP (closed terminal) end a job gracefully, in every phase.

Before the training loop (data validation, feature extraction, model creation) there is nothing to save:
the signal raises `JobStopped` at once and the job ends Stopped (a feature extraction keeps its rows for the
next run). From the loop on, the signal asks the trainer to stop at its next step: it writes a checkpoint
where it is (mid-epoch if need be, so `--resume` continues exactly) and skips what is left of an
evaluation. A second Ctrl-C raises KeyboardInterrupt at once. SIGHUP also points stdout and stderr at
/dev/null: the terminal is gone, and writing to it would fail the job.

Only the main thread can handle signals; elsewhere (a job run in a thread) this does nothing. Data loader
workers ignore them (`vizsla.data.dataset.ignore_stop_signals`): stopping is the main process's call.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class JobStopped(BaseException):
    """A stop signal arrived before training started. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way mistakes it for a failure."""


class StopSignals:
    """Handles SIGNALS for one job: raise JobStopped during setup, ask the loop to stop once it runs."""

    def __init__(self, phase: Callable[[], str | None] = lambda: None) -> None:
        """PHASE names the phase running now, for the stop reason ("received SIGTERM during validate")."""
        self.reason: str | None = None  # set when the first signal arrived
        self.phase = phase
        self._state: Any = None  # the TrainState whose loop is asked to stop, once training runs
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @property
    def received(self) -> bool:
        """Whether a stop signal arrived (a stop a callback asked for is not one)."""
        return self.reason is not None

    def watch(self, state: Any) -> None:
        """From now on a signal asks STATE's loop to stop at its next step instead of raising."""
        self._state = state
        if self.reason is not None:  # arrived between the end of setup and now
            state.request_stop(self.reason)

    def _handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            detach_from_terminal()
        if self.reason is None:
            phase = self.phase() or ("startup" if self._state is None else None)  # as PhaseTimer names it
            self.reason = f"received {name}" + (f" during {phase}" if phase else "")
        elif self._state is not None:  # the loop is stopping already
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the checkpoint
            return
        if self._state is None:  # (again, should the first have landed where it was swallowed: a __del__)
            raise JobStopped(self.reason)
        self._state.request_stop(self.reason)


def detach_from_terminal() -> None:
    """Point stdin, stdout and stderr at /dev/null: after a hang-up, writes to the terminal fail (EIO)."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    for fd in (0, 1, 2):
        try:
            os.dup2(null, fd)
        except OSError:
            pass
    os.close(null)

