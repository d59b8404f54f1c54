"""`vizsla train`: run a training job from CLI flags and/or a YAML job spec."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from vizsla.cli import options as o
from vizsla.cli.options import command, flag, given, in_panel, nest
from vizsla.errors import UserError
from vizsla.infra.process import process_start_time
from vizsla.jobdir import JobDir
from vizsla.scriptmode.spec import ScriptDistribution

LAUNCHED_BY_VIZSLA = "VIZSLA_LAUNCHER_PID"  # set by `--nproc-per-node` for the processes it starts
JOB_STARTED = "VIZSLA_JOB_STARTED"  # the launcher's start (epoch seconds), for the processes it starts


_client_started: float | None = None  # set in a resident worker's child: when the `vizsla` command began


def started_at(when: float) -> None:
    """In a resident worker's child (vizsla.resident): the command began at WHEN in the client process,
    whose start the job's time counts from, not the fork's."""
    global _client_started
    _client_started = when


def command_started() -> float:
    """When this `vizsla train` began, in epoch seconds: the job's time counts from it.

    The launcher's start for the processes `--nproc-per-node` started, the client's start in a resident
    worker's child, this process's start in a `vizsla` process (interpreter and imports included), else now
    (the command called in-process, as tests do)."""
    inherited = os.environ.get(JOB_STARTED)
    if inherited and os.environ.get(LAUNCHED_BY_VIZSLA):
        with contextlib.suppress(ValueError):
            return float(inherited)
    if _client_started is not None:
        return _client_started
    if _is_vizsla_process():
        started = process_start_time()
        if started is not None:
            return started
    return time.time()


def _is_vizsla_process() -> bool:
    """Whether this process is the `vizsla` command (`vizsla ...` or `python -m vizsla ...`)."""
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return Path(sys.argv[0]).name == "vizsla" or getattr(main_spec, "name", None) == "vizsla.__main__"


# --- the options of `vizsla train`: flag -> JobSpec field, whose description is the help -----------------

CONFIG = flag("config", "--config -c", kind=Path, help="YAML job spec; flags override its values.")
RESUME = flag(
    "resume",
    "--resume",
    kind=Path,
    help="Continue the killed or stopped job in this directory from its last checkpoint "
    "(its saved spec is used).",
)
OVERWRITE = flag(
    "overwrite", "--overwrite", kind=bool, default=False, help="Delete an existing job in --output first."
)
EXTRA = flag(
    "extra",
    "",
    kind=list[str],
    help="More KEY=VALUE after --hyperparameters.",
    settings={"hidden": True, "metavar": "KEY=VALUE"},
)
DISTRIBUTED = (
    flag("nproc_per_node", "--nproc-per-node", "nproc_per_node", ScriptDistribution, kind=int),
    flag("nnodes", "--nnodes", "nnodes", ScriptDistribution, kind=int, default=1),
    flag("node_rank", "--node-rank", "node_rank", ScriptDistribution, kind=int),
    flag("rdzv_endpoint", "--rdzv-endpoint", "rdzv_endpoint", ScriptDistribution),
    flag("max_restarts", "--max-restarts", "max_restarts", ScriptDistribution, kind=int, default=0),
)
SCRIPT_ONLY = (  # options a built-in job refuses
    o.CHANNELS,
    o.HYPERPARAMETERS,
    o.METRIC_DEFINITIONS,
    o.INSTALL_REQUIREMENTS,
    o.MAX_RUN,
    o.SOURCE_DIR,
    o.NO_DEBUG_HOOK,
    o.PYTHON,
    o.INFERENCE_ENTRY_POINT,
)
TRAIN_FLAGS = (
    *in_panel(
        "Data",
        o.DATA,
        flag("augment", "--augment/--no-augment", "data.augment", kind=bool),
        flag("hflip", "--hflip/--no-hflip", "data.hflip", kind=bool),
        flag("workers", "--workers", "data.num_workers", kind=int),
        flag("auto_augment", "--auto-augment", "data.auto_augment"),
        flag("random_erasing", "--random-erasing", "data.random_erasing", kind=float),
    ),
    *in_panel(
        "Run",
        o.OUTPUT,
        CONFIG,
        RESUME,
        OVERWRITE,
        o.NAME,
        flag("precision", "--precision", "train.precision"),
        flag("device", "--device", "train.device"),
        flag("seed", "--seed", "train.seed", kind=int),
        o.TRACKING_URI,
        o.EXPERIMENT,
        o.NO_TRACKING,
        o.REGISTER,
        o.NO_LOG_MODEL,
        o.TENSORBOARD,
        o.QUIET,
    ),
    *in_panel(
        "Model",
        o.MODEL,
        flag("weights", "--weights", "model.weights"),
        flag("head", "--head", "model.head"),
        flag("head_dropout", "--head-dropout", "model.head_dropout", kind=float),
        flag("head_activation", "--head-activation", "model.head_activation"),
        flag("image_size", "--image-size", "model.image_size", kind=int),
    ),
    *in_panel(
        "Optimisation",
        o.FINETUNE,
        o.EPOCHS,
        flag("lr", "--lr", "train.lr", kind=float),
        flag("backbone_lr_scale", "--backbone-lr-scale", "train.backbone_lr_scale", kind=float),
        flag("batch_size", "--batch-size -b", "train.batch_size", kind=int),
        flag("optimizer", "--optimizer", "train.optimizer"),
        flag("weight_decay", "--weight-decay", "train.weight_decay", kind=float),
        flag("schedule", "--schedule", "train.schedule"),
        flag("warmup_epochs", "--warmup-epochs", "train.warmup_epochs", kind=float),
        flag("label_smoothing", "--label-smoothing", "train.label_smoothing", kind=float),
        flag("grad_clip", "--grad-clip", "train.grad_clip_norm", kind=float),
        flag("early_stopping", "--early-stopping", "train.early_stopping_patience", kind=int),
        flag("staged_head_epochs", "--staged-head-epochs", "train.staged_head_epochs", kind=int),
        flag("finetune_image_size", "--finetune-image-size", "train.finetune_image_size", kind=int),
        flag("layer_decay", "--layer-decay", "train.layer_decay", kind=float),
        flag("freeze_below", "--freeze-below-lr-scale", "train.freeze_below_lr_scale", kind=float),
        flag("bn_policy", "--bn-policy", "train.bn_policy"),
        flag("mixup", "--mixup", "train.mixup", kind=float),
        flag("cutmix", "--cutmix", "train.cutmix", kind=float),
        flag("mixup_prob", "--mixup-prob", "train.mixup_prob", kind=float),
        flag("ema_decay", "--ema-decay", "train.ema_decay", kind=float),
        flag("accumulate_steps", "--accumulate-steps", "train.accumulate_steps", kind=int),
        flag("keep_best", "--keep-best", "train.keep_best_checkpoints", kind=int),
    ),
    *in_panel("Debugger", o.DEBUG, o.PROFILE, o.RULES),
    *in_panel(
        "Script mode",
        o.ENTRY_POINT,
        o.SOURCE_DIR,
        o.CHANNELS,
        o.HYPERPARAMETERS,
        o.METRIC_DEFINITIONS,
        o.INSTALL_REQUIREMENTS,
        o.MAX_RUN,
        o.NO_DEBUG_HOOK,
        o.PYTHON,
        o.INFERENCE_ENTRY_POINT,
    ),
    EXTRA,
    *in_panel("Distributed (torchrun)", *DISTRIBUTED),
)
BUILTIN = tuple(f for f in TRAIN_FLAGS if f.spec is o.JobSpec)  # the flags that fill Vizsla's JobSpec


@command(*TRAIN_FLAGS)
def train(**options: Any) -> None:
    """Fine-tune a pretrained image classifier on a folder of images, or run your own training script."""
    started = command_started()
    from vizsla.cli import script_train

    torchrun = {f.name: options.pop(f.name) for f in DISTRIBUTED}
    if script_train.is_script_job(options["entry_point"], options["config"], options["resume"]):
        distribution = torchrun if torchrun["nproc_per_node"] is not None else None
        script_train.train_script(**options, distribution=distribution)
        return
    script_train.check_builtin_args(options["extra"], {f.decls[0]: options[f.name] for f in SCRIPT_ONLY})
    from vizsla.spec import build_spec, load_job_spec, read_yaml
    from vizsla.tuning.space import parse_head

    console = Console(stderr=True)
    resume, config = options["resume"], options["config"]
    if resume is not None:
        _job_spec_path(resume)
        spec = load_job_spec(resume)  # the folder where it is now, wherever it was first run
        console.print(f"resuming [bold]{spec.job_name}[/bold] in {resume}")
    else:
        options["head"] = parse_head(options["head"])  # the one parser of head sizes written as text
        base = read_yaml(config) if config else {}
        merged = nest(given(BUILTIN, options))
        if not (merged.get("data", {}).get("root") or base.get("data", {}).get("root")):
            raise UserError("no data given: pass --data ROOT (or data.root in --config)")
        if not (merged.get("output") or base.get("output")):
            raise UserError("no job directory given: pass --output DIR")
        spec = build_spec(base, merged, source=str(config) if config else "command line")
        if spec.tracking.registered_model_name and not spec.tracking.enabled:
            raise UserError("--register needs the job's MLflow run: drop --no-tracking (tracking.enabled)")
        from vizsla.models.registry import check_model_name

        check_model_name(spec.model.name)  # before --overwrite deletes anything: a typo refuses the job
        first = torchrun["node_rank"] in (None, 0) and os.environ.get("RANK", "0") == "0"
        if first:  # one process prepares the job directory
            _prepare_output(Path(spec.output), options["overwrite"])
    result = _run(spec, torchrun, resume=resume is not None, quiet=options["quiet"], started=started)
    if os.environ.get("RANK", "0") != "0" or os.environ.get(LAUNCHED_BY_VIZSLA):
        if result.get("status") == "Failed":
            raise typer.Exit(1)
        return  # rank 0, or the launcher that started the processes, prints the job's summary
    _print_summary(console, result)
    if result.get("status") == "Failed":
        raise typer.Exit(1)


def _run(spec: Any, torchrun: dict[str, Any], *, resume: bool, quiet: bool, started: float) -> dict[str, Any]:
    """Run the job in this process, or under torchrun when --nproc-per-node is given."""
    if torchrun["nproc_per_node"] is None:
        from vizsla.jobs import run_job

        return run_job(spec, resume=resume, progress=not quiet, started=started)
    from vizsla.training.launch import LaunchOptions, launch

    os.environ[JOB_STARTED] = repr(started)  # inherited by the processes torchrun starts
    try:
        return launch(spec, LaunchOptions(**torchrun), resume=resume, quiet=quiet)
    finally:
        os.environ.pop(JOB_STARTED, None)


def _job_spec_path(job_dir: Path) -> Path:
    spec_path = JobDir(job_dir).spec
    if not spec_path.is_file():
        raise UserError(f"cannot resume {job_dir}: no spec.yaml there (is it a vizsla job directory?)")
    return spec_path


def _prepare_output(output: Path, overwrite: bool) -> None:
    if overwrite and output.exists():
        if output.is_dir() and (JobDir(output).spec.is_file() or not any(output.iterdir())):
            shutil.rmtree(output)
        else:
            raise UserError(f"--overwrite refuses to delete {output}: it is not a vizsla job directory")


def _times(result: dict[str, Any]) -> str:
    """'in 98 s (startup 1.2 s, validate 9.0 s, ...)', and a resumed job's total over its attempts."""
    from vizsla.training.timing import format_seconds, phases_text

    duration = result.get("duration_s")
    if not isinstance(duration, int | float):
        return ""
    text = f"in {format_seconds(duration)}"
    phases = phases_text(result.get("phases") or {})
    if phases:
        text += f" ({phases})"
    attempts, total = result.get("attempts"), result.get("total_duration_s")
    if isinstance(attempts, int) and attempts > 1 and isinstance(total, int | float):
        text += f"; {format_seconds(total)} over {attempts} attempts"
    return text


def _print_summary(console: Console, result: dict[str, Any]) -> None:
    metrics = result.get("metrics", {})
    status = result.get("status", "?")
    colour = {"Completed": "green", "Stopped": "yellow", "Failed": "red"}.get(status, "white")
    console.print(f"[bold {colour}]{status}[/] {escape(str(result.get('job_name')))} {_times(result)}")
    shown = [f"{k} {v:.4f}" for k, v in metrics.items() if k.endswith(("accuracy", "loss"))]
    if shown:
        console.print("  " + "  ".join(shown))
    if result.get("test_source") == "valid":
        console.print("  (no test split: test metrics are on the validation split)")
    if result.get("stop_reason"):
        console.print(f"  {result['stop_reason']}")
    if result.get("failure_reason"):
        console.print(f"  [red]{escape(str(result['failure_reason']))}[/]")
    console.print(f"  job directory: {result.get('job_dir')}")
