"""The fine-tuning recipe's defaults: what each `auto` of the training options becomes, per finetune mode.

The figures that chose them are in docs/finetuning.md (bench_finetune on hymenoptera and flowers102).
`resolve_train` is applied by `runtime.resolved_spec`, so the saved spec.yaml holds the values a job used.
`full` keeps its plain recipe (one backbone LR, no warmup, BatchNorm training) until measurements choose
otherwise; SageMaker Debugger's broken-training demos (tests/debugger) rely on that plain loop.
"""

from __future__ import annotations

from vizsla.spec import TrainSpec

# Backbone LR = lr x this. A staged job's head arrives trained, so its fine-tuning can move faster than a
# full job's under a random head (flowers102, 160 px, 2 epochs: 3e-4 took test from 93.4% to 94.8%).
BACKBONE_LR_SCALE = {"head": 0.1, "full": 0.1, "staged": 0.3}
# Layer-wise LR decay of a trained backbone (timm's, per group_matcher layer: 17 on efficientnet_lite0).
LAYER_DECAY: dict[str, float | None] = {"head": None, "full": None, "staged": 0.8}
# Layers whose decayed LR scale is below this stay frozen (the backward pass stops above them).
FREEZE_BELOW_LR_SCALE = 0.0
# Warmup of a trained backbone, in epochs: its first steps see a head's gradients and must stay small.
WARMUP_EPOCHS = {"head": 0.0, "full": 0.0, "staged": 1.0}
# A staged job's fine-tuning keeps the backbone's BatchNorm statistics: the head stage learned on features
# computed with them (hymenoptera: fine-tune epochs at 92.2-94.1% frozen vs 92.2-93.5% training).
BN_POLICY = {"head": "frozen", "full": "train", "staged": "frozen"}


def resolve_train(train: TrainSpec) -> TrainSpec:
    """TRAIN with backbone_lr_scale, layer_decay, freeze_below_lr_scale, warmup_epochs and bn_policy filled
    in for its finetune mode (values the user set are kept)."""
    mode = train.finetune
    update: dict[str, object] = {}
    if train.backbone_lr_scale is None:
        update["backbone_lr_scale"] = BACKBONE_LR_SCALE[mode]
    if train.layer_decay is None and LAYER_DECAY[mode] is not None:
        update["layer_decay"] = LAYER_DECAY[mode]
    if train.freeze_below_lr_scale is None:
        update["freeze_below_lr_scale"] = FREEZE_BELOW_LR_SCALE
    if train.warmup_epochs is None:
        update["warmup_epochs"] = WARMUP_EPOCHS[mode]
    if train.bn_policy == "auto":
        update["bn_policy"] = BN_POLICY[mode]
    return train.model_copy(update=update) if update else train
