"""Benchmark 3: fine-tuning: full fine-tune speed vs the tutorial loop, and the staged recipe's accuracy.

Three sections, each printing its runs, a side-by-side table and `target ...: MET/MISSED` lines (the exit
status is 0 whatever the figures, as in every benchmark here; non-zero only when something fails):

1. Speed (hymenoptera, or --data): full fine-tune train images/s, ours (`finetune=full`, every runtime
   setting auto) vs the tutorial loop (benchmarks/baseline.py: fp32, NCHW, eager, torchvision transforms,
   two loader workers). Same network, weights, optimizer family (AdamW, head LR and backbone LR, cosine per
   step), batch size and epochs (default 3). Train images/s counts the training phase only (first batch's
   start to last batch's end of each epoch), so the ratio compares the training loops; wall time, accuracy
   and the runtime ours chose are printed too. `--variant` adds runs of ours with one setting forced.
2. Accuracy on hymenoptera (or --data), all on one fresh feature cache: head-only and staged as a user gets
   them from `vizsla train --data D --finetune head` and `... --finetune staged` (the spec's defaults), beside
   the tutorial loop's valid accuracy from section 1. hymenoptera has no test split: test is valid there.
3. flowers102 (../shared/datasets/flowers102 or --flowers DIR; skipped when absent), one fresh feature
   cache: head-only `--finetune head --epochs 10` (bench_workflow's train step), staged `--finetune staged
   --epochs 6 --finetune-image-size 160` (--flowers-epochs, --flowers-train-size: what fits 2 CPU cores,
   ~5 minutes an epoch; evaluation stays at the model's 224 px. 3 epochs left the valid curve rising,
   92.2/94.8/95.9%, and 5 epochs by hand gave +2.92 points) and frozen features + scikit-learn
   LogisticRegression (bench_workflow.reference).

Ours runs through `vizsla.jobs.run_job(spec)` in this process with MLflow tracking off, so its times
exclude the interpreter's start and the imports (`warm_up_imports`). `--quick` is a smoke run: 1 epoch of
speed, head-only 2 epochs, staged 1 fine-tune epoch after a 2-epoch head stage, flowers only with
`--flowers-subset N` (N photos per class and split); its figures are not the benchmark's.

    python benchmarks/bench_finetune.py [--epochs 3] [--repeats 1] [--variant fp32-nchw ...] [--data DIR]
        [--skip-speed] [--skip-hymenoptera] [--skip-flowers] [--flowers DIR] [--flowers-epochs 3]
        [--flowers-train-size 160] [--flowers-subset N] [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from baseline import BaselineConfig, BaselineResult, run_baseline
from common import (
    SHARED_DATASETS,
    Row,
    Timer,
    base_parser,
    check_accuracy,
    check_target,
    flips_ok,
    fresh_cache_dir,
    ours_spec,
    pick_dataset,
    print_config,
    print_header,
    print_table,
    warm_up_imports,
    work_dir,
)
from finetune_runs import AccuracyRun, check_margin, recipe, run_accuracy_job, subset_folder

from vizsla.callbacks import Callback, TrainState

SPEEDUP_TARGET = 1.3  # the bar: full fine-tune images/s on this CPU, ours / baseline
ACCURACY_TOLERANCE = 0.02  # ours may not be more than 2 points below (153 valid images: 1 image = 0.65 point)
STAGED_VALID_TARGET = 96.0  # %, hymenoptera: the default staged fine-tune's valid accuracy
FLOWERS_MARGIN = 3.0  # points of test accuracy staged must gain over head-only on flowers102
FLOWERS_HEAD_EPOCHS = 10  # bench_workflow's train step: `vizsla train --finetune head --epochs 10`
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32-nchw": {"precision": "fp32", "channels_last": False},
    "fp32-cl": {"precision": "fp32", "channels_last": True},
    "bf16-cl": {"precision": "bf16", "channels_last": True},
    "compile": {"compile": True},
}


class TrainPhaseTimer(Callback):
    """Seconds and images of the training phase of each epoch: epoch start to its last batch's end."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.images = 0
        self.compiled = False
        self._epoch_start = self._last_batch_end = 0.0

    def fit_start(self, state: TrainState) -> None:
        self.compiled = getattr(state.model, "_compiled_call_impl", None) is not None

    def epoch_start(self, state: TrainState) -> None:
        self._epoch_start = self._last_batch_end = time.perf_counter()

    def batch_end(self, state: TrainState) -> None:
        self._last_batch_end = time.perf_counter()
        self.images += state.batch_size

    def epoch_end(self, state: TrainState) -> None:
        self.seconds += self._last_batch_end - self._epoch_start

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="speed: epochs on both sides (default 3)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--lr", type=float, default=1e-3, help="speed: head LR on both sides (default 1e-3)")
    parser.add_argument("--backbone-lr-scale", type=float, default=0.1,
                        help="speed: backbone LR = lr x this, on both sides (default 0.1)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="speed: run both sides this many times, alternating, and report medians")
    parser.add_argument("--variant", action="append", default=[], choices=sorted(VARIANTS),
                        help="speed: also run ours with these settings forced (repeatable)")
    parser.add_argument("--skip-speed", action="store_true", help="leave out section 1 (speed)")
    parser.add_argument("--skip-hymenoptera", action="store_true", help="leave out section 2 (accuracy)")
    parser.add_argument("--skip-flowers", action="store_true", help="leave out section 3 (flowers102)")
    parser.add_argument("--flowers", default=str(SHARED_DATASETS / "flowers102"),
                        help="the flowers102 folder (train/, valid/, test/)")
    parser.add_argument("--flowers-epochs", type=int, default=6,
                        help="fine-tune epochs of staged (default 6)")
    parser.add_argument("--flowers-train-size", type=int, default=160,
                        help="train crop size of staged's fine-tuning, px (default 160; evaluation: 224)")
    parser.add_argument("--flowers-subset", type=int, default=None, metavar="N",
                        help="flowers102: at most N photos per class in each split (a smoke run)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 speed epoch, tiny staged/head epochs, flowers only with a subset")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.repeats, args.flowers_epochs = 1, 1, 1
        args.skip_flowers = args.skip_flowers or args.flowers_subset is None
    return args


# --- 1. speed: full fine-tune, ours vs the tutorial loop ----------------------------------------------


def ours_train_config(args: Any, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"finetune": "full", "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "backbone_lr_scale": args.backbone_lr_scale, "seed": 0, **(overrides or {})}


def baseline_config(args: Any, dataset_name: str) -> BaselineConfig:
    return BaselineConfig(model=args.model, mode="full", epochs=args.epochs, batch_size=args.batch_size,
                          lr=args.lr, backbone_lr_scale=args.backbone_lr_scale, num_workers=2, seed=0,
                          hflip=flips_ok(dataset_name))


def _data_options(dataset_name: str) -> dict[str, Any]:
    """What a user passes for this dataset: --no-hflip for digits, nothing otherwise."""
    return {} if flips_ok(dataset_name) else {"hflip": False}


def run_ours(dataset: tuple[Path, str], args: Any, out: Path,
             overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """One full fine-tune job of ours; returns wall time, train-phase images/s, runtime and accuracies."""
    from vizsla.jobs import run_job

    spec = ours_spec(dataset[0], out, model=args.model, data=_data_options(dataset[1]),
                     train=ours_train_config(args, overrides))
    timer = TrainPhaseTimer()
    with fresh_cache_dir(), Timer() as wall:
        result = run_job(spec, callbacks=[timer], progress=False)
    if result.get("status") != "Completed":
        raise SystemExit(f"our job ended {result.get('status')}: {result.get('failure_reason')}")
    return {"wall_s": wall.seconds, "train_s": timer.seconds, "images_per_s": timer.images_per_s,
            "test_accuracy": float(result["metrics"]["test_accuracy"]),
            "valid_accuracy": float(result["metrics"]["valid_accuracy"]),
            "test_source": result.get("test_source"), "recipe": recipe(result),
            "runtime": {**result.get("runtime", {}), "compiled": timer.compiled}}


def _print_ours(label: str, run: dict[str, Any]) -> None:
    print(f"{label}: wall {run['wall_s']:.1f} s, train {run['train_s']:.1f} s at {run['images_per_s']:.2f} "
          f"images/s, test accuracy {100 * run['test_accuracy']:.2f}% (on {run['test_source']}), "
          f"runtime {run['runtime']}, recipe {run['recipe']}", flush=True)


def _print_baseline(base: BaselineResult) -> None:
    print(f"baseline: wall {base.wall_s:.1f} s, train {base.train_s:.1f} s at {base.images_per_s:.2f} "
          f"images/s, valid accuracy {100 * base.best_valid_accuracy:.2f}% (best epoch), test accuracy "
          f"{100 * base.test_accuracy:.2f}% (on {base.test_split})", flush=True)


def measure_speed(dataset: tuple[Path, str], args: Any) -> tuple[dict[str, list[dict]], list[BaselineResult]]:
    """Alternate runs: baseline, ours, then each variant of ours, REPEATS times."""
    ours: dict[str, list[dict]] = {name: [] for name in ["auto", *args.variant]}
    bases: list[BaselineResult] = []
    for repeat in range(args.repeats):
        bases.append(run_baseline(dataset[0], baseline_config(args, dataset[1])))
        _print_baseline(bases[-1])
        for name in ours:
            with work_dir() as out:
                ours[name].append(run_ours(dataset, args, out / "job", VARIANTS.get(name)))
            _print_ours(f"ours [{name}] (run {repeat + 1})", ours[name][-1])
    return ours, bases


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def report_speed(ours: dict[str, list[dict]], bases: list[BaselineResult], args: Any) -> None:
    """Side-by-side table (medians over repeats) and the verdicts: speed, and accuracy kept."""
    base_ips = statistics.median(b.images_per_s for b in bases)
    base_acc = statistics.median(b.test_accuracy for b in bases)
    runs = ours["auto"]
    rows = [
        Row("train images/s (training phase)", _median(runs, "images_per_s"), base_ips, "images/s", "speed"),
        Row("wall time, whole job", _median(runs, "wall_s"), statistics.median(b.wall_s for b in bases),
            "s", "time"),
        Row("test accuracy", _median(runs, "test_accuracy"), base_acc, kind="accuracy"),
    ]
    for name in args.variant:
        rows.append(Row(f"[{name}] train images/s", _median(ours[name], "images_per_s"), base_ips,
                        "images/s", "speed"))
        rows.append(Row(f"[{name}] test accuracy", _median(ours[name], "test_accuracy"), base_acc,
                        kind="accuracy"))
    title = f"Full fine-tune of {args.model}, {args.epochs} epochs, median of {args.repeats} run(s)"
    print_table(title, rows)
    print(f"runtime ours used: {runs[-1]['runtime']}", flush=True)
    check_target("full fine-tune train images/s, ours/baseline", rows[0].ratio, SPEEDUP_TARGET)
    check_accuracy("full fine-tune test accuracy, ours vs the tutorial loop", rows[2].ours, base_acc,
                   tolerance=ACCURACY_TOLERANCE)


def speed_section(dataset: tuple[Path, str], args: Any) -> list[BaselineResult]:
    """Section 1; returns the tutorial loop's runs (section 2 compares against their valid accuracy)."""
    _section_title(f"1. Speed: full fine-tune on {dataset[1]}, ours (auto runtime) vs the tutorial loop")
    print_config("ours", {"model": args.model, **ours_train_config(args), "runtime": "auto",
                          "tracking": "off"})
    print_config("baseline", {**baseline_config(args, dataset[1]).__dict__, "transforms": "tutorial",
                              "precision": "fp32", "memory format": "NCHW", "execution": "eager"})
    ours, bases = measure_speed(dataset, args)
    report_speed(ours, bases, args)
    return bases


# --- 2 and 3. accuracy: head-only, staged and the references --------------------------------------------


def _section_title(title: str) -> None:
    print(f"\n--- {title} ---", flush=True)


def _quick_epochs(args: Any, staged: bool) -> dict[str, Any]:
    """--quick: 2 head-only epochs; a staged job's head stage of 2 epochs and 1 fine-tune epoch."""
    if not args.quick:
        return {}
    return {"epochs": 1, "staged_head_epochs": 2} if staged else {"epochs": 2}


def hymenoptera_section(dataset: tuple[Path, str], args: Any, bases: list[BaselineResult]) -> None:
    """Section 2: head-only and staged with the CLI's defaults, on one fresh feature cache."""
    root, name = dataset
    _section_title(f"2. Accuracy on {name}: head-only vs staged (CLI defaults) vs the tutorial loop")
    data = _data_options(name)
    with fresh_cache_dir(), work_dir() as work:
        head = run_accuracy_job("head-only", root, work / "head",
                                {"finetune": "head", **_quick_epochs(args, False)}, data)
        staged = run_accuracy_job("staged", root, work / "staged",
                                  {"finetune": "staged", **_quick_epochs(args, True)}, data)
    report_hymenoptera(name, head, staged, bases)


def report_hymenoptera(name: str, head: AccuracyRun, staged: AccuracyRun,
                       bases: list[BaselineResult]) -> None:
    """Table and verdicts of section 2."""
    rows = [Row("valid accuracy: staged vs head-only", staged.valid, head.valid, kind="accuracy"),
            Row("wall time: staged vs head-only", staged.wall_s, head.wall_s, "s", "time")]
    tutorial = statistics.median(b.best_valid_accuracy for b in bases) if bases else None
    if tutorial is not None:
        rows += [Row("valid accuracy: staged vs tutorial loop", staged.valid, tutorial, kind="accuracy"),
                 Row("wall time: staged vs tutorial loop", staged.wall_s,
                     statistics.median(b.wall_s for b in bases), "s", "time")]
        print(f"tutorial loop (section 1: full fine-tune, {bases[0].config.get('epochs')} epochs): valid "
              f"{100 * tutorial:.2f}% (best epoch, median of {len(bases)})", flush=True)
    else:
        print("tutorial loop: not run (--skip-speed); its target is not judged", flush=True)
    print_table(f"{name}: staged (defaults) vs head-only (defaults) and the tutorial loop", rows)
    check_target(f"{name} staged valid accuracy (%)", 100 * staged.valid, STAGED_VALID_TARGET)
    check_margin(f"{name} staged valid >= head-only valid", ("staged", staged.valid),
                 ("head-only", head.valid))
    if tutorial is not None:
        check_margin(f"{name} staged valid >= tutorial loop valid", ("staged", staged.valid),
                     ("tutorial loop", tutorial))


def flowers_section(args: Any) -> None:
    """Section 3: head-only, staged at the CPU's settings, and frozen features + LogisticRegression."""
    root = Path(args.flowers).resolve()
    _section_title("3. flowers102: head-only vs staged vs frozen features + LogisticRegression")
    if not root.is_dir():
        print(f"flowers102: skipped ({root} not found; pass --flowers DIR)", flush=True)
        return
    with fresh_cache_dir(), work_dir() as work:
        if args.flowers_subset:
            root = subset_folder(root, args.flowers_subset, work / "flowers102-subset")
            print(f"flowers102 subset: at most {args.flowers_subset} photos per class and split ({root})")
        print(f"dataset: flowers102 ({root})", flush=True)
        print(f"settings: staged fine-tunes {args.flowers_epochs} epoch(s) at {args.flowers_train_size} px "
              "train crops (evaluation and export at the model's 224 px), every other setting the "
              "spec's default; head-only as bench_workflow's train step", flush=True)
        head_train = {"finetune": "head", "epochs": 2 if args.quick else FLOWERS_HEAD_EPOCHS}
        staged_train = {"finetune": "staged", "epochs": args.flowers_epochs,
                        "finetune_image_size": args.flowers_train_size,
                        **({"staged_head_epochs": 2} if args.quick else {})}
        head = run_accuracy_job("head-only", root, work / "head", head_train)
        staged = run_accuracy_job("staged", root, work / "staged", staged_train)
        reference = run_reference(root)
    report_flowers(head, staged, reference)


def run_reference(root: Path) -> dict[str, Any]:
    """bench_workflow's reference: tutorial-style fp32 extraction of every split + LogisticRegression."""
    from bench_workflow import reference

    wall, accuracy, parts = reference(root)
    print(f"reference [frozen {BaselineConfig().model} features, fp32 eager, + LogisticRegression(lbfgs, "
          f"max_iter 1000)]: test {100 * accuracy:.2f}%, valid not measured, wall {wall:.1f} s (extract "
          f"{parts['extract']:.1f} s, fit {parts['fit']:.1f} s)", flush=True)
    return {"wall_s": wall, "test": accuracy}


def report_flowers(head: AccuracyRun, staged: AccuracyRun, reference: dict[str, Any]) -> None:
    """Table and verdicts of section 3."""
    rows = [Row("test accuracy: staged vs head-only", staged.test, head.test, kind="accuracy"),
            Row("valid accuracy: staged vs head-only", staged.valid, head.valid, kind="accuracy"),
            Row("test accuracy: staged vs reference", staged.test, reference["test"], kind="accuracy"),
            Row("wall time: staged vs head-only", staged.wall_s, head.wall_s, "s", "time"),
            Row("wall time: staged vs reference", staged.wall_s, reference["wall_s"], "s", "time")]
    print_table("flowers102: staged vs head-only and frozen features + LogisticRegression", rows)
    check_margin(f"flowers102 staged test >= head-only test + {FLOWERS_MARGIN:g} points",
                 ("staged", staged.test), ("head-only", head.test), FLOWERS_MARGIN)
    check_margin("flowers102 staged test >= frozen features + LogisticRegression test",
                 ("staged", staged.test), ("reference", reference["test"]))
    check_margin("flowers102 staged valid >= head-only valid", ("staged", staged.valid),
                 ("head-only", head.valid))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dataset = pick_dataset(args.data)
    only_flowers = args.skip_speed and args.skip_hymenoptera  # section 3 prints its own dataset
    print_header("Benchmark 3: fine-tuning: full fine-tune speed, staged vs head-only accuracy",
                 None if only_flowers else dataset)
    if args.quick:
        print("quick smoke run: tiny epoch counts, these figures are not the benchmark's", flush=True)
    warm_up_imports()
    bases = [] if args.skip_speed else speed_section(dataset, args)
    if not args.skip_hymenoptera:
        hymenoptera_section(dataset, args, bases)
    if not args.skip_flowers:
        flowers_section(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
