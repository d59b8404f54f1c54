"""Resolve the machine-dependent parts of a spec (device, precision, memory format, workers) up front.

The "auto" rules follow what measured faster on the project's CPU (AMD EPYC, 2 cores, AVX-512 with native
bf16, torch 2.14). Images/s of one core (process CPU time, 1 thread, batch 32, best of 3 interleaved runs,
so other jobs on the shared machine do not skew the comparison); CL = channels_last:

    train step (forward + backward + AdamW)   fp32   fp32+CL   bf16   bf16+CL
    efficientnet_lite0     96 px               69      112      60      63
                          160 px               24       45      27      32
                          224 px              9.6       17      15      18
    resnet34               96 px               40       41      67      65
                          160 px               16       18      29      31
                          224 px              8.4      9.6      16      18
    inference
    efficientnet_lite0     96 px              530      698     590    1063
                          160 px              131      196     216     403
                          224 px               54       87     118     212
    resnet34               96 px              138      161     230     291
                          160 px               52       65      89     119
                          224 px               27       35      46      63

So on CPU: channels_last always; bf16 autocast wherever oneDNN has native bf16 kernels, except when a
depthwise-convolution backbone (EfficientNet, MobileNet, ConvNeXt, ...) is trained below 224 px, where its
bf16 backward is slower than fp32. On CUDA: AMP (bf16 where supported, else fp16 with a GradScaler) and
channels_last, the formats tensor cores run fastest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vizsla.errors import SpecError
from vizsla.infra.hardware import available_cores, cpu_supports_bf16, cuda_autocast_precision
from vizsla.spec import JobSpec
from vizsla.training.distributed import DistContext

log = logging.getLogger("vizsla.train")

# Below this input side, depthwise-convolution backbones train faster in fp32 than in bf16 (table above).
BF16_DEPTHWISE_MIN_SIDE = 224
_DEFAULT_SIDE = 224


@dataclass(frozen=True)
class Runtime:
    """How this job runs on this machine; written into the resolved spec."""

    device: torch.device
    precision: str  # fp32 | bf16 | fp16
    channels_last: bool
    num_workers: int
    compile: bool = False

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for forward passes; a no-op in fp32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The job's device; each process of a distributed job (LOCAL_RANK given) on CUDA takes its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpecError(f"train.device: unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise SpecError(f"train.device: unsupported device '{name}' (use auto, cpu, cuda or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"train.device is '{name}' but no CUDA GPU is available; use --device cpu")
    if device.type == "cuda" and local_rank is not None and device.index is None:
        device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    return device


def backbone_traits(name: str, image_size: int | None) -> tuple[int, bool]:
    """(input side, are most spatial convolutions depthwise?) of a timm model, built on the meta device."""
    import timm

    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, num_classes=0)
    except Exception as exc:  # unknown or remote names: create_classifier reports them properly later
        log.debug("cannot inspect %s for the runtime rules (%s); assuming a plain CNN", name, exc)
        return image_size or _DEFAULT_SIDE, False
    spatial = [m for m in model.modules() if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1]
    depthwise = sum(1 for m in spatial if m.groups > 1 and m.groups == m.in_channels)
    side = image_size or int(max(model.pretrained_cfg.get("input_size", (3, _DEFAULT_SIDE))[1:]))
    return side, 2 * depthwise > len(spatial)


def _cpu_precision(spec: JobSpec) -> str:
    """bf16 with native kernels, except training a depthwise backbone at small sizes (see the table)."""
    if not cpu_supports_bf16():
        return "fp32"
    if spec.train.finetune == "head":  # the backbone only runs forward: bf16 is 1.6-2.4x faster
        return "bf16"
    side, depthwise = backbone_traits(spec.model.name, spec.model.image_size)
    return "fp32" if depthwise and side < BF16_DEPTHWISE_MIN_SIDE else "bf16"


def resolve_precision(spec: JobSpec, device: torch.device) -> str:
    precision = spec.train.precision
    if precision == "auto":
        if device.type == "cuda":
            return cuda_autocast_precision()
        return _cpu_precision(spec)
    if precision == "fp16" and device.type == "cpu":
        raise SpecError("train.precision fp16 needs a CUDA GPU; use bf16 or fp32 on CPU")
    return precision


def resolve_runtime(spec: JobSpec, ctx: DistContext | None = None) -> Runtime:
    """Pick device, precision, memory format, loader workers and compilation for this machine.

    The processes of a distributed job on one machine share its cores: each gets its share of loader
    workers and intra-op threads (torchrun's default of one thread each leaves cores idle on a laptop)."""
    local = ctx.local_world_size if ctx is not None and ctx.enabled else 1
    device = resolve_device(spec.train.device, ctx.local_rank if ctx is not None and ctx.enabled else None)
    precision = resolve_precision(spec, device)
    channels_last = spec.train.channels_last
    if channels_last is None:  # at least as fast as NCHW in every measured case (table above), 1.1-1.8x
        channels_last = True
    workers = spec.data.num_workers
    if workers is None:
        from vizsla.data import default_num_workers

        workers = default_num_workers() // local if local > 1 else default_num_workers()
    if local > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, available_cores() // local))
    return Runtime(
        device=device,
        precision=precision,
        channels_last=channels_last,
        num_workers=workers,
        compile=spec.train.compile,
    )


def compile_model(model: nn.Module, runtime: Runtime) -> nn.Module:
    """torch.compile MODEL in place (state_dict keys unchanged) when asked; on any failure it runs eager.

    Compilation is lazy: it happens on the first call and again for each new input shape or mode, so
    failures are caught there too. A call that fails compiled but succeeds eager turns compilation off for
    good with a warning; a call that also fails eager raises the eager error (the inputs are the problem).
    """
    if not runtime.compile:
        return model
    try:
        import torch._inductor.config as inductor_config

        # seed_everything set deterministic mode without importing inductor (see _set_deterministic)
        inductor_config.deterministic = torch.are_deterministic_algorithms_enabled()
        model.compile()
    except Exception as exc:
        log.warning("torch.compile is unavailable (%s: %s); the model runs eager", type(exc).__name__, exc)
        return model
    compiled = model._compiled_call_impl

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(*args, **kwargs)
        except Exception as exc:
            output = model._call_impl(*args, **kwargs)
            model._compiled_call_impl = None
            log.warning(
                "torch.compile failed (%s: %s); the model runs eager from now on", type(exc).__name__, exc
            )
            return output

    model._compiled_call_impl = call
    return model


def resolved_spec(spec: JobSpec, runtime: Runtime, ctx: DistContext | None = None) -> JobSpec:
    """The spec with every 'auto' replaced by what this run uses (the distributed facts included)."""
    world = ctx.world_size if ctx is not None else 1
    # A distributed job records "cuda": each process takes its local rank's GPU, also on resume.
    device = "cuda" if world > 1 and runtime.device.type == "cuda" else str(runtime.device)
    from vizsla.training.recipe import resolve_train

    train = resolve_train(
        spec.train.model_copy(
            update={"device": device, "precision": runtime.precision, "channels_last": runtime.channels_last}
        )
    )
    data_update: dict[str, object] = {"num_workers": runtime.num_workers}
    if "://" not in spec.data.root:  # a local path: absolute, so the job resumes from any folder
        data_update["root"] = str(Path(spec.data.root).expanduser().resolve())
    data = spec.data.model_copy(update=data_update)
    output = str(Path(spec.output).expanduser().resolve())
    from vizsla.training.distributed import per_process_batch_size, resolve_backend

    distributed = spec.distributed.model_copy(
        update={
            "backend": resolve_backend(spec.distributed.backend, runtime.device),
            "world_size": world,
            "per_process_batch_size": per_process_batch_size(spec.train.batch_size, world),
            "effective_lr": spec.train.lr * spec.distributed.lr_scale(spec.train.batch_size),
        }
    )
    return spec.model_copy(
        update={"train": train, "data": data, "output": output, "distributed": distributed}
    )


def _set_deterministic(mode: bool) -> None:
    """torch.use_deterministic_algorithms(mode, warn_only=True) without its import of torch._inductor
    (1.6 s of every job's start here) when nothing compiles yet; compile_model sets inductor's flag."""
    if "torch._inductor" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(mode, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(mode, warn_only=True)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; ask for deterministic kernels where the backend has them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        _set_deterministic(True)
        # Deterministic mode also NaN-fills every new tensor, a debugging aid for reads of uninitialized
        # memory that costs ~12% of a CPU train step (efficientnet_lite0, 160 px: 41 vs 47 images/s/core).
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
