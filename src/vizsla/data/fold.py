"""Fold eval-mode BatchNorm into the preceding convolution of an inference-only copy of a backbone.

Why: in eval mode a BatchNorm is a per-channel affine map with frozen statistics, so it can be merged into
the weights and bias of the convolution that feeds it. On CPU, torch extraction of efficientnet_lite0 at
224 px spent ~1.0 s of ~3.4 s of forward time in torch.batch_norm (convolutions: ~1.5 s); folding removes
that work without changing what the network computes (up to float rounding).

How: torch.fx traces the module with BatchNorm2d and timm's BatchNormAct2d (batch_norm -> drop -> act) kept
as leaves; every BN node whose only input is a convolution used nowhere else is folded into that
convolution. A plain BN node is then removed and a BatchNormAct2d becomes nn.Sequential(drop, act). The
result is an fx GraphModule with the same forward output. Folding is an optimisation, never an error: when
tracing fails (data-dependent control flow), nothing can be folded, or the folded module's fp32 output on a
small random input differs from the original's, the original module is returned unchanged (logged at
debug level). The input module is never modified: folding works on a deep copy.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

log = logging.getLogger("vizsla.data")

FOLD_TOLERANCE = 1e-3  # max |folded - original| relative to max |original| (fp32) accepted for a fold


def _timm_types() -> tuple[tuple[type[nn.Module], ...], tuple[type[nn.Module], ...], list[Any], list[Any]]:
    """(BN-with-activation types, extra conv types, timm no-trace modules, timm no-trace functions)."""
    try:
        from timm.layers import _fx as timm_fx
        from timm.layers.conv2d_same import Conv2dSame, Conv2dSameExport
        from timm.layers.norm_act import BatchNormAct2d
    except ImportError:  # timm is a dependency, but folding must never be the reason something breaks
        return (), (), [], []
    return (
        (BatchNormAct2d,),
        (Conv2dSame, Conv2dSameExport),
        list(timm_fx.get_notrace_modules()),
        list(timm_fx.get_notrace_functions()),
    )


class _FoldTracer(fx.Tracer):
    """Keeps BatchNorm (with or without an activation), convolutions and timm's no-trace modules whole."""

    def __init__(self, leaves: tuple[type[nn.Module], ...], autowrap_functions: list[Any]) -> None:
        super().__init__(autowrap_functions=tuple(fn for fn in autowrap_functions if callable(fn)))
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, module_qualified_name)


def _foldable_bn(bn: nn.Module, bn_act_types: tuple[type[nn.Module], ...]) -> bool:
    return (
        (type(bn) is nn.BatchNorm2d or type(bn) in bn_act_types)
        and not bn.training
        and bool(bn.track_running_stats)
        and bn.running_mean is not None
        and bn.running_var is not None
    )


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, name, module)


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    scale = max(float(expected.abs().max()), 1e-12)
    return float((got.float() - expected.float()).abs().max()) / scale


def _fold_graph(module: nn.Module) -> tuple[fx.GraphModule, int]:
    """A traced deep copy of MODULE with every foldable conv -> BN pair folded, and the number folded."""
    bn_act_types, extra_convs, notrace_modules, notrace_functions = _timm_types()
    conv_types = (nn.Conv2d, *extra_convs)
    leaves = (nn.BatchNorm2d, *conv_types, *notrace_modules)
    root = copy.deepcopy(module)
    graph = _FoldTracer(leaves, notrace_functions).trace(root)
    gm = fx.GraphModule(root, graph, root.__class__.__name__)
    modules = dict(gm.named_modules())
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1

    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node.kwargs or len(node.args) != 1:
            continue
        bn, source = modules.get(node.target), node.args[0]
        if bn is None or not _foldable_bn(bn, bn_act_types) or calls[node.target] != 1:
            continue
        if not isinstance(source, fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        conv = modules.get(source.target)
        if conv is None or type(conv) not in conv_types or calls[source.target] != 1:
            continue
        if conv.weight.shape[0] != bn.num_features:
            continue
        conv.weight, conv.bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        if type(bn) is nn.BatchNorm2d:
            node.replace_all_uses_with(source)
            gm.graph.erase_node(node)
        else:  # BatchNormAct2d: keep its dropout and activation, in that order
            _set_submodule(gm, node.target, nn.Sequential(bn.drop, bn.act))
        folded += 1
    if folded:
        gm.graph.lint()
        gm.recompile()
        gm.delete_all_unused_submodules()
    return gm, folded


def _first_float_dtype(module: nn.Module) -> torch.dtype:
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def fold_batchnorm(module: nn.Module, *, sample_hw: tuple[int, int] = (64, 64)) -> nn.Module:
    """MODULE with eval-mode BatchNorm folded into the preceding convolutions, or MODULE itself.

    Returns a new fx GraphModule when at least one BN was folded and its output on a random
    (2, 3, *sample_hw) input matches MODULE's within FOLD_TOLERANCE (relative, fp32, TF32 off); otherwise
    MODULE unchanged. MODULE itself is never modified.
    """
    name = type(module).__name__
    try:
        folded, count = _fold_graph(module)
    except Exception as exc:  # fx raises anything on untraceable code; folding is only an optimisation
        log.debug("BatchNorm folding skipped for %s: tracing failed (%s: %s)", name, type(exc).__name__, exc)
        return module
    if not count:
        log.debug("BatchNorm folding skipped for %s: no eval-mode conv -> BatchNorm pair", name)
        return module
    try:
        error = _check(module, folded, sample_hw)
    except Exception as exc:  # e.g. a fixed-input-size model: keep the original rather than guess
        log.debug(
            "BatchNorm folding skipped for %s: output check failed (%s: %s)", name, type(exc).__name__, exc
        )
        return module
    if not error <= FOLD_TOLERANCE:
        log.debug(
            "BatchNorm folding skipped for %s: folded output differs by %.2e (relative) > %g",
            name,
            error,
            FOLD_TOLERANCE,
        )
        return module
    log.debug("folded %d BatchNorm layers of %s into convolutions (relative error %.1e)", count, name, error)
    return folded


@contextlib.contextmanager
def _exact_fp32(device: torch.device) -> Iterator[None]:
    """TF32 off on CUDA while checking: its ~1e-3 rounding would swamp the folding error."""
    if device.type != "cuda":
        yield
        return
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = [flag.allow_tf32 for flag in flags]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch nudges towards fp32_precision; both work
        for flag in flags:
            flag.allow_tf32 = False
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for flag, value in zip(flags, saved, strict=True):
                flag.allow_tf32 = value


def _check(original: nn.Module, folded: nn.Module, sample_hw: tuple[int, int]) -> float:
    """Max relative difference of the two modules' outputs on a seeded random (2, 3, H, W) input."""
    param = next(original.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    images = torch.randn(2, 3, *sample_hw, generator=torch.Generator().manual_seed(0))
    images = images.to(device, _first_float_dtype(original))
    with torch.inference_mode(), _exact_fp32(device):
        expected, got = original(images), folded(images)
    if not isinstance(expected, torch.Tensor) or not isinstance(got, torch.Tensor):
        raise TypeError("the module does not return a single tensor")
    if got.shape != expected.shape:
        raise ValueError(f"folded output has shape {tuple(got.shape)}, original {tuple(expected.shape)}")
    return _relative_error(got, expected)
