"""Jobs of ours for bench_finetune's accuracy sections: run one as `vizsla train` would, print its figures.

Stable API (bench_finetune.py imports it):

    AccuracyRun: label, command, wall_s, result, epoch_valid, head_stage; .valid, .test (0..1)
    run_accuracy_job(label, root, out, train, data=None) -> AccuracyRun   runs, prints, returns
    recipe(result) -> dict            the resolved fine-tuning settings of a job's result.json
    check_margin(label, (name, acc), (name, acc), points=0.0) -> bool   a "target ...: MET/MISSED" line
    subset_folder(root, per_class, dest) -> Path   links to at most PER_CLASS photos a class and split
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import Timer, cache_status, find_split, ours_spec

RECIPE_KEYS = ("train.epochs", "train.staged_head_epochs", "train.lr", "train.backbone_lr_scale",
               "train.layer_decay", "train.warmup_epochs", "train.bn_policy", "train.finetune_image_size",
               "data.augment", "train.feature_views")
CLI_FLAGS = {"finetune": "--finetune", "epochs": "--epochs", "staged_head_epochs": "--staged-head-epochs",
             "finetune_image_size": "--finetune-image-size"}


def recipe(result: dict[str, Any]) -> dict[str, Any]:
    """The resolved fine-tuning settings a job used (its `auto`s filled in), from result.json."""
    hyper = result.get("hyperparameters") or {}
    return {key.split(".", 1)[1]: hyper[key] for key in RECIPE_KEYS if key in hyper}


@dataclass
class AccuracyRun:
    """One job of ours for the accuracy sections: what a user typed, and what the job measured."""

    label: str
    command: str
    wall_s: float
    result: dict[str, Any]
    epoch_valid: list[float] = field(default_factory=list)  # valid accuracy of each epoch of this job
    head_stage: dict[str, Any] | None = None  # a staged job's head stage's result.json

    @property
    def valid(self) -> float:
        return float(self.result["metrics"]["valid_accuracy"])

    @property
    def test(self) -> float:
        return float(self.result["metrics"]["test_accuracy"])


def cli_text(root: Path, train: dict[str, Any], data: dict[str, Any]) -> str:
    """The `vizsla train` command a user would type for these settings."""
    words = ["vizsla train --data", str(root)]
    words += [f"{CLI_FLAGS[key]} {value}" for key, value in train.items()]
    words += ["--no-hflip" for key, value in data.items() if key == "hflip" and value is False]
    return " ".join(words)


def run_accuracy_job(label: str, root: Path, out: Path, train: dict[str, Any],
                     data: dict[str, Any] | None = None) -> AccuracyRun:
    """Run one job of ours as the CLI would build it (tracking off) and gather what the sections print."""
    from vizsla.jobdir import JobDir
    from vizsla.jobs import run_job

    spec = ours_spec(root, out, data=data or {}, train=train)
    with Timer() as wall:
        result = run_job(spec, progress=False)
    if result.get("status") != "Completed":
        raise SystemExit(f"{label}: the job ended {result.get('status')}: {result.get('failure_reason')}")
    job = JobDir(spec.output)
    epochs = [float(r["valid_accuracy"]) for r in job.read_metrics()
              if r.get("kind") == "epoch" and "valid_accuracy" in r]
    stage = job.stage("head").read_result() if "stages" in result else None
    run = AccuracyRun(label, cli_text(root, train, data or {}), wall.seconds, result, epochs, stage)
    _print_run(run)
    return run


def _pct(values: list[float]) -> str:
    """Accuracies (0..1) as percentages, comma-separated."""
    return ", ".join(f"{100 * v:.2f}%" for v in values) or "none"


def _print_run(run: AccuracyRun) -> None:
    """One line per run, and for a staged job its head stage, fine-tune epochs and winner."""
    result = run.result
    source = result.get("test_source")
    note = " (no test split: test is valid)" if source == "valid" else f" (on {source})"
    print(f"{run.label} [{run.command}]: valid {100 * run.valid:.2f}%, test {100 * run.test:.2f}%{note}, "
          f"wall {run.wall_s:.1f} s, feature cache {cache_status(result)}", flush=True)
    if run.head_stage is None:
        print(f"  epochs' valid accuracy: {_pct(run.epoch_valid)}; recipe {recipe(result)}", flush=True)
        return
    stages = result["stages"]
    head = stages["head"]
    head_valid = float((head.get("valid") or {}).get("valid_accuracy", float("nan")))
    phases = result.get("phases") or {}
    own_valid = float((run.head_stage.get("metrics") or {}).get("valid_accuracy", float("nan")))
    print(f"  head stage: valid {100 * head_valid:.2f}% as the staged job measured it (the stage job's own "
          f"figure: {100 * own_valid:.2f}%), after {head.get('epochs')} epoch(s), "
          f"{float(head.get('duration_s') or 0.0):.1f} s (phase head_stage "
          f"{float(phases.get('head_stage', float('nan'))):.1f} s), feature cache "
          f"{cache_status(run.head_stage)}", flush=True)
    print(f"  fine-tune epochs' valid accuracy: {_pct(run.epoch_valid)}; winner: {stages.get('winner')}; "
          f"recipe {recipe(result)}", flush=True)


def check_margin(label: str, better: tuple[str, float], other: tuple[str, float],
                 points: float = 0.0) -> bool:
    """Print whether BETTER's accuracy (0..1) is at least POINTS above OTHER's, as a line run_all gathers."""
    gain = 100 * (better[1] - other[1])
    met = gain >= points - 1e-3  # result.json rounds accuracies to 6 decimals (1e-4 points); an image is more
    print(f"target {label}: {better[0]} {100 * better[1]:.2f}% vs {other[0]} {100 * other[1]:.2f}% "
          f"({gain:+.2f} points, needs >= {points:+g}): {'MET' if met else 'MISSED'}", flush=True)
    return met


def subset_folder(root: Path, per_class: int, dest: Path) -> Path:
    """DEST with links to at most PER_CLASS photos of each class in each split of ROOT (a smoke run)."""
    for kind in ("train", "valid", "test"):
        split = find_split(root, kind)
        if split is None:
            continue
        for class_dir in sorted(p for p in split.iterdir() if p.is_dir()):
            target = dest / split.name / class_dir.name
            target.mkdir(parents=True)
            for photo in sorted(p for p in class_dir.iterdir() if p.is_file())[:per_class]:
                (target / photo.name).symlink_to(photo.resolve())
    return dest
