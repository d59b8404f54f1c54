"""A job killed with SIGKILL mid-epoch resumes from its last checkpoint and ends like an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from vizsla.testing.jobs import tiny_spec_dict

KILL_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    from vizsla.callbacks import Callback
    from vizsla.spec import build_spec
    from vizsla.jobs import run_job

    class KillAt(Callback):
        '''SIGKILL this process in the middle of an epoch: nothing gets to clean up.'''
        def batch_end(self, state):
            if state.global_step == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

    run_job(build_spec(json.loads(sys.argv[1])), callbacks=[KillAt()], progress=False)
    """
)


def _run_killed(spec: dict, kill_step: int) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, json.dumps(spec), str(kill_step)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize("finetune", ["full", "head"])
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tiny_folder, tmp_path, finetune):
    import torch

    from vizsla.jobdir import JobDir
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    # 30 train images / batch 8 = 4 steps per epoch; step 10 is in the middle of the third epoch.
    straight = tiny_spec_dict(tiny_folder, tmp_path / "straight", epochs=4, seed=7, finetune=finetune)
    reference = run_job(build_spec(straight), progress=False)

    killed = tiny_spec_dict(tiny_folder, tmp_path / "killed", epochs=4, seed=7, finetune=finetune)
    assert _run_killed(killed, kill_step=10) == -9
    job = JobDir(killed["output"])
    epochs_done = [r["epoch"] for r in job.read_metrics() if r["kind"] == "epoch"]
    assert epochs_done == [0, 1], "killed during the third epoch, after two checkpoints"
    checkpoint = torch.load(job.last_checkpoint, weights_only=False)
    if finetune == "head":  # the frozen backbone is rebuilt from the spec: the checkpoint holds the head
        assert checkpoint["model"] and all(key.startswith("head.") for key in checkpoint["model"])
        assert checkpoint["best_state"] is not None

    proc = subprocess.run(
        [sys.executable, "-m", "vizsla", "train", "--resume", str(job.root), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    resumed = job.read_result()
    assert resumed["status"] == "Completed" and resumed["epochs_completed"] == 4
    for key, value in reference["metrics"].items():
        assert resumed["metrics"][key] == pytest.approx(value, abs=0.01), key
    assert resumed["best_epoch"] == reference["best_epoch"]
    assert (job.root / "model" / "model.safetensors").is_file()
