"""The tensor store round-trips through the reader, also while it is being written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vizsla.debugger import open_trial
from vizsla.debugger.collections import REDUCTIONS, histogram_array, reduce_array, resolve_collections
from vizsla.debugger.hook import stats_row
from vizsla.debugger.store import INDEX_FILE, StepRecord, TensorStore
from vizsla.spec import DebugSpec


def _store(tmp_path):
    store = TensorStore(tmp_path / "debug", resolve_collections(DebugSpec(enabled=True)))
    store.open()
    return store


def _record(step: int, weight: torch.Tensor, mode: str = "TRAIN") -> StepRecord:
    reductions = (*REDUCTIONS, "histogram")
    return StepRecord(
        mode=mode,
        step=step,
        global_step=step,
        raw={"loss": torch.tensor(1.0 / (step + 1)), "labels": torch.tensor([0, 1, step])},
        reduced=[("head.weight", reductions, tuple(weight.shape))],
        stats=torch.stack([stats_row(weight)]),
    )


def test_reader_returns_what_was_stored(tmp_path):
    torch.manual_seed(0)
    weights = {step: torch.randn(7, 5) for step in (0, 3)}
    weights[3][0, 0] = 0.0
    store = _store(tmp_path)
    for step, weight in weights.items():
        store.submit(_record(step, weight))
    store.close()

    trial = open_trial(tmp_path)  # a job directory: finds debug/
    assert trial.is_complete()
    assert trial.steps("TRAIN") == [0, 3]
    assert trial.steps("EVAL") == []
    assert trial.tensor_names(collection="weights") == ["head.weight"]
    assert trial.tensor_names(regex="^lab") == ["labels"]
    assert trial.collections()["losses"] == ["loss"]
    loss = trial.tensor("loss")
    assert {s: float(v) for s, v in loss.values().items()} == pytest.approx({0: 1.0, 3: 0.25})
    np.testing.assert_array_equal(trial.tensor("labels").value(3), [0, 1, 3])
    for step, weight in weights.items():
        expected = reduce_array(weight.numpy())
        tensor = trial.tensor("head.weight")
        for name in REDUCTIONS:
            assert tensor.reduction(step, name) == pytest.approx(expected[name], rel=1e-5, abs=1e-6), name
        edges, counts = tensor.histogram(step)
        want_edges, want_counts = histogram_array(weight.numpy())
        np.testing.assert_allclose(edges, want_edges, rtol=1e-6)
        assert counts.sum() == weight.numel()
        assert np.abs(counts - want_counts).sum() <= 2  # float32 vs float64 binning at a bin edge
        assert tensor.value(step) is None  # reductions only
    assert trial.tensor("head.weight").reduction(3, "zero_fraction") == pytest.approx(1 / 35)
    # a raw-only tensor gets its reductions computed from the raw values
    assert trial.tensor("labels").reduction(3, "max") == 3.0


def test_missing_data_is_none_never_an_error(tmp_path):
    trial = open_trial(tmp_path / "nothing-here")
    assert trial.steps() == [] and trial.tensor_names() == [] and not trial.is_complete()
    tensor = trial.tensor("loss")
    assert tensor.value(0) is None and tensor.reduction(0, "mean") is None and tensor.histogram(0) is None
    assert tensor.values() == {} and tensor.reductions("mean") == {}
    store = _store(tmp_path)
    store.submit(_record(0, torch.ones(3)))
    store.flush()
    tensor = open_trial(tmp_path).tensor("head.weight")
    assert tensor.reduction(0, "no_such_reduction") is None
    assert tensor.reduction(1, "mean") is None
    edges, counts = tensor.histogram(0)  # a constant tensor: one bin centred on the value
    assert counts.sum() == 3 and edges[0] == 0.5 and edges[-1] == 1.5
    store.close()


def test_reader_follows_a_store_being_written(tmp_path):
    store = _store(tmp_path)
    trial = open_trial(tmp_path / "debug")
    store.submit(_record(0, torch.randn(4)))
    store.flush()
    assert trial.steps() == [0] and not trial.is_complete()
    # a half-written index line is ignored until its newline arrives
    index = tmp_path / "debug" / INDEX_FILE
    with open(index, "a") as handle:
        handle.write('{"mode": "TRAIN", "step": 9')
    assert trial.steps() == [0]
    with open(index, "a") as handle:
        handle.write(', "file": "steps/TRAIN/000000000009.npz", "tensors": ["ghost"]}\n')
    assert trial.steps() == [0, 9]
    assert trial.tensor("ghost").value(9) is None  # listed, but its file is not there: None, no error
    store.submit(_record(1, torch.randn(4)))
    store.submit(_record(0, torch.randn(4), mode="EVAL"))
    store.close()
    assert trial.steps() == [0, 1, 9] and trial.steps("EVAL") == [0] and trial.is_complete()
    collections = json.loads((tmp_path / "debug" / "collections.json").read_text())["collections"]
    assert collections["labels"]["tensor_names"] == ["labels"]


def test_stats_row_counts_nan_and_inf_and_bins_only_finite_values():
    x = torch.tensor([1.0, float("nan"), float("inf"), -2.0, 0.0])
    row = stats_row(x).numpy()
    values = dict(zip(REDUCTIONS, row[: len(REDUCTIONS)], strict=True))
    assert values["nan_count"] == 1 and values["inf_count"] == 1
    assert values["min"] == -2.0 and values["max"] == 1.0 and values["zero_fraction"] == pytest.approx(0.2)
    assert row[len(REDUCTIONS) + 2 :].sum() == 3


def test_per_mode_save_intervals_override_the_collection_interval() -> None:
    from vizsla.debugger.collections import Collection

    spec = DebugSpec(
        enabled=True,
        save_interval=10,
        collections={
            "losses": {"save_interval": 5, "mode_save_intervals": {"EVAL": 1}, "modes": ["TRAIN", "EVAL"]}
        },
    )
    losses = resolve_collections(spec)["losses"]
    assert [s for s in range(12) if losses.should_save("TRAIN", s)] == [0, 5, 10]
    assert [s for s in range(4) if losses.should_save("EVAL", s)] == [0, 1, 2, 3]
    assert Collection.from_json(losses.to_json()) == losses  # as collections.json stores it
    spec = DebugSpec(enabled=True, save_interval=100, mode_save_intervals={"TRAIN": 20})
    spec_wide = resolve_collections(spec)
    gradients = spec_wide["gradients"]
    assert gradients.should_save("TRAIN", 20) and not gradients.should_save("TRAIN", 30)
    assert spec_wide["losses"].should_save("TRAIN", 3)  # an every-step collection keeps its own interval
