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

from vizsla.errors import UserError

DATA = "Data"
MODEL = "Model"
OPTIM = "Optimisation"
RUN = "Run"
DEBUG = "Debugger"
SCRIPT = "Script mode"
DIST = "Distributed (torchrun)"
LAUNCHED_BY_VIZSLA = "VIZSLA_LAUNCHER_PID"  # set by `--nproc-per-node` for the processes it starts
JOB_STARTED = "VIZSLA_JOB_STARTED"  # the launcher's start (epoch seconds), for the processes it starts


def command_started() -> float:
    """When this `vizsla train` began, in epoch seconds: the job's time counts from it.

    The launcher's start for the processes `--nproc-per-node` started, this process's start in a `vizsla`
    process (interpreter and imports included), else now (the command called in-process, as tests do)."""
    inherited = os.environ.get(JOB_STARTED)
    if inherited and os.environ.get(LAUNCHED_BY_VIZSLA):
        with contextlib.suppress(ValueError):
            return float(inherited)
    if _is_vizsla_process():
        started = _process_start()
        if started is not None:
            return started
    return time.time()


def _is_vizsla_process() -> bool:
    """Whether this process is the `vizsla` command (`vizsla ...` or `python -m vizsla ...`)."""
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return Path(sys.argv[0]).name == "vizsla" or getattr(main_spec, "name", None) == "vizsla.__main__"


def _process_start() -> float | None:
    """This process's start in epoch seconds; None when the system cannot tell."""
    try:  # Linux: start tick (field 22 of /proc/self/stat) on the boot clock; psutil's rounds to 1 s
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - no start time: the caller counts from now
        return None


def _overrides(values: dict[str, Any]) -> dict[str, Any]:
    """Nest the CLI values that were given ('section.field' -> value) into a spec mapping."""
    nested: dict[str, Any] = {}
    for dotted, value in values.items():
        if value is None:
            continue
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def train(
    data: str = typer.Option(
        None,
        "--data",
        help="Image folder: ROOT/{train,valid,test}/<class>/*.jpg, or "
        "ROOT/<class>/*.jpg to split for you; a local path or s3:// / gs:// URI.",
        rich_help_panel=DATA,
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Job directory to write everything into.", rich_help_panel=RUN
    ),
    config: Path = typer.Option(
        None, "--config", "-c", help="YAML job spec; flags override its values.", rich_help_panel=RUN
    ),
    resume: Path = typer.Option(
        None,
        "--resume",
        help="Continue the killed or stopped job in this directory "
        "from its last checkpoint (its saved spec is used).",
        rich_help_panel=RUN,
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Delete an existing job in --output first.", rich_help_panel=RUN
    ),
    name: str = typer.Option(
        None, "--name", help="Job name (default: the output folder's name).", rich_help_panel=RUN
    ),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="timm model name, e.g. resnet34, efficientnet_lite0 (default). `vizsla models list` shows them.",
        rich_help_panel=MODEL,
    ),
    weights: str = typer.Option(
        None,
        "--weights",
        help="Pretrained weights: auto (installed package, else hub), "
        "hub, package, none, or a path to a .pth/.safetensors file.",
        rich_help_panel=MODEL,
    ),
    head: str = typer.Option(
        None,
        "--head",
        help="Hidden sizes of the MLP head, e.g. 256,128 (ResNet + 3 fully "
        "connected layers); 'linear' for one layer.",
        rich_help_panel=MODEL,
    ),
    head_dropout: float = typer.Option(
        None, "--head-dropout", help="Dropout in the head (0-1).", rich_help_panel=MODEL
    ),
    head_activation: str = typer.Option(
        None, "--head-activation", help="relu, gelu, silu or tanh.", rich_help_panel=MODEL
    ),
    image_size: int = typer.Option(
        None, "--image-size", help="Input size in pixels (default: the model's).", rich_help_panel=MODEL
    ),
    finetune: str = typer.Option(
        None,
        "--finetune",
        help="head: train the head on a frozen backbone; full: "
        "train everything; staged: head first, then all with a lower backbone LR.",
        rich_help_panel=OPTIM,
    ),
    epochs: int = typer.Option(None, "--epochs", help="Number of epochs.", rich_help_panel=OPTIM),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate of the head.", rich_help_panel=OPTIM),
    backbone_lr_scale: float = typer.Option(
        None, "--backbone-lr-scale", help="Backbone LR = lr x this (full/staged).", rich_help_panel=OPTIM
    ),
    batch_size: int = typer.Option(
        None, "--batch-size", "-b", help="Images per step.", rich_help_panel=OPTIM
    ),
    optimizer: str = typer.Option(None, "--optimizer", help="adamw or sgd.", rich_help_panel=OPTIM),
    weight_decay: float = typer.Option(None, "--weight-decay", help="Weight decay.", rich_help_panel=OPTIM),
    schedule: str = typer.Option(
        None, "--schedule", help="cosine, onecycle or constant.", rich_help_panel=OPTIM
    ),
    warmup_epochs: float = typer.Option(
        None, "--warmup-epochs", help="Linear LR warmup, in epochs.", rich_help_panel=OPTIM
    ),
    label_smoothing: float = typer.Option(
        None, "--label-smoothing", help="Label smoothing (0-1).", rich_help_panel=OPTIM
    ),
    grad_clip: float = typer.Option(
        None, "--grad-clip", help="Clip the gradient norm to this value.", rich_help_panel=OPTIM
    ),
    early_stopping: int = typer.Option(
        None, "--early-stopping", help="Stop after N epochs without valid improvement.", rich_help_panel=OPTIM
    ),
    augment: bool = typer.Option(
        None, "--augment/--no-augment", help="Random crops and flips on train.", rich_help_panel=DATA
    ),
    hflip: bool = typer.Option(
        None, "--hflip/--no-hflip", help="Horizontal flips when augmenting.", rich_help_panel=DATA
    ),
    workers: int = typer.Option(
        None, "--workers", help="Data loader worker processes (default: by cores).", rich_help_panel=DATA
    ),
    precision: str = typer.Option(
        None, "--precision", help="auto, fp32, bf16 or fp16 (CUDA).", rich_help_panel=RUN
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=RUN),
    seed: int = typer.Option(
        None, "--seed", help="Seed of init, data order and augmentation.", rich_help_panel=RUN
    ),
    tracking_uri: str = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking URI (default: sqlite file next to the job directory).",
        rich_help_panel=RUN,
    ),
    experiment: str = typer.Option(None, "--experiment", help="MLflow experiment name.", rich_help_panel=RUN),
    no_tracking: bool = typer.Option(
        False, "--no-tracking", help="Do not record the job in MLflow.", rich_help_panel=RUN
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.", rich_help_panel=RUN),
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Record losses, weights, gradients and activations into DIR/debug and run the default "
        "debugger rules during training (`vizsla debug DIR` shows what they found).",
        rich_help_panel=DEBUG,
    ),
    profile: bool = typer.Option(
        False,
        "--profile",
        help="Profile the job: system metrics, step phases, rules with recommendations, "
        "DIR/reports/profiler-report.html (`vizsla profile DIR` rebuilds it).",
        rich_help_panel=DEBUG,
    ),
    rules: str = typer.Option(
        None,
        "--rules",
        help="Debugger rules to run instead of the defaults, e.g. VanishingGradient,Overfit "
        "(implies --debug; tune them in the YAML debug: section).",
        rich_help_panel=DEBUG,
    ),
    entry_point: str = typer.Option(
        None,
        "--entry-point",
        help="Run your own SageMaker training script (e.g. train_model.py) under the training toolkit's "
        "contract (SM_* variables, --key value hyperparameters) instead of the built-in trainer.",
        rich_help_panel=SCRIPT,
    ),
    source_dir: Path = typer.Option(
        None,
        "--source-dir",
        help="Folder of the script and its modules (its working directory).",
        rich_help_panel=SCRIPT,
    ),
    channel: list[str] = typer.Option(
        None,
        "--channel",
        help="NAME=PATH_OR_URI input channel -> SM_CHANNEL_NAME (repeat it).",
        rich_help_panel=SCRIPT,
    ),
    hyperparameters: list[str] = typer.Option(
        None,
        "--hyperparameters",
        "--hyperparameter",
        "-H",
        help="KEY=VALUE hyperparameters passed as --KEY VALUE: --hyperparameters epochs=5 batch-size=64.",
        rich_help_panel=SCRIPT,
    ),
    metric_definition: list[str] = typer.Option(
        None,
        "--metric-definition",
        help="NAME=REGEX read from the script's output (first capture group), e.g. "
        '"test_loss=Test set: Average loss: ([0-9\\.]+)".',
        rich_help_panel=SCRIPT,
    ),
    install_requirements: bool = typer.Option(
        False,
        "--install-requirements",
        help="pip install the source dir's requirements.txt first.",
        rich_help_panel=SCRIPT,
    ),
    max_run: float = typer.Option(
        None,
        "--max-run",
        help="Stop the script after this many seconds (MaxRuntimeInSeconds).",
        rich_help_panel=SCRIPT,
    ),
    no_debug_hook: bool = typer.Option(
        False,
        "--no-debug-hook",
        help="No default smdebug hook config (SageMaker's debugger_hook_config=False); without --debug a "
        "script's Hook.create_from_json_file() otherwise gets SageMaker's default (losses).",
        rich_help_panel=SCRIPT,
    ),
    python: str = typer.Option(
        None,
        "--python",
        help="Run the script with this interpreter (your own venv, e.g. one with NumPy 1 for scripts "
        "written for the 1.x containers); the SageMaker contract and shims stay in place.",
        rich_help_panel=SCRIPT,
    ),
    extra: list[str] = typer.Argument(
        None, hidden=True, metavar="KEY=VALUE", help="More KEY=VALUE after --hyperparameters."
    ),
    nproc_per_node: int = typer.Option(
        None,
        "--nproc-per-node",
        help="Processes on this machine (one per GPU on CUDA), started by torchrun; --batch-size stays "
        "the global batch, split between all processes.",
        rich_help_panel=DIST,
    ),
    nnodes: int = typer.Option(
        1, "--nnodes", help="Machines in the job (run the same command on each).", rich_help_panel=DIST
    ),
    node_rank: int = typer.Option(
        None, "--node-rank", help="This machine's index, 0 for the first one.", rich_help_panel=DIST
    ),
    rdzv_endpoint: str = typer.Option(
        None,
        "--rdzv-endpoint",
        help="HOST:PORT of the c10d rendezvous on the first machine (needed with --nnodes > 1).",
        rich_help_panel=DIST,
    ),
    max_restarts: int = typer.Option(
        0,
        "--max-restarts",
        help="Restart the processes up to K times after one dies; the job continues from its last "
        "checkpoint.",
        rich_help_panel=DIST,
    ),
) -> None:
    """Fine-tune a pretrained image classifier on a folder of images, or run your own training script."""
    started = command_started()
    from vizsla.cli import script_train

    script_options = {
        "--channel": channel,
        "--hyperparameters": hyperparameters,
        "--metric-definition": metric_definition,
        "--install-requirements": install_requirements,
        "--max-run": max_run,
        "--source-dir": source_dir,
        "--no-debug-hook": no_debug_hook,
        "--python": python,
    }
    if script_train.is_script_job(entry_point, config, resume):
        script_train.train_script(
            entry_point=entry_point,
            source_dir=source_dir,
            channels=channel,
            hyperparameters=hyperparameters,
            extra=extra,
            metric_definitions=metric_definition,
            install_requirements=install_requirements,
            max_run=max_run,
            data=data,
            output=output,
            config=config,
            resume=resume,
            overwrite=overwrite,
            name=name,
            tracking_uri=tracking_uri,
            experiment=experiment,
            no_tracking=no_tracking,
            quiet=quiet,
            debug=debug,
            rules=rules,
            profile=profile,
            distribution=(
                {"nproc_per_node": nproc_per_node, "nnodes": nnodes, "node_rank": node_rank,
                 "rdzv_endpoint": rdzv_endpoint, "max_restarts": max_restarts}
                if nproc_per_node is not None
                else None
            ),  # fmt: skip
            no_debug_hook=no_debug_hook,
            python=python,
        )
        return
    script_train.check_builtin_args(extra, script_options)
    from vizsla.spec import build_spec, load_job_spec, read_yaml
    from vizsla.training import run_job
    from vizsla.tuning.space import parse_head

    console = Console(stderr=True)
    if resume is not None:
        _job_spec_path(resume)
        spec = load_job_spec(resume)  # the folder where it is now, wherever it was first run
        console.print(f"resuming [bold]{spec.job_name}[/bold] in {resume}")
    else:
        values = {
            "name": name,
            "output": str(output) if output else None,
            "data.root": data,
            "data.augment": augment,
            "data.hflip": hflip,
            "data.num_workers": workers,
            "model.name": model,
            "model.weights": weights,
            "model.head": parse_head(head),
            "model.head_dropout": head_dropout,
            "model.head_activation": head_activation,
            "model.image_size": image_size,
            "train.finetune": finetune,
            "train.epochs": epochs,
            "train.lr": lr,
            "train.backbone_lr_scale": backbone_lr_scale,
            "train.batch_size": batch_size,
            "train.optimizer": optimizer,
            "train.weight_decay": weight_decay,
            "train.schedule": schedule,
            "train.warmup_epochs": warmup_epochs,
            "train.label_smoothing": label_smoothing,
            "train.grad_clip_norm": grad_clip,
            "train.early_stopping_patience": early_stopping,
            "train.precision": precision,
            "train.device": device,
            "train.seed": seed,
            "tracking.uri": tracking_uri,
            "tracking.experiment": experiment,
            "tracking.enabled": False if no_tracking else None,
            **_debug_overrides(debug, rules),
            "profile.enabled": True if profile else None,
        }
        base = read_yaml(config) if config else {}
        merged = _overrides(values)
        if not (merged.get("data", {}).get("root") or base.get("data", {}).get("root")):
            raise UserError("no data given: pass --data ROOT (or data.root in --config)")
        if not (merged.get("output") or base.get("output")):
            raise UserError("no job directory given: pass --output DIR")
        spec = build_spec(base, merged, source=str(config) if config else "command line")
        from vizsla.models.registry import check_model_name

        check_model_name(spec.model.name)  # before --overwrite deletes anything: a typo refuses the job
        if node_rank in (None, 0) and os.environ.get("RANK", "0") == "0":  # one process prepares it
            _prepare_output(Path(spec.output), overwrite)
    if nproc_per_node is not None:
        from vizsla.training.launch import LaunchOptions, launch

        options = LaunchOptions(nproc_per_node, nnodes, node_rank, rdzv_endpoint, max_restarts)
        os.environ[JOB_STARTED] = repr(started)  # inherited by the processes torchrun starts
        try:
            result = launch(spec, options, resume=resume is not None, quiet=quiet)
        finally:
            os.environ.pop(JOB_STARTED, None)
    else:
        result = run_job(spec, resume=resume is not None, progress=not quiet, started=started)
    if os.environ.get("RANK", "0") != "0" or os.environ.get(LAUNCHED_BY_VIZSLA):
        if result.get("status") == "Failed":
            raise typer.Exit(1)
        return  # rank 0, or the launcher that started the processes, prints the job's summary
    _print_summary(console, result)
    if result.get("status") == "Failed":
        raise typer.Exit(1)


def _debug_overrides(debug: bool, rules: str | None) -> dict[str, Any]:
    """--debug turns the debugger on with its default rules; --rules A,B runs exactly those rules."""
    if rules is None:
        return {"debug.enabled": True} if debug else {}
    names = [name.strip() for name in rules.split(",") if name.strip()]
    if not names:
        raise UserError("--rules needs rule names, e.g. --rules VanishingGradient,Overfit")
    return {"debug.enabled": True, "debug.default_rules": False, "debug.rules": [{"name": n} for n in names]}


def _job_spec_path(job_dir: Path) -> Path:
    spec_path = job_dir / "spec.yaml"
    if not spec_path.is_file():
        raise UserError(f"cannot resume {job_dir}: no spec.yaml there (is it a vizsla job directory?)")
    return spec_path


def _prepare_output(output: Path, overwrite: bool) -> None:
    if overwrite and output.exists():
        if output.is_dir() and ((output / "spec.yaml").is_file() or not any(output.iterdir())):
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
