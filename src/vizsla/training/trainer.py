"""The training loop: read it top to bottom. Setup lives in `setup.py`, everything optional is a callback."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from vizsla.callbacks import Callback, CallbackFactory, CallbackRunner, TrainState
from vizsla.disk import as_disk_full_error, is_disk_full
from vizsla.errors import DiskFullError
from vizsla.infra import collectives
from vizsla.spec import JobSpec
from vizsla.training import bookkeeping, distributed, setup, stages
from vizsla.training.accumulation import GradientAccumulation
from vizsla.training.metrics import ClassificationMeter
from vizsla.training.progress import epoch_text, result_lines, settings_text
from vizsla.training.signals import JobStopped, StopSignals
from vizsla.training.timing import PhaseTimer

log = logging.getLogger("vizsla.train")


def run_job(
    spec: JobSpec,
    *,
    callbacks: Iterable[Callback] = (),
    resume: bool = False,
    progress: bool = True,
    started: float | None = None,
    job_callbacks: CallbackFactory | None = None,
) -> dict:
    """Run a whole training job into `spec.output` and return its result (also written as result.json).

    JOB_CALLBACKS builds the job's own callbacks (profiler, debugger, tracking, as its spec asks), which go
    before CALLBACKS; the composition root `vizsla.jobs` passes its factory (`vizsla.jobs.run_job` is this
    with the tools). None: the job gets CALLBACKS only, the trainer knows no tool.

    STARTED is when the command began, in epoch seconds (`time.time()`; default: now): result.json's
    `duration_s` and `phases` count from it, so a caller that did work first (the CLI) passes its start.
    A resumed job keeps the first attempt's `start_time`; `duration_s` and `phases` are this attempt's,
    `total_duration_s` adds the earlier attempts (see `setup.earlier_attempts`).
    Started by torchrun (or with RANK/WORLD_SIZE set), each process runs this; see distributed.py."""
    timer = PhaseTimer(started)
    ctx = distributed.context_from_env()
    try:
        with distributed.quiet_other_ranks(ctx):
            factory = job_callbacks or _no_job_callbacks
            result = _run(spec, ctx, callbacks=callbacks, factory=factory, resume=resume, progress=progress,
                          timer=timer)
        collectives.barrier()  # leave together: a rank tearing down the group while rank 0 writes aborts
        return result
    except BaseException as exc:
        distributed.post_error(ctx, f"{type(exc).__name__}: {exc}")
        disk = as_disk_full_error(exc, spec.output)  # a full disk met by a write not wrapped in `writing`
        if disk is not None and disk is not exc:
            raise disk from exc
        raise
    finally:
        distributed.destroy_process_group()


def _run(
    spec: JobSpec,
    ctx: distributed.DistContext,
    *,
    callbacks: Iterable[Callback],
    factory: CallbackFactory,
    resume: bool,
    progress: bool,
    timer: PhaseTimer,
) -> dict:
    # The ExitStack holds train.log (rank 0) from create_job to the end; signals are handled from here on.
    with contextlib.ExitStack() as stack, StopSignals(phase=lambda: timer.current) as stop:
        try:
            job = setup.create_job(
                spec, resume=resume, progress=progress, ctx=ctx, timer=timer, exit_stack=stack
            )
        except JobStopped as exc:  # nothing trained yet: nothing to checkpoint
            return bookkeeping.record_stopped_setup(spec, ctx, timer, str(exc))
        except BaseException as exc:
            bookkeeping.log_setup_failure(spec, ctx, exc)
            raise
        job.stop = stop
        try:
            return _train(job, ctx, callbacks, factory)
        except JobStopped as exc:  # in the instant between the setup and the loop's start
            return bookkeeping.record_stopped_setup(spec, ctx, timer, str(exc))


def _no_job_callbacks(_state: TrainState) -> list[Callback]:
    return []


def run_stage(spec: JobSpec, *, progress: bool) -> dict:
    """Run one stage of a staged job (see stages.py) as a job of its own, in this process alone and
    without tools, while the outer job's process group and signal handlers stay as they are."""
    return _run(spec, distributed.SINGLE, callbacks=(), factory=_no_job_callbacks, resume=False,
                progress=progress, timer=PhaseTimer())


def _train(
    job: setup.Job, ctx: distributed.DistContext, callbacks: Iterable[Callback], factory: CallbackFactory
) -> dict:
    state = TrainState(
        spec=job.spec,
        job_dir=job.job_dir,
        model=job.model,
        optimizer=job.optimizer,
        scheduler=job.scheduler,
        device=job.runtime.device,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    # Callbacks run in every process; state.rank tells them apart (rank 0 speaks for the job).
    runner = CallbackRunner([*factory(state), *callbacks])
    if stages.is_staged(job) and job.checkpoint is None:  # a resumed staged job has its head and best
        with job.timer.phase("head_stage"):  # before this job's progress display: the stage shows its own
            stages.start_from_head_stage(job, state, progress=job.progress.enabled)
    with setup.thread_budget(job), job.progress:
        if job.stop is not None:
            job.stop.watch(state)  # a signal now stops the loop at its next step, with a checkpoint
        setup.restore_state(job, state)
        log.info("settings: %s", settings_text(job))
        try:
            runner.fire("fit_start", state)
            with job.timer.phase("train"):
                fit(job, state, runner)
            with job.timer.phase("evaluate"):
                final = evaluate_best(job, state, runner)
            finish(job, state, runner, "Stopped" if state.should_stop else "Completed", final=final)
        except KeyboardInterrupt:  # a second Ctrl-C: end now (the last checkpoint stays what it was)
            state.stop_reason = f"{state.stop_reason or 'stopped'}, then interrupted again"
            _finish_anyway(job, state, runner, "Stopped")
        except Exception as exc:
            disk = as_disk_full_error(exc, job.job_dir.root)
            if disk is None:
                log.exception("training failed")
            else:  # the disk, not the code: the message says it all
                log.error("training failed: %s", disk.message)
                disk.hint = (
                    "free some space on that file system, then continue the job with "
                    f"`vizsla train --resume {job.job_dir.root}`"
                )
            with contextlib.suppress(Exception):  # a failed head-only job still leaves its best epoch
                bookkeeping.save_best_model(job)
            _finish_anyway(job, state, runner, "Failed", failure=_failure_reason(job, disk or exc))
            if disk is not None and disk is not exc:
                raise disk from exc
            raise
    return state.result or {}


def _finish_anyway(
    job: setup.Job, state: TrainState, runner: CallbackRunner, status: str, *, failure: str | None = None
) -> None:
    """`finish` after a failure or an interruption; a full disk that keeps result.json from being
    written is logged (the error raised afterwards tells the user)."""
    try:
        finish(job, state, runner, status, failure=failure)
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        log.error("could not record status %s in %s: %s", status, job.job_dir.result, exc)


def _failure_reason(job: setup.Job, exc: BaseException) -> str:
    """This process's error, or in a distributed job the error of the rank that failed first (the others
    see only the broken group)."""
    own = bookkeeping.error_text(exc)
    if not job.dist.enabled:
        return own
    distributed.post_error(job.dist, own)
    others = distributed.posted_errors(job.dist)
    if not others:
        return f"rank {job.dist.rank}: {own}"
    when, rank, message = others[0]
    return f"rank {rank}: {message}"


def finish(
    job: setup.Job,
    state: TrainState,
    runner: CallbackRunner,
    status: str,
    *,
    failure: str | None = None,
    final: dict[str, ClassificationMeter] | None = None,
) -> None:
    """Write result.json, plots and report, then let callbacks (tracking) see the final state.

    All of that is the finalize phase, the end of the job's time. Then result.json and the report are
    written again with the final times (and the debugger's verdicts, which its rules give at fit_end); that
    last write, ~20 ms, is not counted. MLflow's copy keeps the times as they were at fit_end.
    Only rank 0 writes; the other ranks of a distributed job still fire fit_end (their own profiler data)."""
    state.status = status
    if not job.dist.is_main:
        runner.fire("fit_end", state)
        return
    with job.timer.phase("finalize"):
        state.result = bookkeeping.build_result(job, state, status=status, failure=failure, final=final or {})
        bookkeeping.write_outputs(job, state, runner)
        runner.fire("fit_end", state)
    job.timer.stop()
    bookkeeping.record_times(job, state.result)
    try:
        bookkeeping.write_result(job.job_dir, state.result)
    except DiskFullError as exc:  # result.json holds the status already, only its times are older
        log.warning("could not update %s: %s", job.job_dir.result, exc.message)
    bookkeeping.write_report(job, runner)
    for line in result_lines(state.result):
        log.info("%s", line)


def evaluate_best(
    job: setup.Job, state: TrainState, runner: CallbackRunner
) -> dict[str, ClassificationMeter]:
    """Evaluate the best epoch's weights (exported in model/) on valid and test.

    A job stopped by a signal skips it (the stop must be quick; `--resume` evaluates at its end)."""
    if not job.best or stages.head_won(job):  # the head stage's model: its own figures (stages.py)
        return {}
    if job.best_unsaved:  # head-only: the best head was kept in memory; model/ is written now
        bookkeeping.save_best_model(job)
    elif signalled(job):
        return {}
    elif job.best_state is not None:  # distributed: every rank kept the best weights (rank 0 wrote them)
        bookkeeping.load_trained_state(job, job.best_state)
    else:
        from vizsla.models import load_model

        job.model.load_state_dict(load_model(job.job_dir.model_dir).state_dict())
    if signalled(job):
        return {}
    try:
        return {split: evaluate(job, state, runner, split) for split in ("valid", "test")}
    except EvaluationStopped:
        return {}


class EvaluationStopped(Exception):
    """A signal arrived during an evaluation of a single-process job: the rest of it is skipped."""


def signalled(job: setup.Job) -> bool:
    """Whether a signal asked this single-process job to stop (a distributed job's processes only leave
    at steps they all agreed on, see `agreed_stop`; a callback's stop does not cut evaluations short)."""
    return job.stop is not None and job.stop.received and not job.dist.enabled


def fit(job: setup.Job, state: TrainState, runner: CallbackRunner) -> None:
    """Train epochs from `state.epoch`, evaluating on valid and checkpointing after each."""
    spec = job.spec.train
    for epoch in range(state.epoch, spec.epochs):
        state.epoch = epoch
        setup.apply_finetune_policy(job, epoch)
        runner.fire("epoch_start", state)
        started = time.perf_counter()
        meter = train_one_epoch(job, state, runner)
        if meter is None:  # stopped mid-epoch; the checkpoint holds where
            break
        job.ema.use_average()  # the weight average is validated, ranked and exported (ema.py)
        try:
            valid = evaluate(job, state, runner, "valid")
        except EvaluationStopped:  # trained, not validated: `--resume` validates this epoch
            job.ema.use_trained()
            save_stopped_epoch(job, state, len(job.loaders.train(epoch)), meter)
            break
        train_metrics = meter.summary("train")
        train_metrics.pop("train_top5_accuracy")
        record = {
            "kind": "epoch",
            "epoch": epoch,
            **train_metrics,
            **valid.summary("valid"),
            "lr": job.optimizer.param_groups[-1]["lr"],
            "epoch_time_s": time.perf_counter() - started,
            "time": time.time(),
        }
        state.history.append(record)
        state.metrics = dict(record)
        if job.dist.is_main:
            bookkeeping.append_metrics(job.job_dir, record)
        improved = bookkeeping.track_best(job, state, record)
        job.keep_best.consider(job, record)
        job.ema.use_trained()  # training and its checkpoint go on from the trained weights
        runner.fire("epoch_end", state)
        # A stop asked for at the epoch's end (a tuning trial's pruner runs on rank 0 only) or during
        # evaluation: in a distributed job every process leaves after this same epoch.
        stop = agreed_stop(job, state)
        if job.dist.is_main:
            bookkeeping.save_epoch_checkpoint(job, state, next_epoch=epoch + 1)
        job.progress.epoch_done(record, improved)
        log.info("%s%s", epoch_text(record, spec.epochs), " best" if improved else "")
        if bookkeeping.early_stopping_triggered(job, state):
            # A normal end (status Completed), unlike a stop requested by a signal or a callback.
            state.stop_reason = (
                f"early stopping: no improvement of {spec.early_stopping_metric} "
                f"for {spec.early_stopping_patience} epochs"
            )
            break
        if stop:
            break


def agreed_stop(job: setup.Job, state: TrainState) -> bool:
    """Whether to stop here: this process's flag, or in a distributed job whether any process's flag is set.

    A stop can be requested at any moment from another thread (a debugger rule, a signal), so in a
    distributed job only the value all processes agreed on may decide: a flag set just after the
    agreement would make this process leave one step before the others, which then wait for it forever.
    A late flag is agreed on at the next step."""
    if not job.dist.enabled:
        return state.should_stop
    stop = collectives.any_rank(state.should_stop)
    if stop and not state.should_stop:
        state.request_stop("another process of the job asked to stop")  # all stop at the same step
    return stop


def train_one_epoch(
    job: setup.Job, state: TrainState, runner: CallbackRunner
) -> ClassificationMeter | None:
    """One pass over the train split (what is left of it, for a resumed stopped epoch); returns its
    running train metrics, or None when stopped before its end (after writing a checkpoint there)."""
    model, optimizer, runtime = job.model, job.optimizer, job.runtime
    frozen = setup.backbone_frozen(job)
    cached = job.features
    model.train()
    if frozen:
        model.backbone.eval()  # frozen BatchNorm statistics stay the pretrained ones
    else:
        setup.apply_bn_policy(job)
    position, job.position = job.position, None
    first = position["batches"] if position else 0
    loader = job.loaders.train(state.epoch, start_batch=first)
    meter = ClassificationMeter(len(job.data.classes))
    if position and job.dist.is_main:  # the running metrics of the batches done (summed over processes)
        meter.load_state_dict(position["meter"])
    job.progress.start_epoch(state.epoch, len(loader))
    state.mode = "train"
    # What trains, wrapped in DistributedDataParallel in a distributed job (gradients are all-reduced).
    trained = job.parallel(model.head if cached is not None or frozen else model)
    accumulation = GradientAccumulation(job.spec.train.accumulate_steps, first, len(loader))
    pending = False  # gradients accumulated since the last optimizer step (accumulation.py)
    for batch_index, batch in enumerate(loader, start=first):
        if batch is None:  # every image of the batch failed to decode
            pending = skip_undecodable_batch(job, accumulation, batch_index, pending)
            continue
        inputs, targets = setup.to_device(batch, runtime)
        inputs, soft_targets = job.mixing.mix(inputs, targets)  # mixup/cutmix; targets stay the labels
        stepping = accumulation.steps_after(batch_index)
        state.batch_index, state.inputs, state.targets = batch_index, inputs, targets
        state.batch_size = int(targets.numel())
        runner.fire("batch_start", state)
        autocast = runtime.autocast() if cached is None else contextlib.nullcontext()
        with accumulation.sync(trained, stepping), autocast:  # no_sync: see accumulation.py
            if cached is not None:
                logits = trained(inputs)  # the head; inputs are the backbone's cached features
            elif frozen:
                with torch.no_grad():
                    features = model.backbone(inputs)
                logits = trained(features.float())
            else:
                logits = trained(inputs)
            loss = job.mixing.loss(logits.float(), targets, soft_targets)
        state.outputs, state.loss = logits, loss
        runner.fire("after_forward", state)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(
                f"loss is {loss.item()} at epoch {state.epoch} step {state.global_step}; "
                "lower the learning rate or turn on gradient clipping"
            )
        if not pending:  # the first batch of a group: the last step's gradients are spent
            optimizer.zero_grad(set_to_none=True)
        scale = accumulation.loss_scale(batch_index)
        # A group of one batch: no multiply, and none in the backward pass (~0.1 ms of a ~1.3 ms head step)
        job.scaler.scale(loss * scale if scale != 1.0 else loss).backward()
        runner.fire("after_backward", state)
        pending = not stepping
        if stepping:
            optimizer_step(job)
        state.global_step += 1  # batches, not optimizer steps: the tools number their steps by it
        counted = job.mixing.accuracy_targets(targets, soft_targets)  # a mixed batch: its dominant labels
        meter.update(logits, counted, loss.item() * state.batch_size)
        runner.fire("batch_end", state)
        job.progress.step(loss.item())
        stop = agreed_stop(job, state)
        if job.dist.is_main and state.global_step % job.spec.train.log_every_n_steps == 0:
            log_step(job, state, loss.item())
        if stop and not pending:  # a stop inside a group waits for its step (accumulation.py)
            state.inputs = state.targets = state.outputs = state.loss = None
            save_stopped_epoch(job, state, batch_index + 1, meter)
            return None
    state.inputs = state.targets = state.outputs = state.loss = None
    reduce_meter(meter)
    return meter


def skip_undecodable_batch(job: setup.Job, accumulation: GradientAccumulation, batch_index: int,
                           pending: bool) -> bool:
    """Skip a batch none of whose images decoded; its accumulation group steps without it. Returns
    whether gradients are still pending."""
    if job.dist.enabled:  # skipping would leave the other processes waiting in the all-reduce
        raise RuntimeError(
            "every image of a batch failed to decode (changed since validation?); "
            "a distributed job cannot skip a step on one process"
        )
    if pending and accumulation.steps_after(batch_index):
        optimizer_step(job)
        return False
    return pending


def optimizer_step(job: setup.Job) -> None:
    """Apply the gradients of a group of batches: clip them, step (through the fp16 scaler), then advance
    the schedule and the weight average."""
    optimizer = job.optimizer
    if job.spec.train.grad_clip_norm:
        job.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(job.model.parameters(), job.spec.train.grad_clip_norm)
    job.scaler.step(optimizer)
    job.scaler.update()
    job.scheduler.step()
    job.ema.update()


def log_step(job: setup.Job, state: TrainState, loss: float) -> None:
    """A `step` line in metrics.jsonl: the loss and learning rate every log_every_n_steps steps."""
    record = {"kind": "step", "epoch": state.epoch, "step": state.global_step, "train_loss": loss,
              "lr": job.optimizer.param_groups[-1]["lr"], "time": time.time()}
    bookkeeping.append_metrics(job.job_dir, record)


def save_stopped_epoch(job: setup.Job, state: TrainState, batches: int, meter: ClassificationMeter) -> None:
    """The checkpoint of a job stopped after BATCHES train batches of its epoch, with their running
    metrics: `--resume` goes on with the next batch and ends as an uninterrupted run would."""
    import copy

    done = copy.deepcopy(meter)
    reduce_meter(done)  # every process of a distributed job is here, after the same agreed step
    if not job.dist.is_main:
        return
    position = {"batches": batches, "meter": done.state_dict()}
    bookkeeping.save_epoch_checkpoint(job, state, next_epoch=state.epoch, position=position)
    log.info("stopped in epoch %d after %d batch(es): checkpoint %s", state.epoch + 1, batches,
             job.job_dir.last_checkpoint)


@torch.inference_mode()
def evaluate(job: setup.Job, state: TrainState, runner: CallbackRunner, split: str) -> ClassificationMeter:
    """Loss, accuracy and confusion matrix of the current weights on a split (no augmentation)."""
    model, runtime = job.model, job.runtime
    model.eval()
    meter = ClassificationMeter(len(job.data.classes))
    previous_mode, state.mode, state.split = state.mode, "eval", split
    for batch in job.loaders.eval(split):
        if signalled(job):
            state.mode = previous_mode
            raise EvaluationStopped(split)
        if batch is None:
            continue
        inputs, targets = setup.to_device(batch, runtime)
        if job.features is not None:
            logits = model.head(inputs).float()
        else:
            with runtime.autocast():
                logits = model(inputs).float()
        loss_sum = F.cross_entropy(logits, targets, reduction="sum").item()
        meter.update(logits, targets, loss_sum)
    reduce_meter(meter)  # each process saw its share of the split: the sums make the whole
    state.metrics = {**state.metrics, **meter.summary(split)}
    runner.fire("eval_end", state)
    state.mode = previous_mode
    return meter


def reduce_meter(meter: ClassificationMeter) -> None:
    """Sum a meter's counts over the processes of a distributed job (in place; a no-op for one)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    import numpy as np

    packed = np.concatenate(
        [[meter.loss_sum, meter.count, meter.correct_top1, meter.correct_top5], meter.confusion.ravel()]
    )
    total = collectives.all_reduce_sum(packed)
    meter.loss_sum = float(total[0])
    meter.count, meter.correct_top1, meter.correct_top5 = (int(round(v)) for v in total[1:4])
    meter.confusion = np.rint(total[4:]).astype(np.int64).reshape(meter.confusion.shape)
