"""train.log holds what the console showed: data summary, chosen settings, every epoch, the end (status,
times, metrics, reason), for a job that completed and for one that failed."""

from __future__ import annotations

from vizsla.callbacks import Callback
from vizsla.testing.jobs import tiny_spec_dict


def test_train_log_of_a_completed_job(tiny_folder, tmp_path):
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    spec = tiny_spec_dict(tiny_folder, tmp_path / "job", epochs=2, finetune="head")
    result = run_job(build_spec(spec), progress=False)
    assert result["status"] == "Completed"
    log = (tmp_path / "job" / "train.log").read_text()
    assert "data: 3 classes, 30 train, 30 valid, 30 test images, 0 bad files" in log
    assert "settings: model test_efficientnet (weights none, 32 px), finetune head on cached features" in log
    for epoch in (1, 2):
        assert f"epoch {epoch}/2  train_loss " in log and "valid_acc " in log
    assert "Completed job in " in log
    assert f"test_accuracy {result['metrics']['test_accuracy']:.4f}" in log
    assert f"job directory: {tmp_path / 'job'}" in log


def test_train_log_of_a_failed_job(tiny_folder, tmp_path):
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    class PoisonLoss(Callback):
        def after_forward(self, state):
            if state.global_step == 5:
                state.loss.data.fill_(float("nan"))

    spec = build_spec(tiny_spec_dict(tiny_folder, tmp_path / "job", epochs=2))
    try:
        run_job(spec, callbacks=[PoisonLoss()], progress=False)
    except FloatingPointError:
        pass
    log = (tmp_path / "job" / "train.log").read_text()
    assert "epoch 1/2  train_loss " in log, "the epochs before the failure"
    assert "training failed" in log and "Traceback" in log, "a bug keeps its traceback in the log"
    assert "Failed job in " in log and "FloatingPointError: loss is nan at epoch 1 step 5" in log


def test_train_log_of_a_job_refused_by_its_data(tiny_folder, tmp_path):
    import shutil

    import pytest

    from vizsla.errors import DataError
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    for split in ("train", "valid", "test"):
        for name in ("dog", "fox"):
            shutil.rmtree(tiny_folder / split / name)
    with pytest.raises(DataError) as caught:
        run_job(build_spec(tiny_spec_dict(tiny_folder, tmp_path / "job")), progress=False)
    log = (tmp_path / "job" / "train.log").read_text()
    assert caught.value.message in log and "Traceback" not in log, "a user error: its message, no traceback"
    assert "Failed job: " in log
