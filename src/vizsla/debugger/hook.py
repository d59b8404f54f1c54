"""DebugHook: a trainer callback recording losses, weights, gradients and activations into the tensor store.

When each thing is captured (TRAIN step = `state.global_step` before the optimizer step of the batch):
- `inputs` at batch_start; module outputs and ReLU outputs during the forward; `loss`, `labels`,
  `predictions` at after_forward; weights, biases and gradients (`param.grad`) at after_backward, i.e.
  parameters as the forward saw them, before the optimizer updates them (smdebug's convention).
- EVAL has no per-batch trainer events: two permanent forward pre-hooks on the model and its head (whichever
  runs first starts an EVAL step, so both the full model and the cached-features head path work), and a
  TorchFunctionMode pushed for the evaluation that sees the trainer's `F.cross_entropy(logits, targets)` and
  records that batch's loss, labels and predictions, closing the step.
- ReLU outputs, functional and in-place included: at the steps that save `relu_output`, a TorchFunctionMode
  sees every `F.relu`, `torch.relu(_)`, `Tensor.relu(_)`, `F.relu6` and `F.hardtanh(min_val=0)` (what
  nn.ReLU / nn.ReLU6 call) and records the result as `<innermost running module>_relu_output_<i>`; the
  module stack comes from forward pre/post hooks attached to every module for that step only.

Per-module forward hooks are attached at batch_start of a save step and removed at after_forward, so steps
that save nothing run the model with no hooks at all (the overhead target is <= 5% of step time). Reductions
are computed on the tensor's device with torch ops into one row per tensor; a step's rows are stacked and
moved to the CPU once, and the background writer of `TensorStore` does the NumPy conversion and the disk I/O.
Every hook is removed at fit_end, and at once if this callback fails; a hook that fails inside the model's
forward logs, stops capturing and never breaks the training step.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from vizsla.callbacks import Callback, TrainState
from vizsla.debugger.collections import ALL_REDUCTIONS, HISTOGRAM_BINS, Collection, resolve_collections
from vizsla.debugger.store import INDEX_FILE, StepRecord, TensorStore
from vizsla.infra.io import read_jsonl

log = logging.getLogger(__name__)

_RELU_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu6}


def stats_row(tensor: torch.Tensor) -> torch.Tensor:
    """float64 row on the tensor's device: 9 reductions, histogram range, 64 counts (see store.py)."""
    with torch.no_grad():
        x = tensor.detach().reshape(-1).float()
        count = x.numel()
        finite = torch.isfinite(x)
        std, mean = torch.std_mean(x, correction=0)
        infinity = torch.tensor(float("inf"), device=x.device)
        low = torch.where(finite, x, infinity).amin()
        high = torch.where(finite, x, -infinity).amax()
        valid = torch.isfinite(low) & torch.isfinite(high)
        nan = torch.tensor(float("nan"), device=x.device)
        low, high = torch.where(valid, low, nan), torch.where(valid, high, nan)
        lo = torch.where(valid, low, 0.0)
        hi = torch.where(valid, high, 1.0)
        constant = hi <= lo
        lo, hi = torch.where(constant, lo - 0.5, lo), torch.where(constant, lo + 0.5, hi)
        index = ((torch.where(finite, x, lo) - lo) / (hi - lo) * HISTOGRAM_BINS).floor_()
        index = index.clamp_(0, HISTOGRAM_BINS - 1).long()
        index = torch.where(finite, index, HISTOGRAM_BINS)  # non-finite values go to a dropped extra bin
        if x.is_cuda:  # scatter_add needs no host sync; bincount is faster on the CPU
            ones = torch.ones(1, dtype=torch.float64, device=x.device).expand(count)
            counts = torch.zeros(HISTOGRAM_BINS + 1, dtype=torch.float64, device=x.device)
            counts = counts.scatter_add_(0, index, ones)
        else:
            counts = torch.bincount(index, minlength=HISTOGRAM_BINS + 1).double()
        scalars = torch.stack(
            [
                mean,
                std,
                low,
                high,
                x.abs().sum(),
                torch.linalg.vector_norm(x),
                (x == 0).sum() / count,
                torch.isnan(x).sum(),
                torch.isinf(x).sum(),
                lo,
                hi,
            ]
        ).double()
        return torch.cat([scalars, counts[:HISTOGRAM_BINS]])


@dataclass
class _Pending:
    """What one mode step has captured so far."""

    mode: str
    step: int
    global_step: int
    split: str | None
    active: tuple[Collection, ...]
    raw: dict[str, torch.Tensor] = field(default_factory=dict)
    reduced: list[tuple[str, tuple[str, ...], tuple[int, ...]]] = field(default_factory=list)
    rows: list[torch.Tensor] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)  # name -> times seen this step (output index)


class _CaptureMode(TorchFunctionMode):
    """Sees functional ReLUs (for relu_output) and, during evaluation, the loss call."""

    def __init__(self, hook: DebugHook) -> None:
        super().__init__()
        self.hook = hook

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        hook = self.hook
        if hook.capture_relu and _is_relu(func, args, kwargs):
            hook._safely(hook._on_relu, out)
        elif hook.capture_loss and func is F.cross_entropy:
            hook._safely(hook._on_eval_loss, args, kwargs, out)
        return out


def _is_relu(func: Any, args: tuple, kwargs: dict) -> bool:
    """True for the ReLU family; nn.ReLU6 calls F.hardtanh(x, 0.0, 6.0)."""
    if func in _RELU_FUNCTIONS:
        return True
    if func is F.hardtanh:
        return (args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)) == 0
    return False


def _guarded(method: Any) -> Any:
    """Run a callback method; on an exception remove every hook first, then let the runner disable us."""

    @wraps(method)
    def wrapper(self: DebugHook, state: TrainState) -> None:
        try:
            method(self, state)
        except Exception:
            self._teardown(failed=True)
            raise

    return wrapper


class DebugHook(Callback):
    """Records tensors per mode step as the collections of a `DebugSpec` ask, into `<job>/<out_dir>/`."""

    def __init__(self, debug_spec: Any, job_dir: Any) -> None:
        root = job_dir if isinstance(job_dir, str | Path) else job_dir.root  # a path or a JobDir
        root = Path(root)
        self.spec = debug_spec
        self.root = root / debug_spec.out_dir
        self.collections = resolve_collections(debug_spec)
        self.store = TensorStore(self.root, self.collections)
        self.capture_relu = False
        self.capture_loss = False
        self._state: TrainState | None = None
        self._pending: _Pending | None = None
        self._mode: _CaptureMode | None = None
        self._entry_handles: list[Any] = []
        self._step_handles: list[Any] = []
        self._modules: dict[torch.nn.Module, str] = {}
        self._entries: set[torch.nn.Module] = set()
        self._stack: list[str] = []
        self._capturing = False
        self._depth = 0
        self._eval_step = 0
        self._eval_pass = 0
        self._membership: dict[str, tuple[Collection, ...]] = {}
        self._closed = False

    # trainer events -----------------------------------------------------------------------------------
    @_guarded
    def fit_start(self, state: TrainState) -> None:
        self._state = state
        self.store.open()
        self._eval_step = self._next_step("EVAL")
        model = state.model
        names = {module: name for name, module in model.named_modules()}
        names[model] = type(model).__name__  # smdebug names the top module by its class
        self._modules = names
        head = getattr(model, "head", None)
        entries = [model, *([head] if isinstance(head, torch.nn.Module) else [])]
        self._entries = set(entries)
        for module in entries:
            self._entry_handles.append(module.register_forward_pre_hook(self._entry_pre))
            self._entry_handles.append(module.register_forward_hook(self._entry_post, always_call=True))

    @_guarded
    def batch_start(self, state: TrainState) -> None:
        if state.mode != "train":
            return
        self._pending = self._new_pending("TRAIN", state.global_step, state)
        if state.inputs is not None and self._wanted("inputs")[0]:
            self._record("inputs", state.inputs, clone=True)
        self._start_capture()

    @_guarded
    def after_forward(self, state: TrainState) -> None:
        pending = self._pending
        if pending is None or pending.mode != "TRAIN":
            return
        self._stop_capture()
        if state.loss is not None:
            self._record("loss", state.loss.detach().float())
        self._record_targets(state.targets, state.outputs)

    @_guarded
    def after_backward(self, state: TrainState) -> None:
        pending = self._pending
        if pending is None or pending.mode != "TRAIN" or not pending.active:
            return
        for name, param in state.model.named_parameters():
            if not param.requires_grad:
                continue  # frozen parameters cannot change: nothing to watch, and they can be most of a model
            if self._wanted(name)[0]:
                self._record(name, param, clone=True)
            if param.grad is not None and self._wanted(f"gradient/{name}")[0]:
                self._record(f"gradient/{name}", param.grad, clone=True)

    @_guarded
    def batch_end(self, state: TrainState) -> None:
        if self._pending is not None and self._pending.mode == "TRAIN":
            self._submit()

    @_guarded
    def eval_end(self, state: TrainState) -> None:
        self._finish_eval()
        self.store.flush()  # the job's plots and report, written next, read the store

    @_guarded
    def epoch_end(self, state: TrainState) -> None:
        self.store.flush()

    @_guarded
    def fit_end(self, state: TrainState) -> None:
        self._teardown(failed=False)
        if self.spec.tensorboard:
            from vizsla.debugger.reader import open_trial
            from vizsla.debugger.tensorboard import export_tensorboard

            export_tensorboard(open_trial(self.root))

    # capture ------------------------------------------------------------------------------------------
    def _new_pending(self, mode: str, step: int, state: TrainState) -> _Pending:
        active = tuple(c for c in self.collections.values() if c.should_save(mode, step))
        split = state.split if mode == "EVAL" else None
        return _Pending(mode, step, state.global_step, split, active)

    def _wanted(self, name: str) -> tuple[bool, bool, tuple[str, ...]]:
        """(save at all, save raw, reductions) for a tensor at the pending step."""
        pending = self._pending
        members = self._membership.get(name)
        if members is None:
            members = self._membership[name] = tuple(c for c in self.collections.values() if c.matches(name))
        if pending is None:
            return False, False, ()
        active = [c for c in members if c in pending.active]
        if not active:
            return False, False, ()
        wanted = {r for c in active for r in c.reductions}
        return True, any(c.save_raw for c in active), tuple(r for r in ALL_REDUCTIONS if r in wanted)

    def _record(self, name: str, tensor: torch.Tensor, *, clone: bool = False) -> None:
        pending = self._pending
        save, raw, reductions = self._wanted(name)
        if pending is None or not save or not isinstance(tensor, torch.Tensor) or name in pending.raw:
            return
        if raw:
            pending.raw[name] = tensor.detach().clone() if clone else tensor.detach()
        if reductions and tensor.numel() > 0 and (tensor.is_floating_point() or not raw):
            pending.reduced.append((name, reductions, tuple(tensor.shape)))
            pending.rows.append(stats_row(tensor))

    def _record_targets(self, targets: Any, outputs: Any) -> None:
        if isinstance(targets, torch.Tensor):
            self._record("labels", targets)
        if isinstance(outputs, torch.Tensor) and outputs.ndim == 2 and self._wanted("predictions")[0]:
            self._record("predictions", outputs.detach().argmax(dim=1))

    def _submit(self) -> None:
        """Stack the step's rows, move everything to the CPU once, and hand the record to the writer."""
        pending, self._pending = self._pending, None
        if pending is None or not (pending.raw or pending.rows):
            return
        stats = torch.stack(pending.rows).cpu() if pending.rows else None
        raw = {name: tensor.cpu() for name, tensor in pending.raw.items()}
        record = StepRecord(
            mode=pending.mode,
            step=pending.step,
            global_step=pending.global_step,
            split=pending.split,
            time=time.time(),
            raw=raw,
            reduced=pending.reduced,
            stats=stats,
        )
        self.store.submit(record)

    def _start_capture(self) -> None:
        """Attach per-module hooks (and the ReLU-seeing mode) when the pending step saves module tensors."""
        pending = self._pending
        if pending is None or not pending.active:
            return
        wants_outputs = any(self._wanted(f"{name}_output_0")[0] for name in self._modules.values())
        wants_relu = any(self._wanted(f"{name}_relu_output_0")[0] for name in self._modules.values())
        if not (wants_outputs or wants_relu):
            return
        for module, name in self._modules.items():
            if module in self._entries:
                continue  # the permanent entry hooks already keep the stack for these
            self._step_handles.append(module.register_forward_pre_hook(self._make_pre(name)))
            self._step_handles.append(module.register_forward_hook(self._make_post(name), always_call=True))
        self._stack.clear()
        self._capturing = True
        if wants_relu:
            self.capture_relu = True
            self._push_mode()

    def _stop_capture(self) -> None:
        for handle in self._step_handles:
            handle.remove()
        self._step_handles.clear()
        self._stack.clear()
        self._capturing = False
        self.capture_relu = False
        if not self.capture_loss:
            self._pop_mode()

    def _make_pre(self, name: str) -> Any:
        def pre(module: torch.nn.Module, args: Any) -> None:
            self._stack.append(name)

        return pre

    def _make_post(self, name: str) -> Any:
        def post(module: torch.nn.Module, args: Any, output: Any) -> None:
            if self._stack:
                self._stack.pop()
            self._safely(self._on_output, name, output)

        return post

    def _on_output(self, name: str, output: Any) -> None:
        if isinstance(output, tuple | list) and output:
            output = output[0]
        if isinstance(output, torch.Tensor) and self._pending is not None:
            index = self._pending.calls.get(f"{name}_output", 0)
            self._pending.calls[f"{name}_output"] = index + 1
            self._record(f"{name}_output_{index}", output, clone=True)

    def _on_relu(self, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or self._pending is None:
            return
        name = self._stack[-1] if self._stack else self._modules.get(self._state.model, "model")
        index = self._pending.calls.get(f"{name}_relu", 0)
        self._pending.calls[f"{name}_relu"] = index + 1
        self._record(f"{name}_relu_output_{index}", output, clone=True)

    def _entry_pre(self, module: torch.nn.Module, args: Any) -> None:
        self._safely(self._enter, module, args)

    def _entry_post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._safely(self._leave, module, output)

    def _enter(self, module: torch.nn.Module, args: Any) -> None:
        state = self._state
        if state is not None and state.mode == "eval":
            if self._depth == 0:
                self._begin_eval_step(args[0] if args else None)
            self._depth += 1
        if self._capturing:
            self._stack.append(self._modules[module])

    def _leave(self, module: torch.nn.Module, output: Any) -> None:
        if self._capturing:
            if self._stack:
                self._stack.pop()
            self._on_output(self._modules[module], output)
        state = self._state
        if state is not None and state.mode == "eval" and self._depth > 0:
            self._depth -= 1

    def _begin_eval_step(self, inputs: Any) -> None:
        state = self._state
        if not self.capture_loss:  # first batch of this evaluation
            self.capture_loss = True
            self._eval_pass += 1
            self._push_mode()
        if self._pending is not None:  # the previous batch never reached the loss: keep what it has
            self._stop_capture()
            self._submit()
        self._pending = self._new_pending("EVAL", self._eval_step, state)
        self._eval_step += 1
        if isinstance(inputs, torch.Tensor) and self._wanted("inputs")[0]:
            self._record("inputs", inputs, clone=True)
        self._start_capture()

    def _on_eval_loss(self, args: tuple, kwargs: dict, out: Any) -> None:
        pending = self._pending
        if pending is None or pending.mode != "EVAL" or not isinstance(out, torch.Tensor):
            return
        logits = args[0] if args else kwargs.get("input")
        targets = args[1] if len(args) > 1 else kwargs.get("target")
        reduction = kwargs.get("reduction", "mean")
        loss = out.detach().float()
        if reduction == "sum" and isinstance(targets, torch.Tensor) and targets.shape[0] > 0:
            loss = loss / targets.shape[0]
        elif reduction == "none":
            loss = loss.mean()
        self._record("loss", loss)
        self._record_targets(targets, logits)
        self._stop_capture()
        self._submit()

    def _finish_eval(self) -> None:
        if self._pending is not None and self._pending.mode == "EVAL":
            self._stop_capture()
            self._submit()
        self.capture_loss = False
        self._depth = 0
        self._pop_mode()

    def _push_mode(self) -> None:
        if self._mode is None:
            self._mode = _CaptureMode(self)
            self._mode.__enter__()

    def _pop_mode(self) -> None:
        mode, self._mode = self._mode, None
        if mode is None:
            return
        from torch.overrides import _get_current_function_mode

        if _get_current_function_mode() is mode:
            mode.__exit__(None, None, None)
        else:
            log.warning("debugger: another TorchFunctionMode is on top of ours; leaving the mode stack alone")

    def _safely(self, function: Any, *args: Any) -> None:
        """Run a capture step inside the model's forward; on error log once and stop capturing."""
        try:
            function(*args)
        except Exception:  # noqa: BLE001 - the debugger must never break a training step
            log.exception("debugger capture failed; tensors of this kind are no longer recorded")
            self.capture_relu = False
            self._capturing = False

    def _next_step(self, mode: str) -> int:
        """First free step of a mode in the store (a resumed job continues the numbering)."""
        last = -1
        for entry in read_jsonl(self.root / INDEX_FILE):
            if entry.get("mode") == mode:
                last = max(last, int(entry.get("step", -1)))
        return last + 1

    def _teardown(self, *, failed: bool) -> None:
        """Remove every hook and pop our mode; flush what was captured and close the store."""
        if self._closed:
            return
        self._closed = True
        try:
            if not failed and self._pending is not None:
                self._stop_capture()
                self._submit()
        finally:
            self._pending = None
            self.capture_relu = self.capture_loss = False
            self._capturing = False
            for handle in [*self._step_handles, *self._entry_handles]:
                handle.remove()
            self._step_handles.clear()
            self._entry_handles.clear()
            self._pop_mode()
            self.store.close()
