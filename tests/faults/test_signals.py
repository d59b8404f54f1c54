"""SIGTERM, SIGINT and SIGHUP at every phase of `vizsla train` end the job within seconds, as Stopped, with a
resumable checkpoint once training started (mid-epoch if need be), and no loader worker left behind."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import termios
import threading

import psutil
import pytest
import torch

# Seconds from the signal to the process's exit: the stop itself is within a step (~1 s here, images are
# slowed down to 0.1-0.3 s each); the rest is writing result.json, plots and report on 2 busy cores.
STOP_S = 8.0


def _checkpoint(job):
    path = job / "checkpoints" / "last.pt"
    return torch.load(path, weights_only=False) if path.is_file() else None


def test_sigterm_during_validation_stops_at_once(train_runner):
    run = train_runner.start(train_runner.spec("validate"), "validate", 0.3)
    run.wait_for_phase()
    seconds = run.signal_and_wait(signal.SIGTERM)
    assert run.proc.returncode == 0, run.log()
    result = run.result()
    assert result is not None, "a job stopped during validation must not be left Unknown"
    assert result["status"] == "Stopped" and result["stop_reason"] == "received SIGTERM during validate"
    assert seconds < STOP_S, f"{seconds:.1f} s after SIGTERM"
    assert "Stopped" in (run.job / "train.log").read_text()


def test_ctrl_c_during_feature_extraction_stops_workers_too(train_runner, wait_gone):
    """Ctrl-C signals the terminal's whole process group: the loader workers must leave it to the job."""
    spec = train_runner.spec("extract", finetune="head", num_workers=2)
    run = train_runner.start(spec, "extract", 0.05, start_new_session=True)  # a worker's batch: 64 images
    run.wait_for_phase()
    workers = [child.pid for child in psutil.Process(run.proc.pid).children(recursive=True)]
    assert workers, "the extraction runs in loader worker processes"
    seconds = run.signal_and_wait(signal.SIGINT, group=True)
    assert run.proc.returncode == 0, run.log()
    result = run.result()
    assert result is not None and result["status"] == "Stopped", run.log()
    assert result["stop_reason"] == "received SIGINT during extract"
    assert seconds < STOP_S, f"{seconds:.1f} s after SIGINT"
    assert not wait_gone(workers, 10.0), "loader workers outlived the job"
    partial = list((train_runner.tmp_path / "cache" / "features").glob(".*.partial"))
    assert partial, "the stopped extraction keeps its rows for the next run"


@pytest.mark.slow
def test_sigterm_mid_epoch_checkpoints_and_resume_matches_uninterrupted(train_runner):
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    # 30 train images / batch 8 = 4 steps per epoch; reading an image takes 0.1 s, a step ~1 s.
    spec = train_runner.spec("stopped", epochs=2, seed=3, finetune="full")
    run = train_runner.start(spec, "train", 0.1)
    run.wait_for_phase()
    seconds = run.signal_and_wait(signal.SIGTERM)
    assert run.proc.returncode == 0, run.log()
    result = run.result()
    assert result["status"] == "Stopped" and "SIGTERM" in result["stop_reason"]
    assert seconds < STOP_S, f"{seconds:.1f} s after SIGTERM"
    checkpoint = _checkpoint(run.job)
    assert checkpoint is not None, "a job stopped during its first epoch must leave a checkpoint"
    assert checkpoint["next_epoch"] == 0 and 0 < checkpoint["epoch_position"]["batches"] < 4

    resumed = train_runner.resume(run.job)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = run.result()
    reference = run_job(build_spec(train_runner.spec("straight", epochs=2, seed=3, finetune="full")),
                        progress=False)  # fmt: skip
    assert final["status"] == "Completed" and final["epochs_completed"] == 2
    for key, value in reference["metrics"].items():
        assert final["metrics"][key] == pytest.approx(value, abs=1e-4), key
    assert final["best_epoch"] == reference["best_epoch"]


@pytest.mark.slow
def test_sigterm_during_final_evaluation_skips_it_and_resume_completes(train_runner):
    spec = train_runner.spec("evaluate", epochs=1, finetune="full")
    run = train_runner.start(spec, "evaluate", 0.2)  # 60 valid + test images: 12 s of evaluation
    run.wait_for_phase()
    seconds = run.signal_and_wait(signal.SIGTERM)
    assert run.proc.returncode == 0, run.log()
    result = run.result()
    assert result["status"] == "Stopped" and result["stop_reason"] == "received SIGTERM during evaluate"
    assert seconds < STOP_S, f"{seconds:.1f} s after SIGTERM"
    assert _checkpoint(run.job)["next_epoch"] == 1, "training was done: the checkpoint is at its end"
    resumed = train_runner.resume(run.job)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = run.result()
    assert final["status"] == "Completed" and "test_accuracy" in final["metrics"]


def test_sigterm_during_finalize_still_ends_with_a_result(train_runner):
    spec = train_runner.spec("finalize", epochs=1, finetune="full")
    run = train_runner.start(spec, "finalize", 1.0)
    run.wait_for_phase()
    seconds = run.signal_and_wait(signal.SIGTERM)
    assert run.proc.returncode == 0, run.log()
    assert seconds < 1.0 + STOP_S
    result = run.result()
    assert result["status"] == "Completed", "the work was done when the signal came: nothing is lost"
    assert "test_accuracy" in result["metrics"]


def _controlling_terminal() -> None:
    """In the child, after setsid(): make the pty on stdin its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _drain(master: int, stop: threading.Event) -> None:
    """Read the terminal's output until STOP, as a terminal emulator does."""
    while not stop.is_set():
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                os.read(master, 65536)
            except OSError:
                return


def test_closed_terminal_stops_the_job_with_a_checkpoint(train_runner, wait_gone):
    """Closing the terminal sends SIGHUP to its foreground processes (the job and its loader workers), and
    every write to it fails from then on: the job stops like on SIGTERM, and never lists as Unknown."""
    spec = train_runner.spec("hangup", epochs=2, finetune="full", num_workers=2)
    master, slave = pty.openpty()
    try:
        run = train_runner.start(spec, "train", 0.1, quiet=False, stdin=slave, stdout=slave, stderr=slave,
                                 start_new_session=True, preexec_fn=_controlling_terminal)  # fmt: skip
    finally:
        os.close(slave)
    # A terminal shows what the job prints: read it, or the job blocks once the pty's buffer is full.
    stop_reading = threading.Event()
    reader = threading.Thread(target=_drain, args=(master, stop_reading), daemon=True)
    reader.start()
    try:
        run.wait_for_phase()
        workers = [child.pid for child in psutil.Process(run.proc.pid).children(recursive=True)]
    finally:
        stop_reading.set()
        reader.join(5)
        os.close(master)  # the terminal goes away: SIGHUP
    run.wait(60)
    result = run.result()
    assert result is not None, "a job whose terminal closed must not be left Unknown"
    assert result["status"] == "Stopped" and result["stop_reason"].startswith("received SIGHUP")
    assert _checkpoint(run.job) is not None
    assert not wait_gone(workers, 10.0), "loader workers outlived the job"
    assert "Stopped" in (run.job / "train.log").read_text()


def test_stop_mid_epoch_on_cached_features_resumes_exactly(tiny_folder, tmp_path):
    """The same mid-epoch checkpoint for a head trained on cached features (and for a stop a callback
    asks for, as a signal's handler does): the resumed epoch skips the batches done."""
    from vizsla.callbacks import Callback
    from vizsla.jobdir import JobDir
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec
    from vizsla.testing.jobs import tiny_spec_dict

    class StopAtStep(Callback):
        def batch_end(self, state):
            if state.global_step == 6:  # the second of 4 steps of epoch 2
                state.request_stop("received SIGTERM during train")

    reference = run_job(build_spec(tiny_spec_dict(tiny_folder, tmp_path / "straight", epochs=3,
                                                  finetune="head")), progress=False)  # fmt: skip
    spec = build_spec(tiny_spec_dict(tiny_folder, tmp_path / "stopped", epochs=3, finetune="head",
                                     log_every_n_steps=1))  # fmt: skip
    assert run_job(spec, callbacks=[StopAtStep()], progress=False)["status"] == "Stopped"
    checkpoint = _checkpoint(tmp_path / "stopped")
    assert checkpoint["next_epoch"] == 1 and checkpoint["epoch_position"]["batches"] == 2
    final = run_job(spec, resume=True, progress=False)
    assert final["status"] == "Completed"
    for key, value in reference["metrics"].items():
        assert final["metrics"][key] == pytest.approx(value, abs=1e-5), key
    steps = [r["step"] for r in JobDir(tmp_path / "stopped").read_metrics() if r["kind"] == "step"]
    assert steps == list(range(1, 13)), "every step of the 3 epochs once, none trained twice"
