"""Everything the loop needs, created once: job directory, data, model, optimizer, loaders, resume state."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from vizsla.callbacks import TrainState
from vizsla.disk import is_disk_full
from vizsla.errors import UserError
from vizsla.infra.io import atomic_write_text
from vizsla.jobdir import JobDir
from vizsla.names import printable
from vizsla.spec import JobSpec
from vizsla.training.accumulation import optimizer_steps_per_epoch
from vizsla.training.checkpoint import load_checkpoint, restore_rng_state
from vizsla.training.distributed import (
    SINGLE,
    DataParallel,
    DistContext,
    keeps_last_batch,
    per_process_batch_size,
    shard_batches,
)
from vizsla.training.progress import EpochProgress
from vizsla.training.runtime import (
    Runtime,
    compile_model,
    resolve_runtime,
    resolved_spec,
    seed_everything,
)
from vizsla.training.schedules import create_scheduler
from vizsla.training.timing import PhaseTimer

log = logging.getLogger("vizsla.train")


class Loaders:
    """Builds the per-epoch train loader (seeded by epoch) and the eval loaders of each split."""

    def __init__(
        self, job_spec: JobSpec, data: Any, preprocessing: dict, runtime: Runtime, ctx: DistContext = SINGLE
    ) -> None:
        from vizsla.data import ImageFolderDataset, create_transform
        from vizsla.data.transforms import draft_size_for

        data_spec = job_spec.data
        draft = draft_size_for(preprocessing)  # the same reduced-size decode as the feature cache
        train_tf = create_transform(
            train_preprocessing(preprocessing, job_spec), train=True, augment=data_spec.augment,
            hflip=data_spec.hflip,
            auto_augment=data_spec.auto_augment, random_erasing=data_spec.random_erasing,
        )
        if ctx.is_main:
            from vizsla.data.augment import describe

            log.info("train augmentation: %s", describe(
                augment=data_spec.augment, hflip=data_spec.hflip, auto_augment=data_spec.auto_augment,
                random_erasing=data_spec.random_erasing))
        eval_tf = create_transform(preprocessing, train=False, augment=False, hflip=False)
        self.datasets = {
            split: ImageFolderDataset(
                samples,
                train_tf if split == "train" else eval_tf,
                max_pixels=data_spec.max_image_pixels,
                draft_size=draft,
            )
            for split, samples in data.splits.items()
        }
        self.global_batch = job_spec.train.batch_size
        self.batch_size = per_process_batch_size(self.global_batch, ctx.world_size)
        self.seed = job_spec.train.seed
        self.runtime = runtime
        self.ctx = ctx
        # BatchNorm cannot train on a batch of one image: drop a last global batch that would give a
        # process fewer than two.
        self.train_select = train_selector(len(data.splits["train"]), self.global_batch, ctx, min_per_rank=2)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_select(list(range(len(self.datasets["train"]))))) / self.batch_size)

    def _loader(self, split: str, *, shuffle: bool, epoch: int, batch_size: int, select: Any) -> Any:
        from vizsla.data import create_loader

        return create_loader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.runtime.num_workers,
            seed=self.seed,
            epoch=epoch,
            pin_memory=self.runtime.device.type == "cuda",
            select=select,
        )

    def train(self, epoch: int, start_batch: int = 0) -> Any:
        """EPOCH's train batches, from batch START_BATCH on (a resumed epoch skips those done)."""
        select = self.train_select
        if start_batch:
            skip = start_batch * self.batch_size  # the same batches follow: the order is (seed, epoch)'s
            select = lambda order, whole=self.train_select: whole(order)[skip:]  # noqa: E731
        return self._loader("train", shuffle=True, epoch=epoch, batch_size=self.batch_size, select=select)

    def eval(self, split: str) -> Any:
        return self._loader(
            split, shuffle=False, epoch=0, batch_size=2 * self.batch_size, select=eval_selector(self.ctx)
        )


def train_preprocessing(preprocessing: dict, spec: JobSpec) -> dict:
    """The preprocessing of the train images: the model's, at `finetune_image_size` when set (cheaper
    epochs; evaluation, export and serving keep the model's size, which FixRes found to test better than
    the train size)."""
    size = spec.train.finetune_image_size
    if size is None or spec.train.finetune == "head":
        return preprocessing
    return {**preprocessing, "input_size": [3, size, size]}


def train_selector(num_samples: int, global_batch: int, ctx: DistContext, *, min_per_rank: int) -> Any:
    """This process's share of each epoch's sample order: whole global batches (the last one only when
    every process gets MIN_PER_RANK of it), sliced by rank."""
    keep_last = keeps_last_batch(num_samples, global_batch, ctx.world_size, min_per_rank)

    def select(order: list[Any]) -> list[Any]:
        if not keep_last:
            order = order[: len(order) - len(order) % global_batch]
        return shard_batches(order, global_batch, ctx)

    return select


def eval_selector(ctx: DistContext) -> Any:
    """Evaluation: each sample on exactly one process (no padding), all of them in a single process."""
    if not ctx.enabled:
        return None
    return lambda order: order[ctx.rank :: ctx.world_size]


class FeatureLoaders:
    """Loaders over cached backbone features: with a frozen backbone the head trains without re-running it."""

    def __init__(self, features: Any, batch_size: int, seed: int, ctx: DistContext = SINGLE) -> None:
        self.features = features
        # Gathering a batch's rows from the float16 memory map costs ~8x a gather from float32 in RAM
        # (measured 1.8 vs 0.23 ms per 8 batches here): read the arrays into RAM once when they fit.
        self.train_features = _in_memory(features.train)
        self.eval_features = {split: _in_memory(array) for split, array in features.eval.items()}
        self.batch_size = per_process_batch_size(batch_size, ctx.world_size)
        self.seed = seed
        self.ctx = ctx
        self.train_select = (
            train_selector(len(features.labels["train"]), batch_size, ctx, min_per_rank=1)
            if ctx.enabled
            else None
        )

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train(0))

    def train(self, epoch: int, start_batch: int = 0) -> Any:
        from vizsla.data.features import FeatureLoader

        labels = self.features.labels["train"]
        return FeatureLoader(
            self.train_features,
            labels,
            batch_size=self.batch_size,
            shuffle=True,
            seed=self.seed,
            epoch=epoch,
            select=self.train_select,
            start_batch=start_batch,
        )

    def eval(self, split: str) -> Any:
        from vizsla.data.features import FeatureLoader

        return FeatureLoader(
            self.eval_features[split],
            self.features.labels[split],
            batch_size=2 * self.batch_size,
            shuffle=False,
            select=eval_selector(self.ctx),
        )


IN_MEMORY_FEATURES_BYTES = 2 << 30  # larger feature arrays stay memory-mapped


def _in_memory(array: Any) -> Any:
    """ARRAY as float32 in RAM when that takes at most IN_MEMORY_FEATURES_BYTES, else ARRAY itself."""
    import numpy as np

    if array.size * 4 > IN_MEMORY_FEATURES_BYTES:
        return array
    return np.ascontiguousarray(array, dtype=np.float32)


@dataclass
class Job:
    """The objects of one running job; `trainer.fit` reads them, bookkeeping updates `best`."""

    spec: JobSpec
    job_dir: JobDir
    runtime: Runtime
    data: Any
    model: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    loaders: Loaders | FeatureLoaders
    progress: EpochProgress
    started_at: str
    checkpoint: dict[str, Any] | None = None
    features: Any = None  # FeatureSet when the head trains on cached backbone features
    best: dict[str, Any] = field(default_factory=dict)
    epochs_without_improvement: int = 0
    dist: DistContext = SINGLE
    parallel: Any = None  # DataParallel: the DDP wrapper of whatever trains (identity for one process)
    # The best weights in memory: on every rank of a distributed job, and in head-only jobs (the head's)
    best_state: dict[str, Any] | None = None
    best_unsaved: bool = False  # best_state is newer than model/ (head-only jobs export it once, at the end)
    timer: PhaseTimer = field(default_factory=PhaseTimer)  # this attempt's phases, from the command's start
    attempt: int = 1  # 1 for a new job, +1 for each `--resume` (a torchrun restart is the same attempt)
    earlier_attempts_s: float | None = 0.0  # earlier attempts' seconds, up to their last checkpoints
    # Where the checkpoint resumed stopped inside its epoch ({"batches", "meter"}); None: at its start
    position: dict[str, Any] | None = None
    stop: Any = None  # the job's StopSignals (signals.py): whether a signal asked it to stop
    # The optional techniques (training/components.py), set by `restore_state`; no-op objects when off
    mixing: Any = None  # mixup/cutmix of train batches and the loss they need (mixing.py)
    ema: Any = None  # the weight average validated and exported instead of the raw weights (ema.py)
    keep_best: Any = None  # the K best epochs' checkpoints (keep_best.py)


def _check_job_dir(job_dir: JobDir, resume: bool) -> None:
    """A new job needs a folder without a job, or one whose job Failed before it trained anything (a
    command refused by data validation or model creation: the corrected re-run takes the folder)."""
    if not resume and job_dir.exists():
        if job_dir.failed_before_training():
            log.info("%s held a job that failed before training; this job replaces it", job_dir.root)
            job_dir.clear_failed_setup()
            return
        raise UserError(
            f"{job_dir.root} already holds a job",
            hint=f"continue it with `vizsla train --resume {job_dir.root}`, or pass --overwrite",
        )
    if resume:
        try:
            result = job_dir.read_result() or {}
        except (OSError, ValueError):  # a truncated result.json: the checkpoint says where to go on
            result = {}
        if result.get("status") == "Completed":
            raise UserError(f"{job_dir.root} is already Completed; nothing to resume")


def record_setup_failure(job_dir: JobDir, spec: JobSpec, exc: BaseException, timer: PhaseTimer) -> None:
    """result.json of a job that failed before its training started (data validation, model creation):
    Failed with the reason, so it lists as Failed rather than Unknown (a resumed job keeps its record)."""
    try:
        previous = job_dir.read_result() or {}
    except (OSError, ValueError):
        previous = {}
    result = {
        "job_name": spec.job_name,
        "epochs_completed": 0,
        "start_time": timer.start_time,
        **previous,
        "job_dir": str(job_dir.root),
        "status": "Failed",
        "failure_reason": f"{type(exc).__name__}: {exc}",
        "stop_reason": None,
        "end_time": timer.end_time,
        "duration_s": round(timer.elapsed(), 3),
    }
    try:
        job_dir.write_result(result)
    except OSError as error:
        log.warning("could not record the failure in %s: %s", job_dir.result, error)


def create_optimizer(model: Any, spec: JobSpec) -> torch.optim.Optimizer:
    """timm's create_optimizer_v2 over Vizsla's parameter groups (backbone layers, head; decay/no-decay).

    A staged job's optimizer is its fine-tuning stage's: the head arrives trained (see stages.py), so it
    moves at the backbone's top LR instead of the head-only LR."""
    from timm.optim import create_optimizer_v2

    from vizsla.models import param_groups

    train = spec.train
    lr = train.lr * spec.distributed.lr_scale(train.batch_size)  # the resolved spec records it
    groups = param_groups(
        model,
        lr=lr,
        backbone_lr_scale=train.backbone_lr_scale,
        weight_decay=train.weight_decay,
        layer_decay=train.layer_decay if train.finetune != "head" else None,
        head_lr=lr * train.backbone_lr_scale if train.finetune == "staged" else None,
        freeze_below=train.freeze_below_lr_scale if train.finetune != "head" else None,
    )
    if uses_feature_cache(spec):
        # A head on cached features never runs the backbone: its ~150 frozen tensors in the optimizer only
        # cost every step a loop over them (~0.1 ms of a ~1.2 ms step, 10% of a head-only job's epochs).
        groups = [group for group in groups if not group["name"].startswith("backbone")]
    extra: dict[str, Any] = {}
    if train.optimizer == "adamw":
        # A head on cached features: AdamW's fused kernel (one kernel a step instead of a loop over
        # parameters). Elsewhere the default: at lr=10 (the broken training of SageMaker Debugger's demos,
        # tests/debugger/test_broken_trainings.py) a run with the fused kernel no longer trips their rules.
        extra["fused"] = uses_feature_cache(spec) and _fused_adamw_supported(model)
    return create_optimizer_v2(
        groups, opt=train.optimizer, lr=lr, weight_decay=train.weight_decay, momentum=train.momentum, **extra
    )


def _fused_adamw_supported(model: Any) -> bool:
    """Whether AdamW's fused kernel can update every parameter (a head on cached features: 10 epochs of
    flowers102 in 2.2 s instead of 3.4 s)."""
    params = list(model.parameters())
    return bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
        for p in params
    )


def create_job(
    spec: JobSpec,
    *,
    resume: bool = False,
    progress: bool = True,
    ctx: DistContext = SINGLE,
    timer: PhaseTimer | None = None,
    exit_stack: contextlib.ExitStack | None = None,
) -> Job:
    """Validate data, build model, optimizer and loaders, and load the checkpoint when resuming.

    In a distributed job every rank joins the process group first; rank 0 alone checks and writes the job
    directory and validates the data, and hands the result to the others. TIMER gets the validate and
    extract phases. With EXIT_STACK, rank 0 copies the log to train.log from the moment the job directory
    is known to be this job's (after the overwrite and resume checks) until the stack closes."""
    from vizsla.infra import collectives
    from vizsla.models.registry import check_model_name
    from vizsla.training import distributed

    timer = timer if timer is not None else PhaseTimer()
    job_dir = JobDir(spec.output)
    check_model_name(spec.model.name)  # a misspelt model is refused before the job folder is written
    runtime = resolve_runtime(spec, ctx)
    if ctx.enabled and ctx.is_main and spec.train.finetune == "staged":
        from vizsla.training import stages

        # Before the process group exists: the stage is a one-process job, and its collectives would
        # otherwise talk to the job's group. The other processes wait for rank 0 in the rendezvous.
        stages.run_head_stage(resolved_spec(spec, runtime, ctx), progress=progress)
    distributed.init_process_group(
        ctx, distributed.resolve_backend(spec.distributed.backend, runtime.device), spec.distributed.timeout_s
    )
    resume = _resume_after_restart(job_dir, resume, ctx)
    error: BaseException | None = None
    if ctx.is_main:
        try:
            _check_job_dir(job_dir, resume)
        except UserError as exc:
            error = exc
    collectives.agree_on_error(error)
    import_in_background(LATE_IMPORTS + (TRACKING_IMPORTS if spec.tracking.enabled and ctx.is_main else ()))
    spec = resolved_spec(spec, runtime, ctx)
    if ctx.is_main:
        job_dir.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(job_dir.spec, spec.to_job_yaml())
        if exit_stack is not None:
            exit_stack.enter_context(job_logging(job_dir))
    try:
        return _build_job(spec, job_dir, runtime, resume=resume, progress=progress, ctx=ctx, timer=timer)
    except Exception as exc:
        if ctx.is_main:
            record_setup_failure(job_dir, spec, exc, timer)
        raise


def _build_job(
    spec: JobSpec,
    job_dir: JobDir,
    runtime: Runtime,
    *,
    resume: bool,
    progress: bool,
    ctx: DistContext,
    timer: PhaseTimer,
) -> Job:
    """create_job once the job folder is this job's: data, model, optimizer, loaders, checkpoint."""
    from vizsla.infra import collectives
    from vizsla.models import create_classifier

    if ctx.restart_count:
        how = f"resuming from {job_dir.last_checkpoint}" if resume else "starting again (no checkpoint yet)"
        log.info("restart %d of the workers: %s", ctx.restart_count, how)
    with timer.phase("validate"):
        data = _prepare_data_once(spec, job_dir, progress, ctx)
    log.info(
        "data: %d classes, %s images, %d bad files (%.1f s)",
        len(data.classes),
        ", ".join(f"{len(samples)} {split}" for split, samples in data.splits.items()),
        len(data.bad_files),
        timer.seconds["validate"],
    )
    seed_everything(spec.train.seed, spec.train.deterministic)
    model = create_classifier(spec.model, data.classes).to(runtime.device)
    if runtime.channels_last and not uses_feature_cache(spec):  # extraction makes a channels_last copy
        model = model.to(memory_format=torch.channels_last)
    if not uses_feature_cache(spec):  # a head on cached features has nothing worth compiling
        model = compile_model(model, runtime)
    optimizer = create_optimizer(model, spec)
    features = None
    if uses_feature_cache(spec):
        with timer.phase("extract"):
            features = create_features(spec, model, data, runtime, progress, ctx)
    loaders = (
        FeatureLoaders(features, spec.train.batch_size, spec.train.seed, ctx)
        if features is not None
        else Loaders(spec, data, model.preprocessing, runtime, ctx)
    )
    scheduler = create_scheduler(
        optimizer, spec.train, optimizer_steps_per_epoch(loaders.steps_per_epoch, spec.train.accumulate_steps)
    )
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.precision == "fp16")
    checkpoint = _load_checkpoint_once(job_dir, resume, ctx)
    started_at = collectives.broadcast_object(checkpoint["started_at"] if checkpoint else timer.start_time)
    attempt, earlier_s = earlier_attempts(checkpoint, timer)
    return Job(
        spec=spec,
        job_dir=job_dir,
        runtime=runtime,
        data=data,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        loaders=loaders,
        progress=EpochProgress(spec.train.epochs, enabled=progress and ctx.is_main),
        started_at=started_at,
        checkpoint=checkpoint,
        features=features,
        dist=ctx,
        parallel=DataParallel(ctx, runtime.device),
        timer=timer,
        attempt=attempt,
        earlier_attempts_s=earlier_s,
    )


def earlier_attempts(checkpoint: dict[str, Any] | None, timer: PhaseTimer) -> tuple[int, float | None]:
    """This attempt's number and the seconds of the attempts before it, from the checkpoint resumed.

    Each checkpoint records its attempt's start and the seconds elapsed when it was written: an earlier
    attempt counts up to its last checkpoint (what came after was lost, or was its evaluation and
    finalize after a stop). Workers that torchrun restarted share the launcher's start: the same attempt,
    whose startup phase then holds the failed workers' time.
    A checkpoint from before attempts were timed gives None (unknown)."""
    if checkpoint is None:
        return 1, 0.0
    timing = checkpoint.get("timing")
    if not timing:
        return 2, None
    if abs(float(timing["attempt_started"]) - timer.started) < 1e-3:
        return int(timing["attempt"]), timing["earlier_s"]
    earlier = timing["earlier_s"]
    return int(timing["attempt"]) + 1, None if earlier is None else earlier + float(timing["elapsed_s"])


def _resume_after_restart(job_dir: JobDir, resume: bool, ctx: DistContext) -> bool:
    """After torchrun restarted the workers (--max-restarts), continue from the last checkpoint; with none
    yet, start again (rank 0 clears what the failed attempt wrote)."""
    if resume or ctx.restart_count == 0:
        return resume
    from vizsla.infra import collectives

    if job_dir.last_checkpoint.is_file():
        return True  # create_job logs it once train.log is attached
    if ctx.is_main and job_dir.spec.is_file():
        import shutil

        shutil.rmtree(job_dir.root)
    collectives.barrier()
    return False


def _prepare_data_once(spec: JobSpec, job_dir: JobDir, progress: bool, ctx: DistContext) -> Any:
    """Validate and split the data on rank 0 (it writes the data report); the other ranks receive it."""
    from vizsla.data import prepare_data
    from vizsla.infra import collectives

    size = spec.model.image_size or 224
    data, error = None, None
    if ctx.is_main:
        try:
            data = prepare_data(
                spec.data,
                job_dir,
                preprocessing={"input_size": [3, size, size]},
                progress=progress,
                cache_dir=spec.cache_dir,
            )
        except Exception as exc:  # noqa: BLE001 - handed to every rank, raised everywhere below
            error = exc
    if ctx.enabled:
        data, error = collectives.broadcast_object((data, error))
    if error is not None:
        raise error
    if ctx.enabled and not ctx.is_main:  # remote data: read this machine's mirror, not rank 0's
        from vizsla.data.prepare import on_this_machine

        data = on_this_machine(data, spec.data, spec.cache_dir)
    return data


def _load_checkpoint_once(job_dir: JobDir, resume: bool, ctx: DistContext) -> dict[str, Any] | None:
    """Rank 0 reads checkpoints/last.pt and sends it to the others (their disks need not hold it)."""
    from vizsla.infra import collectives

    checkpoint = None
    if ctx.is_main and resume and job_dir.last_checkpoint.is_file():
        checkpoint = load_checkpoint(job_dir.last_checkpoint)
    return collectives.broadcast_object(checkpoint) if ctx.enabled else checkpoint


# Modules the job needs only at its end (plots, report); importing them takes ~0.6 s, hidden behind setup.
LATE_IMPORTS = ("matplotlib.figure", "matplotlib.backends.backend_agg", "jinja2")
# MLflow and its SQL store take ~1.5-2.8 s to import; the tracker needs them only at fit_start.
TRACKING_IMPORTS = ("mlflow", "mlflow.store.tracking.sqlalchemy_store")


def import_in_background(modules: tuple[str, ...]) -> None:
    """Import `modules` on a daemon thread while the job sets up (data, features release the GIL)."""
    import importlib

    def run() -> None:
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    threading.Thread(target=run, name="vizsla-late-imports", daemon=True).start()


def uses_feature_cache(spec: JobSpec) -> bool:
    """The head trains on cached features when the backbone stays frozen for the whole job."""
    return spec.train.finetune == "head" and spec.train.feature_cache == "auto"


def create_features(
    spec: JobSpec, model: Any, data: Any, runtime: Runtime, progress: bool, ctx: DistContext = SINGLE
) -> Any:
    """Backbone features of every split, from the shared cache or extracted once (see data/features.py)."""
    from vizsla.data.features import build_features, resolve_views

    train_images = len(data.splits["train"])
    views, augment, why = resolve_views(spec.train.feature_views, spec.data.augment, train_images)
    log.info("feature cache: %d %s view(s) per train image (%s)", views,
             "augmented" if augment else "unaugmented", why)
    features = build_features(
        model,
        data,
        views=views,
        augment=augment,
        hflip=spec.data.hflip,
        seed=spec.train.seed,
        batch_size=max(spec.train.batch_size, 64),
        num_workers=runtime.num_workers,
        backend=spec.train.extract_backend,
        precision=spec.train.extract_precision,
        max_pixels=spec.data.max_image_pixels,
        cache_dir=spec.cache_dir,
        progress=progress and ctx.is_main,
        dist_ctx=ctx,
    )
    source = "hit" if features.hit else "built"
    log.info(
        "feature cache %s: %s (%s %s, %d view(s), %.1f s)",
        features.key[:12],
        source,
        features.backend,
        features.precision,
        features.views,
        features.seconds,
    )
    return features


def restore_state(job: Job, state: TrainState) -> None:
    """Continue from the checkpoint: weights, optimizer, schedule, counters, history and RNG streams."""
    state.spec = job.spec
    from vizsla.training.components import attach_components

    attach_components(job)  # before fit_start: the weight average copies the model before hooks attach
    ckpt = job.checkpoint
    if ckpt is None:
        return
    from vizsla.training import checkpoint_groups
    from vizsla.training.bookkeeping import load_trained_state

    load_trained_state(job, ckpt["model"])  # a head-only job's checkpoint holds the head alone
    if ckpt.get("best_state") is not None:
        job.best_state, job.best_unsaved = ckpt["best_state"], True
    optimizer_state, scheduler_state = checkpoint_groups.matching_groups(
        ckpt["optimizer"], ckpt["scheduler"], [group.get("name") for group in job.optimizer.param_groups]
    )
    job.optimizer.load_state_dict(optimizer_state)
    job.scheduler.load_state_dict(scheduler_state)
    job.scaler.load_state_dict(ckpt["scaler"])
    state.epoch, state.global_step = ckpt["next_epoch"], ckpt["global_step"]
    job.position = ckpt.get("epoch_position")  # a job stopped mid-epoch continues with its next batch
    state.history = list(ckpt["history"])
    job.best = dict(ckpt["best"])
    job.epochs_without_improvement = ckpt["epochs_without_improvement"]
    restore_rng_state(ckpt["rng"])
    within = f", batch {job.position['batches'] + 1}" if job.position else ""
    log.info("resumed %s at epoch %d%s (step %d)", job.job_dir.root, state.epoch + 1, within,
             state.global_step)


def apply_finetune_policy(job: Job, epoch: int) -> None:
    """Freeze or unfreeze the backbone for this epoch according to --finetune: frozen for head, trained for
    full, and for staged (its head stage ran before the first epoch, see stages.py)."""
    from vizsla.models import set_backbone_trainable

    set_backbone_trainable(job.model, job.spec.train.finetune != "head")
    if job.spec.train.finetune != "head":
        from vizsla.models.freezing import freeze_unoptimized

        frozen = freeze_unoptimized(job.model, job.optimizer)  # the layers below freeze_below_lr_scale
        if frozen and epoch == 0:
            total = sum(1 for _ in job.model.backbone.parameters())
            log.info("fine-tuning %d of the backbone's %d parameter tensors: the layers whose LR scale is "
                     "below %g stay frozen", total - frozen, total, job.spec.train.freeze_below_lr_scale)


def apply_bn_policy(job: Job) -> None:
    """A trained backbone with bn_policy frozen keeps its BatchNorm layers in eval mode (pretrained
    running statistics, no update from small, noisy batches); its affine weights still train."""
    if job.spec.train.bn_policy == "frozen":
        from vizsla.models.freezing import batchnorm_to_eval

        batchnorm_to_eval(job.model.backbone)


def backbone_frozen(job: Job) -> bool:
    from vizsla.models import backbone_is_frozen

    return backbone_is_frozen(job.model)


def to_device(
    batch: tuple[torch.Tensor, torch.Tensor], runtime: Runtime
) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = batch
    non_blocking = runtime.device.type == "cuda"
    if inputs.dim() == 4 and runtime.channels_last:
        inputs = inputs.to(runtime.device, non_blocking=non_blocking, memory_format=torch.channels_last)
    else:
        inputs = inputs.to(runtime.device, non_blocking=non_blocking)
    return inputs, targets.to(runtime.device, non_blocking=non_blocking)


@contextlib.contextmanager
def thread_budget(job: Job) -> Iterator[None]:
    """One intra-op thread for a head on cached features: its ops are tiny, and OpenMP's spinning
    threads make them ~100x slower as soon as another process competes for the cores (measured
    0.6 ms vs 79 ms per step here)."""
    if job.features is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class JobLogHandler(logging.FileHandler):
    """train.log: UTF-8 whatever the file names in the messages (undecodable bytes as \\xNN), and quiet
    on a full disk (the job reports that itself; a traceback per record on stderr would bury it)."""

    def __init__(self, path: Any) -> None:
        super().__init__(path, encoding="utf-8", errors="backslashreplace")
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        import sys

        error = sys.exc_info()[1]
        if error is not None and is_disk_full(error):
            return  # the record waits in the file's buffer until space is freed, or is lost
        super().handleError(record)


@contextlib.contextmanager
def job_logging(job_dir: JobDir) -> Iterator[None]:
    """Copy the project's log records into the job's train.log."""
    handler = JobLogHandler(job_dir.log)
    logger = logging.getLogger("vizsla")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def logging_to(job_dir: JobDir) -> bool:
    """Whether this process copies its log into JOB_DIR's train.log: the folder is this job's (`create_job`
    attaches it once the overwrite and resume checks passed)."""
    path = str(job_dir.log.absolute())
    return any(
        isinstance(h, JobLogHandler) and h.baseFilename == path for h in logging.getLogger("vizsla").handlers
    )
