"""Classification metrics accumulated batch by batch: loss, top-1/top-5 accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class ClassificationMeter:
    """Accumulates predictions of one pass over a split; cheap per batch (no per-sample Python work)."""

    num_classes: int
    loss_sum: float = 0.0
    count: int = 0
    correct_top1: int = 0
    correct_top5: int = 0
    confusion: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss_sum: float) -> None:
        """Add a batch; `loss_sum` is the summed (not averaged) loss of the batch."""
        logits = logits.detach().float().cpu()
        targets = targets.detach().cpu()
        k = min(5, self.num_classes)
        topk = logits.topk(k, dim=1).indices
        predicted = topk[:, 0]
        self.correct_top1 += int((predicted == targets).sum())
        self.correct_top5 += int((topk == targets[:, None]).any(dim=1).sum())
        self.loss_sum += float(loss_sum)
        self.count += int(targets.numel())
        flat = targets.numpy() * self.num_classes + predicted.numpy()
        self.confusion += np.bincount(flat, minlength=self.num_classes**2).reshape(self.confusion.shape)

    def state_dict(self) -> dict[str, Any]:
        """The counts so far (a checkpoint of a job stopped mid-epoch keeps its running train metrics)."""
        return {
            "loss_sum": self.loss_sum,
            "count": self.count,
            "correct_top1": self.correct_top1,
            "correct_top5": self.correct_top5,
            "confusion": self.confusion.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_sum, self.count = float(state["loss_sum"]), int(state["count"])
        self.correct_top1, self.correct_top5 = int(state["correct_top1"]), int(state["correct_top5"])
        self.confusion = np.asarray(state["confusion"], dtype=np.int64).reshape(self.confusion.shape)

    def summary(self, prefix: str) -> dict[str, float]:
        """Loss and accuracies as `{prefix}_loss`, `{prefix}_accuracy`, `{prefix}_top5_accuracy`."""
        n = max(self.count, 1)
        return {
            f"{prefix}_loss": self.loss_sum / n,
            f"{prefix}_accuracy": self.correct_top1 / n,
            f"{prefix}_top5_accuracy": self.correct_top5 / n,
        }

    def per_class(self, labels: list[str]) -> dict[str, list]:
        """Precision, recall, F1 and support per class (0 where undefined)."""
        true_pos = np.diag(self.confusion).astype(float)
        predicted = self.confusion.sum(axis=0).astype(float)
        support = self.confusion.sum(axis=1).astype(float)
        precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
        recall = np.divide(true_pos, support, out=np.zeros_like(true_pos), where=support > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
        return {
            "labels": list(labels),
            "precision": [round(v, 6) for v in precision.tolist()],
            "recall": [round(v, 6) for v in recall.tolist()],
            "f1": [round(v, 6) for v in f1.tolist()],
            "support": [int(v) for v in support.tolist()],
        }
