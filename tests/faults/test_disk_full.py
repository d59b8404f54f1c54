"""A full disk during training ends in one clear message (path, space needed and free), exit code 2,
result.json Failed with that reason, and the last good checkpoint in place.

Two ways to fill a disk: a real one, a 2.5 MB tmpfs mounted in a private mount namespace (`unshare`, which
needs root or unprivileged user namespaces; skipped where neither is allowed), and a real ENOSPC from the
kernel's /dev/full. The other write paths (feature cache, model export, data report, report) get an
OSError(ENOSPC) from a test double at the point they write.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vizsla.testing.jobs import tiny_spec_dict

TMPFS_SIZE = "2560k"  # spec, data report and model/ (0.4 MB) + one checkpoint (1.3 MB), not two


def _private_tmpfs_available(folder: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=64k tmpfs "{folder}"'],
        capture_output=True, timeout=30,
    )  # fmt: skip
    return probe.returncode == 0


@pytest.mark.slow
def test_full_tmpfs_fails_with_one_message_and_keeps_the_last_checkpoint(tiny_folder, tmp_path):
    mount, copy = tmp_path / "mnt", tmp_path / "copy"
    mount.mkdir()
    copy.mkdir()
    if not _private_tmpfs_available(mount):
        pytest.skip("cannot mount a private tmpfs here (`unshare -rm` needs root or user namespaces)")
    job = mount / "job"
    train = [sys.executable, "-m", "vizsla", "train", "--data", str(tiny_folder), "--output", str(job),
             "--model", "test_efficientnet", "--weights", "none", "--image-size", "32", "--finetune", "full",
             "--epochs", "4", "--batch-size", "8", "--precision", "fp32", "--workers", "0", "--no-tracking",
             "--quiet"]  # fmt: skip
    # The job writes into the tmpfs, which lives as long as the namespace: copy it out before leaving.
    script = 'mount -t tmpfs -o size=$0 tmpfs "$M" || exit 99; "$@"; rc=$?; cp -a "$M"/. "$C"/; exit $rc'
    env = {**os.environ, "M": str(mount), "C": str(copy), "VIZSLA_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, TMPFS_SIZE, *train],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    error = proc.stderr.strip()
    assert "Traceback" not in error and len(error.splitlines()) <= 4, error
    assert "no space left on the device" in error and str(job / "checkpoints" / "last.pt") in error
    assert "needed" in error and "free there" in error
    saved = copy / "job"
    result = json.loads((saved / "result.json").read_text())
    assert result["status"] == "Failed" and "no space left" in result["failure_reason"]
    checkpoint = torch.load(saved / "checkpoints" / "last.pt", weights_only=False)
    assert checkpoint["next_epoch"] >= 1, "the last good checkpoint is still the one on disk"
    assert [p.name for p in (saved / "checkpoints").iterdir()] == ["last.pt"], "no temp file left behind"
    assert "no space left" in (saved / "train.log").read_text()


def test_dev_full_metrics_give_a_disk_full_error(tiny_folder, tmp_path):
    """/dev/full answers every write with a real ENOSPC: metrics.jsonl pointing there is a full disk."""
    from vizsla.errors import DiskFullError
    from vizsla.jobdir import JobDir
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    job = tmp_path / "job"
    job.mkdir()
    (job / "metrics.jsonl").symlink_to("/dev/full")
    with pytest.raises(DiskFullError) as caught:
        run_job(build_spec(tiny_spec_dict(tiny_folder, job)), progress=False)
    assert f"cannot write the metrics {job / 'metrics.jsonl'}" in caught.value.message
    result = JobDir(job).read_result()
    assert result["status"] == "Failed" and result["failure_reason"] == caught.value.message


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    ("where", "target", "finetune", "path"),
    [
        ("feature cache", "os.posix_fallocate", "head", "cache/features"),
        ("model export", "vizsla.models.io._fsync_files", "full", "job/model"),
        ("data report", "vizsla.data.validate.atomic_write_bytes", "full", "job/data"),
    ],
)
def test_full_disk_at_each_write_names_its_path(
    tiny_folder, tmp_path, monkeypatch, where, target, finetune, path
):
    from vizsla.errors import DiskFullError
    from vizsla.jobdir import JobDir
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    spec = tiny_spec_dict(tiny_folder, tmp_path / "job", finetune=finetune)
    spec["cache_dir"] = str(tmp_path / "cache")  # features really extracted, into a cache of its own
    monkeypatch.setattr(target, _enospc)
    with pytest.raises(DiskFullError) as caught:
        run_job(build_spec(spec), progress=False)
    assert str(tmp_path / path) in caught.value.message, where
    assert "no space left on the device" in caught.value.message
    result = JobDir(tmp_path / "job").read_result()
    assert result["status"] == "Failed" and "no space left" in result["failure_reason"]
    if where == "feature cache":
        assert not list((tmp_path / "cache" / "features").glob(".*.partial")), "its space is given back"


def test_full_disk_for_the_report_only_warns(tiny_folder, tmp_path, monkeypatch):
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    monkeypatch.setattr("vizsla.training.report.atomic_write_text", _enospc)
    spec = tiny_spec_dict(tiny_folder, tmp_path / "job", finetune="head")
    result = run_job(build_spec(spec), progress=False)
    assert result["status"] == "Completed"
    log = (tmp_path / "job" / "train.log").read_text()
    assert "could not write" in log and "No space left on device" in log and "Traceback" not in log
