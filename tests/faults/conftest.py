"""Fault-suite helpers: `vizsla train` in a real subprocess whose phases can be slowed down and watched.

The harness runs the real command line (`vizsla.cli.app.main`, as the `vizsla` script does) after
patching one phase to take SLOW seconds per unit of work (a file checked, an image decoded, the outputs
written) and to touch a marker file once it runs: a test waits for the marker, sends a real signal from
outside, and times how long the job takes to end. Each run gets a cache folder of its own, so validation
and feature extraction really run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from vizsla.testing.jobs import tiny_spec_dict

HARNESS = textwrap.dedent(
    """
    import os, sys, time
    phase, marker, slow = sys.argv[1], sys.argv[2], float(sys.argv[3])
    sys.argv = ["vizsla", *sys.argv[4:]]

    def reached():
        if not os.path.exists(marker):
            with open(marker + ".tmp", "w") as handle:
                handle.write(str(os.getpid()))
            os.replace(marker + ".tmp", marker)

    if phase == "validate":  # each file's decode check (thread pool)
        import vizsla.data.validate as validate
        check = validate._check
        def slow_check(*args, **kwargs):
            reached()
            time.sleep(slow)
            return check(*args, **kwargs)
        validate._check = slow_check
    elif phase in ("extract", "train", "evaluate"):  # each image read (loader workers or in process)
        from vizsla.data import dataset
        from vizsla.training import trainer
        getitem = dataset.ImageFolderDataset.__getitem__
        evaluating = []
        def slow_getitem(self, index):
            if phase != "evaluate" or evaluating:
                reached()
                time.sleep(slow)
            return getitem(self, index)
        dataset.ImageFolderDataset.__getitem__ = slow_getitem
        evaluate_best = trainer.evaluate_best
        def marked_evaluate_best(*args, **kwargs):
            evaluating.append(True)
            return evaluate_best(*args, **kwargs)
        trainer.evaluate_best = marked_evaluate_best
    elif phase == "finalize":  # plots and report
        from vizsla.training import bookkeeping
        write_outputs = bookkeeping.write_outputs
        def slow_outputs(*args, **kwargs):
            reached()
            time.sleep(slow)
            return write_outputs(*args, **kwargs)
        bookkeeping.write_outputs = slow_outputs

    from vizsla.cli.app import main
    main()
    """
)


@dataclass
class Run:
    """A `vizsla train` subprocess started by `TrainRunner.start`."""

    proc: subprocess.Popen
    marker: Path
    job: Path
    stderr: Path

    def wait_for_phase(self, timeout_s: float = 120.0) -> None:
        """Block until the slowed phase runs (its marker exists)."""
        deadline = time.monotonic() + timeout_s
        while not self.marker.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited ({self.proc.returncode}) before the phase:\n{self.log()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"phase not reached in {timeout_s:.0f} s:\n{self.log()}")
            time.sleep(0.05)

    def signal_and_wait(self, sig: int, timeout_s: float = 60.0, *, group: bool = False) -> float:
        """Send SIG to the process (with GROUP, to its process group, as a terminal does: the process must
        lead one, see `start_new_session`) and return the seconds until it exited."""
        sent = time.monotonic()
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"still running {timeout_s:.0f} s after {sig!r}:\n{self.log()}") from None
        return time.monotonic() - sent

    def wait(self, timeout_s: float = 120.0) -> int:
        return self.proc.wait(timeout=timeout_s)

    def result(self) -> dict[str, Any] | None:
        path = self.job / "result.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def log(self) -> str:
        text = self.stderr.read_text(errors="replace") if self.stderr.is_file() else ""
        return text[-4000:]


class TrainRunner:
    """Starts `vizsla train --config SPEC` on a tiny generated folder, one phase slowed down."""

    def __init__(self, data: Path, tmp_path: Path) -> None:
        self.data, self.tmp_path = data, tmp_path
        self.env = {**os.environ, "VIZSLA_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}

    def spec(self, name: str, **train: Any) -> dict[str, Any]:
        workers = train.pop("num_workers", 0)
        spec = tiny_spec_dict(self.data, self.tmp_path / name, **train)
        spec["data"]["num_workers"] = workers
        return spec

    def start(
        self, spec: dict[str, Any], phase: str = "none", slow_s: float = 0.0, *, quiet: bool = True,
        **popen: Any,
    ) -> Run:
        """`vizsla train --config SPEC` with PHASE taking SLOW_S seconds per unit of work (POPEN: more
        subprocess.Popen arguments)."""
        name = Path(spec["output"]).name
        config = self.tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(spec))
        marker, stderr = self.tmp_path / f"{name}.reached", self.tmp_path / f"{name}.stderr"
        command = [sys.executable, "-c", HARNESS, phase, str(marker), str(slow_s), "train",
                   "--config", str(config), *(["--quiet"] if quiet else [])]  # fmt: skip
        popen.setdefault("stdout", subprocess.DEVNULL)
        popen.setdefault("stderr", stderr.open("wb"))
        proc = subprocess.Popen(command, env=self.env, **popen)
        return Run(proc, marker, Path(spec["output"]), stderr)

    def resume(self, job: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "vizsla", "train", "--resume", str(job), "--quiet"],
            env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip


@pytest.fixture
def train_runner(tiny_folder: Path, tmp_path: Path) -> TrainRunner:
    return TrainRunner(tiny_folder, tmp_path)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def wait_gone() -> Callable[[list[int], float], list[int]]:
    """Wait until the PIDS have exited (or been reaped); returns those still alive after TIMEOUT_S."""

    def wait(pids: list[int], timeout_s: float = 10.0) -> list[int]:
        deadline = time.monotonic() + timeout_s
        alive = list(pids)
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if not process_gone(pid) and not _zombie(pid)]
            time.sleep(0.1)
        return alive

    return wait


def _zombie(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] == "Z"


SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGHUP: "SIGHUP"}


# ---------------------------------------------------------------- the endpoint's fault tests (test_serving_*)


@pytest.fixture(scope="session")
def serving_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch tiny job (3 classes, 32 px test model) with its ONNX export made once."""
    from vizsla.jobs import run_job
    from vizsla.serving.app import create_app
    from vizsla.serving.settings import ServeSettings
    from vizsla.spec import build_spec
    from vizsla.testing.images import make_image_folder

    root = tmp_path_factory.mktemp("serving-faults")
    data = make_image_folder(root / "data", classes=("cat", "dog", "fox"), per_class=4, seed=0)
    result = run_job(build_spec(tiny_spec_dict(data, root / "job", epochs=1)), progress=False)
    assert result["status"] == "Completed", result
    create_app(ServeSettings(model_path=root / "job"))  # exports to ONNX now: every server after starts fast
    return root / "job"


@pytest.fixture(scope="session")
def jpeg(serving_job: Path) -> bytes:
    """One of the job's JPEGs: a request the endpoint answers 200."""
    return next((serving_job.parent / "data").rglob("*.jpg")).read_bytes()
