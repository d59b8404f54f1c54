"""Mixup and CutMix of train batches (timm's Mixup) and the loss their soft targets need.

Mixing applies to batches of images. A head on cached features (`job.features`) trains unmixed: CutMix has
no meaning on feature vectors, and mixing a few hundred cached rows is not what `--mixup` promises; the
job logs that once. timm's Mixup pairs each image with its mirror in the batch, so it needs an even batch:
an odd one (the last batch of an epoch) trains unmixed, with the plain (label-smoothed) cross-entropy.

Train accuracy of a mixed batch counts a prediction as right when it names the dominant label of the
mixed target (the argmax of the soft target: the image that covers more of the mix). `state.targets`
stays the hard labels for callbacks (debugger, profiler); `state.inputs` is the mixed batch the model saw.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from vizsla.spec import TrainSpec

log = logging.getLogger("vizsla.train")

SWITCH_PROB = 0.5  # with both mixup and cutmix on: the chance a mixed batch uses CutMix (timm's default)


class NoMixing:
    """Training without mixing: batches as they come, cross-entropy with the job's label smoothing."""

    active = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def mix(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch unchanged and no soft targets."""
        return inputs, None

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy against the hard labels (SOFT is always None here)."""
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    @staticmethod
    def accuracy_targets(targets: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
        """The labels train accuracy counts against: the hard ones, or a mixed batch's dominant label."""
        return targets if soft is None else soft.argmax(dim=1)


class BatchMixing(NoMixing):
    """Mixup and/or CutMix of each even-sized train batch with timm's Mixup (label smoothing included)."""

    active = True

    def __init__(self, spec: TrainSpec, num_classes: int) -> None:
        from timm.data import Mixup
        from timm.loss import SoftTargetCrossEntropy

        super().__init__(spec.label_smoothing)
        self.soft_loss = SoftTargetCrossEntropy()
        self.mixup = Mixup(
            mixup_alpha=spec.mixup,
            cutmix_alpha=spec.cutmix,
            prob=spec.mixup_prob,
            switch_prob=SWITCH_PROB,
            label_smoothing=spec.label_smoothing,
            num_classes=num_classes,
        )
        self._odd_logged = False

    def mix(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mixed batch (mixed in place, as timm does) and its soft targets; an odd batch unmixed."""
        if len(inputs) % 2:
            if not self._odd_logged:
                log.info("mixup/cutmix: a batch of %d (odd) images trains unmixed", len(inputs))
                self._odd_logged = True
            return inputs, None
        return self.mixup(inputs, targets)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, soft: torch.Tensor | None) -> torch.Tensor:
        """timm's SoftTargetCrossEntropy on a mixed batch's soft targets (they hold the label smoothing);
        the plain cross-entropy on a batch left unmixed."""
        if soft is None:
            return super().loss(logits, targets, None)
        return self.soft_loss(logits, soft)


def create_mixing(spec: TrainSpec, num_classes: int, *, on_features: bool) -> NoMixing:
    """BatchMixing when the spec asks for mixup or cutmix on images, else NoMixing (logged once when
    the head trains on cached features)."""
    if spec.mixup <= 0 and spec.cutmix <= 0:
        return NoMixing(spec.label_smoothing)
    if on_features:
        log.warning(
            "mixup/cutmix apply to images: this head trains on cached backbone features, unmixed "
            "(set train.feature_cache: off in the spec to mix images)"
        )
        return NoMixing(spec.label_smoothing)
    alphas = (("mixup", spec.mixup), ("cutmix", spec.cutmix))
    what = " and ".join(f"{name} alpha {alpha:g}" for name, alpha in alphas if alpha > 0)
    log.info("mixing train batches: %s, probability %g per batch", what, spec.mixup_prob)
    return BatchMixing(spec, num_classes)

