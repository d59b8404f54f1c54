import numpy as np
import pytest
import torch

from vizsla.training.metrics import ClassificationMeter


def test_meter_accuracy_top5_and_confusion():
    meter = ClassificationMeter(num_classes=3)
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 2.0, 1.0], [1.0, 0.0, 5.0]])
    targets = torch.tensor([0, 1, 2, 2])
    meter.update(logits, targets, loss_sum=2.0)
    summary = meter.summary("valid")
    assert summary["valid_accuracy"] == pytest.approx(0.75)
    assert summary["valid_top5_accuracy"] == pytest.approx(1.0)
    assert summary["valid_loss"] == pytest.approx(0.5)
    assert meter.confusion.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_per_class_precision_recall():
    meter = ClassificationMeter(num_classes=3)
    meter.confusion = np.array([[2, 0, 0], [1, 1, 0], [0, 0, 0]])
    per_class = meter.per_class(["a", "b", "c"])
    assert per_class["precision"] == pytest.approx([2 / 3, 1.0, 0.0])
    assert per_class["recall"] == pytest.approx([1.0, 0.5, 0.0])
    assert per_class["support"] == [2, 2, 0]
    assert per_class["f1"][0] == pytest.approx(0.8)


def test_top5_with_many_classes():
    meter = ClassificationMeter(num_classes=10)
    logits = torch.arange(10.0).repeat(2, 1)  # ranking 9, 8, 7, 6, 5, ...
    meter.update(logits, torch.tensor([5, 4]), loss_sum=0.0)
    assert meter.summary("t")["t_top5_accuracy"] == pytest.approx(0.5)
