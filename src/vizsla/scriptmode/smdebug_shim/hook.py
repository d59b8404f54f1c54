"""smdebug's PyTorch Hook for users' scripts, recording into Vizsla's tensor store (vizsla/debugger/store.py).

Behaviour follows smdebug (SD:smdebug/pytorch/hook.py, core/hook.py):
- A step is one forward of the registered module; the global step counts every step and each mode has its
  own step counter (both start at 0). The mode is GLOBAL until `set_mode` is called.
- Names: parameters `<ModelClass>_<param>` (weights / biases), gradients `gradient/<ModelClass>_<param>`,
  the registered loss `<LossClass>_output_0`, module tensors `<module>_input_<i>` / `<module>_output_<i>`,
  `record_tensor_value(name, t)` -> `<name>_output_0`, `save_scalar(name, v)` -> `scalar/<name>`.
- Collections losses, weights, biases, gradients, all (+ regex-defined and custom ones); only the included
  ones are saved (default: losses), each at its own per-mode save config (default every 500 steps).
- Any exception inside a hook call (a wrong argument included) is caught, logged once as a warning, and that
  call is disabled for the rest of the run: the hook never kills training (smdebug's default config).

Tensors are stored in full, as smdebug does, unless their collection (or the hook) has a `reduction_config`:
then only reductions, plus the full value with `save_raw_tensor`. Either way a float tensor also gets all of
Vizsla's reductions and its histogram (the built-in rules read those), whichever reductions were named. Each
step's record goes to the store's background writer, so the training loop never waits on the disk. The store
is `$VIZSLA_DEBUG_DIR` (set by script mode), else `out_dir`; in a torchrun job only rank 0 writes it. Records
carry Vizsla's `global_step` (TRAIN steps done) so the built-in rules line evaluation passes up with training;
the smdebug-style reader (`smdebug_compat`) numbers GLOBAL steps by the store's write order instead of
smdebug's global counter.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vizsla.debugger.collections import ALL_REDUCTIONS, MODES
from vizsla.debugger.collections import Collection as StoreCollection
from vizsla.debugger.hook import stats_row
from vizsla.debugger.smdebug_compat import ModeKeys, mode_key
from vizsla.debugger.store import StepRecord, TensorStore
from vizsla.scriptmode.smdebug_shim.config import (
    BUILTIN_REGEX,
    DEFAULT_INCLUDE_COLLECTIONS,
    SCALAR_COLLECTIONS,
    Collection,
    ReductionConfig,
    SaveConfig,
    read_json_config,
)
from vizsla.scriptmode.smdebug_shim.profiling import StepTimer, TraceWindow

log = logging.getLogger("smdebug")

DEBUG_ENV = "VIZSLA_DEBUG_DIR"
GRADIENT_PREFIX = "gradient/"
SCALAR_PREFIX = "scalar/"
_PARAM_COLLECTIONS = ("weights", "biases", "gradients")
_BUILTIN = (*BUILTIN_REGEX, "default")

_hook: Hook | None = None


def _safe(feature: str) -> Any:
    """Run a hook call; on any exception (wrong arguments included) warn once and disable that call."""

    def decorate(method: Any) -> Any:
        @wraps(method)
        def wrapper(self: Hook, *args: Any, **kwargs: Any) -> Any:
            if feature in self._disabled:
                return None
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - smdebug's default config: never break training
                self._fail(feature, exc)
                return None

        return wrapper

    return decorate


@dataclass
class _Pending:
    """What the current (mode, step) has captured so far."""

    mode: str
    step: int
    global_step: int
    active: tuple[Collection, ...]
    raw: dict[str, torch.Tensor] = field(default_factory=dict)
    reduced: list[tuple[str, tuple[str, ...], tuple[int, ...]]] = field(default_factory=list)
    rows: list[torch.Tensor] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        return self.mode, self.step


class Hook:
    """smdebug.pytorch.Hook: register a model and a loss, set modes, save tensors (see the module doc)."""

    def __init__(
        self,
        out_dir: str | None = None,
        export_tensorboard: bool = False,
        tensorboard_dir: str | None = None,
        dry_run: bool = False,
        reduction_config: ReductionConfig | None = None,
        save_config: SaveConfig | None = None,
        include_regex: list[str] | str | None = None,
        include_collections: list[str] | None = None,
        save_all: bool = False,
        include_workers: str = "one",
    ) -> None:
        global _hook
        self._disabled: set[str] = set()
        self._warned: set[str] = set()
        self.out_dir = os.environ.get(DEBUG_ENV) or out_dir or str(Path.cwd() / "smdebug_outputs")
        self.export_tensorboard = bool(export_tensorboard or tensorboard_dir)
        # include_workers="one" (smdebug's default): only rank 0 of a torchrun job writes the store
        self.dry_run = dry_run or (include_workers == "one" and int(os.environ.get("RANK", "0") or 0) > 0)
        self.reduction_config = reduction_config  # None: full tensors (smdebug's default)
        self.save_config = save_config or SaveConfig()
        self.collections: dict[str, Collection] = {name: Collection(name) for name in _BUILTIN}
        self.include_collections = list(include_collections or DEFAULT_INCLUDE_COLLECTIONS)
        if include_regex:
            self.collections["default"].include(include_regex)
            self.include_collections.append("default")
        if save_all:
            self.include_collections.append("all")
        self.mode = ModeKeys.GLOBAL
        self.step = -1
        self.mode_steps = {mode: -1 for mode in ModeKeys}
        self.timer = StepTimer.from_env()
        self.trace = TraceWindow.from_env() if self.timer is not None else None
        self.store: TensorStore | None = None
        self._pending: _Pending | None = None
        self._handles: list[Any] = []
        self._modules: dict[torch.nn.Module, str] = {}
        self._top: torch.nn.Module | None = None
        self._watch_modules = False
        self._membership: dict[str, tuple[Collection, ...]] = {}
        self._dirty = True
        self._closed = False
        _hook = self
        atexit.register(self.close)

    @classmethod
    def create_from_json_file(cls, json_file_path: str | None = None) -> Hook:
        """The hook $SMDEBUG_CONFIG_FILE_PATH describes; FileNotFoundError when there is none (as smdebug)."""
        config = read_json_config(json_file_path)
        hook = cls(out_dir=config.out_dir, **config.hook_kwargs)
        for collection in config.collections:
            existing = hook.collections.get(collection.name)
            if existing is not None and not collection.include_regex:
                collection.include(existing.include_regex)
            hook.collections[collection.name] = collection
        return hook

    # registration -----------------------------------------------------------------------------------
    @_safe("register_module")
    def register_module(self, module: torch.nn.Module) -> None:
        """Count steps at each forward of `module`; record its parameters, gradients and module tensors."""
        if not isinstance(module, torch.nn.Module):
            raise ValueError(f"Module type {module.__class__.__name__} must be type torch.nn.Module")
        if self._top is not None:
            raise ValueError("a module is already registered with this hook")
        top = module._get_name()
        self._top = module
        for name, submodule in module.named_modules():
            self._modules[submodule] = name or top
        self._handles.append(module.register_forward_pre_hook(self._forward_pre))
        self._handles.append(module.register_forward_hook(self._forward_post))
        self._watch_modules = any(n not in (*_PARAM_COLLECTIONS, "losses") for n in self.include_collections)
        if self._watch_modules:
            for submodule in module.modules():
                if submodule is not module:
                    self._handles.append(submodule.register_forward_hook(self._module_output))
        for name, param in module.named_parameters():
            if param.requires_grad:
                self._handles.append(
                    param.register_hook(self._gradient_hook(f"{GRADIENT_PREFIX}{top}_{name}"))
                )
        if self.timer is not None:
            from torch.optim.optimizer import register_optimizer_step_post_hook

            self._handles.append(register_optimizer_step_post_hook(self._optimizer_step))

    def register_hook(self, module: torch.nn.Module) -> None:
        """Alias of register_module (smdebug keeps it for its zero-code-change patches)."""
        self.register_module(module)

    @_safe("register_loss")
    def register_loss(self, loss_module: torch.nn.Module) -> None:
        """Record `<LossClass>_output_0` at every forward of the loss module (e.g. nn.CrossEntropyLoss())."""
        if not isinstance(loss_module, torch.nn.modules.loss._Loss):
            raise TypeError(f"loss_module={loss_module!r} must be a subclass of torch.nn.modules.loss._Loss")
        self._modules[loss_module] = loss_module._get_name()
        self._handles.append(loss_module.register_forward_hook(self._loss_output))

    @_safe("set_mode")
    def set_mode(self, mode: Any) -> None:
        """TRAIN, EVAL, PREDICT or GLOBAL (smd.modes.*)."""
        mode = mode_key(mode)
        if mode is not self.mode and self.timer is not None:
            self.timer.close_step()
        self.mode = mode

    # collections ------------------------------------------------------------------------------------
    def get_collection(self, name: str) -> Collection:
        if name not in self.collections:
            self.collections[name] = Collection(name)
            self._dirty = True
        return self.collections[name]

    def get_collections(self) -> dict[str, Collection]:
        return dict(self.collections)

    @_safe("add_collection")
    def add_collection(self, collection: Collection) -> None:
        self.collections[collection.name] = collection
        if collection.name not in self.include_collections:
            self.include_collections.append(collection.name)
        self._changed()

    # explicit saves ---------------------------------------------------------------------------------
    @_safe("save_scalar")
    def save_scalar(
        self, name: str, value: Any, sm_metric: bool = False, timestamp: float | None = None
    ) -> None:
        """Store a number as `scalar/<name>` at the current step (always saved)."""
        number = float(value.item() if hasattr(value, "item") else value)
        pending = self._current()
        if pending is not None:
            pending.raw[f"{SCALAR_PREFIX}{name}"] = torch.tensor(number, dtype=torch.float64)

    @_safe("save_tensor")
    def save_tensor(
        self, tensor_name: str, tensor_value: Any, collections_to_write: str | list[str] = "default"
    ) -> None:
        """Store a tensor (torch, NumPy or numbers) in the given collections at their save steps."""
        value = _as_tensor(tensor_value)
        names = (
            [collections_to_write] if isinstance(collections_to_write, str) else list(collections_to_write)
        )
        for name in names:
            self.get_collection(name).add_tensor_name(tensor_name)
            if name not in self.include_collections:
                self.include_collections.append(name)
        self._changed()
        pending = self._current()
        if pending is not None:  # collections included just now save at this step too, when due
            extra = [self.collections[n] for n in names if self.collections[n] not in pending.active]
            due = [c for c in extra if self._save_config(c).should_save_step(pending.mode, pending.step)]
            pending.active = (*pending.active, *due)
            self._save(tensor_name, value, raw=True, pending=pending)

    @_safe("record_tensor_value")
    def record_tensor_value(self, tensor_name: str, tensor_value: torch.Tensor) -> None:
        """Record a functional's result, e.g. F.mse_loss(...), as `<tensor_name>_output_0`."""
        if not isinstance(tensor_name, str):
            raise TypeError(f"tensor_name={tensor_name!r} must be a str")
        if not isinstance(tensor_value, torch.Tensor):
            raise TypeError(f"tensor_value={tensor_value!r} must be torch.Tensor")
        self._save(f"{tensor_name}_output_0", tensor_value, raw=True)

    @_safe("close")
    def close(self) -> None:
        """Write the last step, close the store (END marker) and remove every torch hook; runs at exit too."""
        if self._closed:
            return
        self._closed = True
        try:
            self._submit()
            if self.timer is not None:
                self.timer.close()
            if self.trace is not None:
                self.trace.close()
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            if self.store is not None:
                self.store.close()
                if self.export_tensorboard:
                    self._export_tensorboard()

    # torch hooks ------------------------------------------------------------------------------------
    def _forward_pre(self, module: torch.nn.Module, args: Any) -> None:
        if "capture" in self._disabled:
            return
        try:
            self.step += 1
            self.mode_steps[self.mode] += 1
            mode_step = self.mode_steps[self.mode]
            if self.timer is not None and self.mode is ModeKeys.TRAIN:
                first = args[0] if args else None
                batch = int(first.shape[0]) if isinstance(first, torch.Tensor) and first.ndim else None
                self.timer.start(mode_step, batch)
                if self.trace is not None:
                    self.trace.step_started(mode_step)
            pending = self._open_step(self.mode.name, mode_step)
            if any(c.name in ("weights", "biases", "all") for c in pending.active):
                top = self._modules[module]
                for name, param in module.named_parameters():
                    self._save(f"{top}_{name}", param.detach(), pending=pending)
        except Exception as exc:  # noqa: BLE001
            self._fail("capture", exc)

    def _forward_post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self.timer is not None and self.mode is ModeKeys.TRAIN:
            self.timer.mark("forward_end")

    def _module_output(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        pending = self._pending
        if pending is None or not pending.active or "capture" in self._disabled:
            return
        try:
            name = self._modules.get(module, module._get_name())
            for i, tensor in enumerate(_tensors(args)):
                self._save(f"{name}_input_{i}", tensor, pending=pending)
            for i, tensor in enumerate(_tensors(output)):
                self._save(f"{name}_output_{i}", tensor, pending=pending)
        except Exception as exc:  # noqa: BLE001
            self._fail("capture", exc)

    def _loss_output(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self.timer is not None and self.mode is ModeKeys.TRAIN:
            self.timer.mark("loss")
        if "capture" in self._disabled:
            return
        try:
            pending = self._current()
            if pending is None or not pending.active:
                return
            name = self._modules[module]
            for i, tensor in enumerate(_tensors(args)):
                self._save(f"{name}_input_{i}", tensor, pending=pending)
            for i, tensor in enumerate(_tensors(output)):
                self._save(f"{name}_output_{i}", tensor, pending=pending, raw=tensor.numel() == 1)
        except Exception as exc:  # noqa: BLE001
            self._fail("capture", exc)

    def _gradient_hook(self, name: str) -> Any:
        def hook(grad: torch.Tensor) -> None:
            if self.timer is not None and self.mode is ModeKeys.TRAIN:
                self.timer.mark("backward")
            pending = self._pending
            if pending is None or not pending.active or "capture" in self._disabled:
                return
            try:
                self._save(name, grad, pending=pending)
            except Exception as exc:  # noqa: BLE001
                self._fail("capture", exc)

        return hook

    def _optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.timer is not None and self.mode is ModeKeys.TRAIN:
            self.timer.mark("optimizer")

    # recording --------------------------------------------------------------------------------------
    def _open_step(self, mode: str, step: int) -> _Pending:
        """Submit the previous step and start (mode, step); keeps a pending opened early for the same step."""
        if self._pending is not None and self._pending.key == (mode, step):
            return self._pending
        self._submit()
        included = [
            self.collections[n] for n in dict.fromkeys(self.include_collections) if n in self.collections
        ]
        active = tuple(c for c in included if self._save_config(c).should_save_step(mode, step))
        train_done = step if mode == "TRAIN" else self.mode_steps[ModeKeys.TRAIN] + 1
        self._pending = _Pending(mode, step, train_done, active)
        return self._pending

    def _current(self) -> _Pending | None:
        """The open step, or the upcoming one when no forward has run yet in this mode."""
        if self._closed:
            return None
        if self._pending is not None and self._pending.mode == self.mode.name:
            return self._pending
        return self._open_step(self.mode.name, self.mode_steps[self.mode] + 1)

    def _save_config(self, collection: Collection) -> SaveConfig:
        return collection.save_config or self.save_config

    def _members(self, name: str) -> tuple[Collection, ...]:
        if self._dirty:
            self._membership.clear()
            self._dirty = False
        found = self._membership.get(name)
        if found is None:
            found = self._membership[name] = tuple(c for c in self.collections.values() if c.matches(name))
        return found

    def _save(
        self, name: str, tensor: torch.Tensor, *, pending: _Pending | None = None, raw: bool = False
    ) -> None:
        pending = pending or self._pending
        if pending is None or name in pending.raw or any(n == name for n, _, _ in pending.reduced):
            return
        members = [c for c in self._members(name) if c in pending.active]
        if not members:
            return
        tensor = tensor.detach()
        keep_raw = (
            raw
            or tensor.numel() <= 1
            or any(c.name in SCALAR_COLLECTIONS or name in c.tensor_names for c in members)
            or any(self._saves_raw(c) for c in members)
        )
        if keep_raw:
            pending.raw[name] = tensor.clone()
        if tensor.numel() > 1 and (tensor.is_floating_point() or not keep_raw):
            pending.reduced.append((name, ALL_REDUCTIONS, tuple(tensor.shape)))
            pending.rows.append(stats_row(tensor))

    def _saves_raw(self, collection: Collection) -> bool:
        """smdebug's rule: the collection's reduction config, else the hook's; none means full tensors."""
        config = collection.reduction_config or self.reduction_config
        return config is None or config.save_raw_tensor

    def _submit(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None or not (pending.raw or pending.rows) or self.dry_run:
            return
        store = self._store()
        if self._dirty or store.collections is None:
            store.collections = self._store_collections()
        record = StepRecord(
            mode=pending.mode,
            step=pending.step,
            global_step=pending.global_step,
            time=time.time(),
            raw={n: t.cpu() for n, t in pending.raw.items()},
            reduced=pending.reduced,
            stats=torch.stack(pending.rows).cpu() if pending.rows else None,
        )
        store.submit(record)

    def _store(self) -> TensorStore:
        if self.store is None:
            self.store = TensorStore(Path(self.out_dir), self._store_collections())
            self.store.open()
        return self.store

    def _changed(self) -> None:
        self._dirty = True
        if self.store is not None:  # a new dict object: the writer thread may be reading the old one
            self.store.collections = self._store_collections()

    def _store_collections(self) -> dict[str, StoreCollection]:
        """The collections as collections.json records them, so readers and rules select by them."""
        out = {}
        for name, collection in self.collections.items():
            train = self._save_config(collection).get_save_config(ModeKeys.TRAIN)
            scalar = name in SCALAR_COLLECTIONS
            out[name] = StoreCollection(
                name=name,
                include_regex=collection.store_regex(),
                save_interval=int(train.save_interval or 1),
                save_steps=tuple(train.save_steps or ()),
                reductions=() if scalar else ALL_REDUCTIONS,
                save_raw=scalar or bool(collection.tensor_names) or self._saves_raw(collection),
                modes=MODES,
                enabled=name in self.include_collections,
            )
        return out

    def _export_tensorboard(self) -> None:
        try:
            from vizsla.debugger.reader import open_trial
            from vizsla.debugger.tensorboard import export_tensorboard

            export_tensorboard(open_trial(self.out_dir))
        except Exception as exc:  # noqa: BLE001
            self._fail("export_tensorboard", exc)

    def _fail(self, feature: str, exc: Exception) -> None:
        self._disabled.add(feature)
        if feature not in self._warned:
            self._warned.add(feature)
            log.warning("smdebug hook: %s failed: %s: %s; training goes on", feature, type(exc).__name__, exc)


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors of a module's inputs or outputs (a tensor, or a tuple / list of them)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def _as_tensor(value: Any) -> torch.Tensor:
    """A tensor from torch / NumPy / Python numbers; anything else is refused (smdebug warns and skips)."""
    if isinstance(value, torch.Tensor):
        return value
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"tensor_value of type {type(value).__name__} cannot be converted to a numeric tensor"
        )
    return torch.from_numpy(np.array(array))


def get_hook(
    json_config_path: str | None = None,
    create_if_not_exists: bool = False,
    save_config: SaveConfig | None = None,
    include_collections: list[str] | None = None,
) -> Hook | None:
    """The hook created so far, else (create_if_not_exists) one from the JSON config, else None."""
    global _hook
    if _hook is None and create_if_not_exists:
        try:
            hook = Hook.create_from_json_file(json_config_path)
        except FileNotFoundError:
            return None
        if save_config is not None:
            hook.save_config = save_config
        if include_collections:
            hook.include_collections = list(include_collections)
    return _hook
