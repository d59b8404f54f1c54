"""TensorBoard's own event reader sees the same scalars and histograms as our reader."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    HISTOGRAMS,
    SCALARS,
    EventAccumulator,
)

from vizsla.debugger import open_trial  # noqa: E402
from vizsla.debugger.tensorboard import export_tensorboard  # noqa: E402
from vizsla.jobs import run_job  # noqa: E402
from vizsla.spec import build_spec  # noqa: E402
from vizsla.testing.jobs import tiny_spec_dict  # noqa: E402


def _events(run_dir):
    accumulator = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0, HISTOGRAMS: 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.slow
def test_tensorboard_reader_agrees_with_the_store(tiny_folder, tmp_path):
    spec = tiny_spec_dict(tiny_folder, tmp_path / "job", epochs=1)
    spec["debug"] = {"enabled": True, "save_interval": 2, "tensorboard": True}  # exported at fit_end
    assert run_job(build_spec(spec), progress=False)["status"] == "Completed"
    trial = open_trial(tmp_path / "job")
    out = trial.root / "tensorboard"
    assert (out / "TRAIN").is_dir() and (out / "EVAL").is_dir()
    export_tensorboard(trial)  # a second export replaces the first: no duplicated points

    train = _events(out / "TRAIN")
    losses = {event.step: event.value for event in train.Scalars("loss")}
    stored = {step: float(value) for step, value in trial.tensor("loss").values("TRAIN").items()}
    assert losses == pytest.approx(stored) and len(losses) == len(trial.steps("TRAIN"))
    evals = {event.step: event.value for event in _events(out / "EVAL").Scalars("loss")}
    assert evals == pytest.approx({s: float(v) for s, v in trial.tensor("loss").values("EVAL").items()})

    name = trial.tensor_names(collection="gradients")[0]
    tensor = trial.tensor(name)
    l2 = {event.step: event.value for event in train.Scalars(f"{name}/l2")}
    assert l2 == pytest.approx(tensor.reductions("l2"), rel=1e-6)
    histograms = {event.step: event.histogram_value for event in train.Histograms(name)}
    assert sorted(histograms) == tensor.steps() == [0, 2]
    for step, value in histograms.items():
        edges, counts = tensor.histogram(step)
        assert list(value.bucket) == pytest.approx(counts.tolist())
        assert list(value.bucket_limit) == pytest.approx(edges[1:].tolist())
        assert value.num == counts.sum()
