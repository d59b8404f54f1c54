"""output/failure as sagemaker-training-toolkit writes it for a script that exits non-zero.

STK (process.py `watch` / `check_error`, errors.py `_CalledProcessError.__str__`): each of stdout and stderr
is kept from the first line that names a Python (or MPI) exception class on; the two are joined with a space,
duplicate lines dropped, and the text goes into

    ExecuteUserScriptError:
    ExitCode <rc>
    ErrorMessage "<text>"
    [ExtraInfo "OutOfMemory: Process killed by SIGKILL (signal 9)"]   (exit code 137)
    Command "<argv joined with spaces>"
"""

from __future__ import annotations

import signal

# STK's _PYTHON_ERRORS_ (the builtins named *Error/*Exception plus a few framework strings) and _MPI_ERRORS_.
PYTHON_ERRORS = (
    "BaseException",
    "Exception",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BlockingIOError",
    "BrokenPipeError",
    "BufferError",
    "ChildProcessError",
    "ConnectionAbortedError",
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "EOFError",
    "EnvironmentError",
    "FileExistsError",
    "FileNotFoundError",
    "FloatingPointError",
    "IOError",
    "ImportError",
    "IndentationError",
    "IndexError",
    "InterruptedError",
    "IsADirectoryError",
    "KeyError",
    "LookupError",
    "MemoryError",
    "ModuleNotFoundError",
    "NameError",
    "NotADirectoryError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PermissionError",
    "ProcessLookupError",
    "RecursionError",
    "ReferenceError",
    "RuntimeError",
    "SyntaxError",
    "SystemError",
    "TabError",
    "TimeoutError",
    "TypeError",
    "UnboundLocalError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "UnicodeError",
    "UnicodeTranslateError",
    "ValueError",
    "ZeroDivisionError",
    "Invalid requirement",
    "ResourceExhaustedError",
    "OutOfRangeError",
    "InvalidArgumentError",
)
MPI_ERRORS = ("mpirun.real", "ORTE")
ERROR_MARKERS = PYTHON_ERRORS + MPI_ERRORS
MAX_ERROR_CHARS = 64 * 1024  # keep memory bounded when a script prints a flood after its exception
OOM_INFO = "OutOfMemory: Process killed by SIGKILL (signal 9)"
SIGKILL_EXIT = 128 + signal.SIGKILL  # 137: what a shell reports, and what STK tests for


class ErrorLines:
    """One stream's error text: every line from the first one naming an exception class on."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._chars = 0

    @property
    def started(self) -> bool:
        return bool(self.lines)

    def feed(self, line: str) -> None:
        if not self.started and not any(marker in line for marker in ERROR_MARKERS):
            return
        if self._chars >= MAX_ERROR_CHARS:
            return
        kept = line.strip(" :\n") + "\n"
        self.lines.append(kept)
        self._chars += len(kept)

    def text(self) -> str:
        return " ".join(self.lines)


def error_message(stdout: ErrorLines, stderr: ErrorLines) -> str:
    """The ErrorMessage of STK: both streams' texts joined, duplicate lines removed, stripped."""
    joined = " ".join([stdout.text(), stderr.text()])
    return "\n".join(dict.fromkeys(joined.split("\n"))).strip()


def exit_code(returncode: int) -> int:
    """Popen's -N for a signal becomes 128 + N, the code a shell (and STK, which runs one) reports."""
    return 128 - returncode if returncode < 0 else returncode


def signal_name(returncode: int) -> str | None:
    """SIGKILL for -9 (or 137 from a shell-wrapped script); None for a normal exit."""
    number = -returncode if returncode < 0 else (returncode - 128 if 128 < returncode < 128 + 65 else 0)
    if number <= 0:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def extra_info(returncode: int) -> str | None:
    """STK's OutOfMemory note for 137; for other signals we also say which one killed the script."""
    code = exit_code(returncode)
    if code == SIGKILL_EXIT:
        return OOM_INFO
    name = signal_name(returncode) if returncode < 0 else None
    if name is not None:
        number = -returncode
        return f"Process killed by {name} (signal {number})"
    return None


def failure_text(
    returncode: int, message: str, command: list[str], error_class: str = "ExecuteUserScriptError"
) -> str:
    """The whole output/failure file for a script that ended with `returncode`."""
    info = extra_info(returncode)
    parts = [f"{error_class}:", f"ExitCode {exit_code(returncode)}", f'ErrorMessage "{message}"']
    if info is not None:
        parts.append(f'ExtraInfo "{info}"')
    parts.append(f'Command "{" ".join(command)}"')
    return "\n".join(parts).strip()
