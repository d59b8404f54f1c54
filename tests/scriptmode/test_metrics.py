"""Metric definitions over output lines: first group, whole match, indices, non-numeric and unmatched."""

from __future__ import annotations

import logging

from vizsla.scriptmode.metrics import MetricMatcher
from vizsla.scriptmode.spec import MetricDefinition


def matcher(**regexes: str) -> MetricMatcher:
    return MetricMatcher([MetricDefinition(name=name, regex=regex) for name, regex in regexes.items()])


def test_first_capture_group_with_per_metric_indices():
    m = matcher(test_loss=r"Test set: Average loss: ([0-9\.]+)", accuracy=r"Accuracy: (\d+)/(\d+)")
    line = "Test set: Average loss: 0.1234, Accuracy: 97/100 (97%)"
    found = m.match(line, when=5.0)
    assert [(x.name, x.value, x.index, x.time) for x in found] == [
        ("test_loss", 0.1234, 0, 5.0),
        ("accuracy", 97.0, 0, 5.0),
    ]
    assert m.match("Train Epoch: 1 [0/1500]\tLoss: 2.3") == []
    second = m.match("Test set: Average loss: 0.1000, Accuracy: 98/100 (98%)")
    assert [(x.name, x.index) for x in second] == [("test_loss", 1), ("accuracy", 1)]
    assert m.last == {"test_loss": 0.1, "accuracy": 98.0}
    assert m.counts == {"test_loss": 2, "accuracy": 2}
    assert second[0].record() == {
        "kind": "script_metric",
        "name": "test_loss",
        "value": 0.1,
        "index": 1,
        "time": second[0].time,
    }


def test_whole_match_without_groups_and_search_anywhere():
    m = matcher(number=r"-?\d+\.\d+(e-?\d+)?$", plain=r"\d+\.\d+")
    found = m.match("lr now 3.5e-4")
    assert [(x.name, x.value) for x in found] == [("plain", 3.5)]  # `number` needs a dot before e
    assert m.match("loss 0.25")[0].value == 0.25  # `number` whole match ends the line: group(1) is None
    assert m.counts["number"] == 0  # a group that did not take part is no value


def test_non_numeric_capture_skipped_with_one_warning(caplog):
    m = matcher(acc=r"Accuracy: (\S+)")
    with caplog.at_level(logging.WARNING):
        assert m.match("Accuracy: 97/100") == []
        assert m.match("Accuracy: n/a") == []
        assert m.match("Accuracy: nan") == []
        assert [x.value for x in m.match("Accuracy: 0.97")] == [0.97]
    assert len(m.warnings) == 1 and "'97/100'" in m.warnings[0]
    assert sum("not a number" in r.getMessage() for r in caplog.records) == 1
    assert m.counts == {"acc": 1}


def test_unmatched_definitions_listed():
    m = matcher(loss=r"loss=([0-9.]+)", val_acc=r"val_acc=([0-9.]+)")
    m.match("epoch 1 loss=0.5")
    assert m.unmatched() == ["val_acc"]
