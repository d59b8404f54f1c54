"""The plain baseline every benchmark compares against: a training loop as the PyTorch tutorials write it.

It follows the PyTorch transfer-learning tutorial: torchvision.datasets.ImageFolder (PIL decode) with
torchvision.transforms (RandomResizedCrop + RandomHorizontalFlip + ToTensor + Normalize to train, Resize +
CenterCrop to evaluate), a shuffling DataLoader with num_workers=2 (a tutorial's choice; this machine has 2
cores), fp32, eager mode, no feature cache, the backbone run forward on every image of every epoch, the best
valid epoch's weights kept and evaluated at the end. The network is ours (same backbone, same pretrained
weights, same head, same mean/std from `model.preprocessing`), so accuracy is comparable: the baseline differs
in the loop, not the model. A frozen backbone stays in eval mode (fixed BatchNorm statistics, like ours).
Optimizer AdamW, cosine LR per step with optional linear warmup: the same schedule family as ours.

Stable API (bench_finetune.py and bench_data.py import it; keep these signatures):

    BaselineConfig(model="efficientnet_lite0", weights="auto", mode="head"|"full", epochs=10,
                   batch_size=32, lr=1e-3, weight_decay=1e-4, backbone_lr_scale=1.0, warmup_epochs=0.0,
                   head=(), head_dropout=0.2, label_smoothing=0.0, hflip=True, num_workers=2, seed=0,
                   max_steps_per_epoch=None, evaluate=True)
    BaselineResult: wall_s, train_s, eval_s, train_images, images_per_s, best_valid_accuracy,
                    final_valid_accuracy, test_accuracy, test_split, history, config; .summary() -> dict
    run_baseline(root: Path, config: BaselineConfig) -> BaselineResult
    tutorial_transforms(preprocessing: dict, hflip=True) -> {"train": Compose, "eval": Compose}
    build_datasets(root: Path, preprocessing: dict, hflip=True) -> {"train"|"valid"|"test": ImageFolder}
    build_model(config: BaselineConfig, classes: list[str]) -> vizsla Classifier (seeded, on CPU)

images_per_s counts train images through the training phase only (train_s); wall_s is the whole call:
datasets, model, every epoch's training and validation, and the final test evaluation.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from common import find_split


@dataclass(frozen=True)
class BaselineConfig:
    """What the baseline trains; mirrors the TrainSpec fields a benchmark sets on our side."""

    model: str = "efficientnet_lite0"
    weights: str = "auto"
    mode: Literal["head", "full"] = "head"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    backbone_lr_scale: float = 1.0  # full mode: backbone LR = lr * this (a tutorial uses one LR: 1.0)
    warmup_epochs: float = 0.0
    head: tuple[int, ...] = ()
    head_dropout: float = 0.2
    label_smoothing: float = 0.0
    hflip: bool = True
    num_workers: int = 2
    seed: int = 0
    max_steps_per_epoch: int | None = None  # cap train steps per epoch (for images/s probes)
    evaluate: bool = True  # validate every epoch and test at the end


@dataclass(frozen=True)
class BaselineResult:
    """Timings and accuracies of one baseline run."""

    wall_s: float
    train_s: float
    eval_s: float
    train_images: int
    images_per_s: float
    best_valid_accuracy: float
    final_valid_accuracy: float
    test_accuracy: float
    test_split: str
    history: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a flat dict (no history)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("history", "config")}


def tutorial_transforms(preprocessing: dict[str, Any], hflip: bool = True) -> dict[str, Any]:
    """The tutorial's transforms at the model's input size (Resize 256 / CenterCrop 224 at 224 px)."""
    from torchvision import transforms

    size = int(preprocessing["input_size"][-1])
    normalize = transforms.Normalize(preprocessing["mean"], preprocessing["std"])
    train = [transforms.RandomResizedCrop(size)]
    if hflip:
        train.append(transforms.RandomHorizontalFlip())
    return {
        "train": transforms.Compose([*train, transforms.ToTensor(), normalize]),
        "eval": transforms.Compose(
            [transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size), transforms.ToTensor(),
             normalize]
        ),
    }


def build_datasets(root: Path, preprocessing: dict[str, Any], hflip: bool = True) -> dict[str, Any]:
    """torchvision ImageFolders of the train, valid and (when present) test splits."""
    from torchvision import datasets

    tfs = tutorial_transforms(preprocessing, hflip)
    found = {kind: find_split(Path(root), kind) for kind in ("train", "valid", "test")}
    if found["train"] is None or found["valid"] is None:
        raise SystemExit(f"{root} needs train/ and val(id)/ split folders for the baseline")
    return {
        kind: datasets.ImageFolder(str(path), tfs["train" if kind == "train" else "eval"])
        for kind, path in found.items()
        if path is not None
    }


def build_model(config: BaselineConfig, classes: list[str]) -> Any:
    """Our classifier (same pretrained backbone and head), seeded; head mode freezes the backbone."""
    import torch

    from vizsla.models import create_classifier
    from vizsla.spec import ModelSpec

    torch.manual_seed(config.seed)
    spec = ModelSpec(name=config.model, weights=config.weights, head=list(config.head),
                     head_dropout=config.head_dropout)
    model = create_classifier(spec, classes)
    if config.mode == "head":
        for param in model.backbone.parameters():
            param.requires_grad = False
    return model


def _optimizer_and_schedule(model: Any, config: BaselineConfig, steps_per_epoch: int) -> tuple[Any, Any]:
    """AdamW (head LR, backbone LR scaled in full mode) and a per-step cosine schedule with warmup."""
    import torch

    groups = [{"params": list(model.head.parameters()), "lr": config.lr}]
    if config.mode == "full":
        backbone_lr = config.lr * config.backbone_lr_scale
        groups.append({"params": list(model.backbone.parameters()), "lr": backbone_lr})
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(total - 1, round(config.warmup_epochs * steps_per_epoch))
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup)
    if warmup <= 0:
        return optimizer, cosine
    ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
    return optimizer, torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])


def _loader(dataset: Any, config: BaselineConfig, *, train: bool) -> Any:
    import torch
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(config.seed)
    # BatchNorm cannot train on a one-image last batch (full mode): drop it then, as ours does.
    drop_last = train and len(dataset) % config.batch_size == 1
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=train, num_workers=config.num_workers,
                      generator=generator, drop_last=drop_last)


def _train_epoch(model: Any, loader: Any, optimizer: Any, scheduler: Any,
                 config: BaselineConfig) -> tuple[int, int, float]:
    """One tutorial-style epoch; returns (images seen, correct, summed loss)."""
    import torch
    import torch.nn.functional as F

    model.train()
    if config.mode == "head":
        model.backbone.eval()
    seen = correct = 0
    loss_sum = 0.0
    for step, (inputs, targets) in enumerate(loader):
        if config.max_steps_per_epoch is not None and step >= config.max_steps_per_epoch:
            break
        optimizer.zero_grad()
        with torch.set_grad_enabled(True):
            logits = model(inputs)
            loss = F.cross_entropy(logits, targets, label_smoothing=config.label_smoothing)
            loss.backward()
            optimizer.step()
        scheduler.step()
        seen += targets.numel()
        correct += int((logits.argmax(1) == targets).sum())
        loss_sum += loss.item() * targets.numel()
    return seen, correct, loss_sum


def _evaluate(model: Any, loader: Any) -> float:
    import torch

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for inputs, targets in loader:
            correct += int((model(inputs).argmax(1) == targets).sum())
            total += targets.numel()
    return correct / max(1, total)


@dataclass
class _Fit:
    """What the epochs of one baseline run measured."""

    train_s: float = 0.0
    eval_s: float = 0.0
    images: int = 0
    best_accuracy: float = math.nan
    best_state: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def _fit(model: Any, train_loader: Any, valid_loader: Any, config: BaselineConfig) -> _Fit:
    """Every epoch: train, then validate and keep the best epoch's weights (as the tutorial does)."""
    steps = len(train_loader)
    if config.max_steps_per_epoch is not None:
        steps = min(steps, config.max_steps_per_epoch)
    optimizer, scheduler = _optimizer_and_schedule(model, config, steps)
    fit = _Fit()
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        seen, correct, loss_sum = _train_epoch(model, train_loader, optimizer, scheduler, config)
        t1 = time.perf_counter()
        valid_acc = _evaluate(model, valid_loader) if config.evaluate else math.nan
        fit.eval_s += time.perf_counter() - t1
        fit.train_s += t1 - t0
        fit.images += seen
        fit.history.append({"epoch": epoch, "train_loss": loss_sum / max(1, seen),
                            "train_accuracy": correct / max(1, seen), "valid_accuracy": valid_acc})
        if config.evaluate and not valid_acc <= fit.best_accuracy:  # the first epoch beats NaN
            fit.best_accuracy, fit.best_state = valid_acc, copy.deepcopy(model.state_dict())
    return fit


def run_baseline(root: Path, config: BaselineConfig) -> BaselineResult:
    """Train and evaluate the tutorial way; time everything (datasets and model included)."""
    from torchvision.datasets.folder import find_classes

    started = time.perf_counter()
    train_dir = find_split(Path(root), "train")
    if train_dir is None:
        raise SystemExit(f"{root} has no train/ split folder")
    model = build_model(config, find_classes(str(train_dir))[0])
    splits = build_datasets(root, model.preprocessing, config.hflip)
    loaders = {kind: _loader(ds, config, train=kind == "train") for kind, ds in splits.items()}
    fit = _fit(model, loaders["train"], loaders["valid"], config)
    test_split, test_acc = "valid", fit.best_accuracy  # no test split: report on valid, as ours does
    if config.evaluate and "test" in loaders:
        t0 = time.perf_counter()
        model.load_state_dict(fit.best_state)
        test_split, test_acc = "test", _evaluate(model, loaders["test"])
        fit.eval_s += time.perf_counter() - t0
    return BaselineResult(
        wall_s=time.perf_counter() - started, train_s=fit.train_s, eval_s=fit.eval_s,
        train_images=fit.images, images_per_s=fit.images / fit.train_s if fit.train_s > 0 else math.nan,
        best_valid_accuracy=fit.best_accuracy, final_valid_accuracy=fit.history[-1]["valid_accuracy"],
        test_accuracy=test_acc, test_split=test_split, history=fit.history, config=dataclasses.asdict(config),
    )
