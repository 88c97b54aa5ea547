"""A loaded net made fast: BatchNorm folded (synthesis and sweeps), in-place activations back (forward-only sweeps).

`load_net` keeps every layer addressable and every captured output intact, which costs a forward pass two
extra memory passes per conv block: the frozen BatchNorm's multiply-add and an out-of-place activation. For
MobileNetV2 on a CPU those two are half the forward time. `inference_copy` returns a copy of the net for
passes without gradients that skips both, as long as the caller reduces each captured output inside its
hook (`Capture(..., reduce=...)`), before a later in-place module can overwrite it:

- a `FrozenBatchNorm` that directly follows a convolution inside an `nn.Sequential` (so the conv's output
  feeds nothing else) is folded into the conv's weight and bias and replaced by `nn.Identity`, unless the
  conv itself is a captured layer (its own output would change). The folded conv's output equals the
  BatchNorm's up to float rounding (about 1e-6 relative), so a captured BatchNorm or block is unchanged.
- activations the builder made in place (`LoadedNet.inplace`) are in place again.
- with `fuse` (CPU nets), a conv and the activation after it run as one oneDNN kernel (models/fused.py), except
  where the conv or its folded BatchNorm is captured.
The original net is untouched.
"""

from __future__ import annotations

import copy
from typing import Collection

import torch
from torch import nn

from .frozen import FrozenBatchNorm
from .fused import fuse_activations

__all__ = ["inference_copy", "fold_batchnorm", "folded_copy"]


def fold_batchnorm(net: nn.Module, keep: Collection[str] = ()) -> int:
    """Fold each FrozenBatchNorm that follows a conv in an nn.Sequential into it, in place (skipping convs
    named in `keep`); returns how many were folded."""
    n = 0
    for prefix, parent in net.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            qualified = f"{prefix}.{conv_name}" if prefix else conv_name
            if (isinstance(conv, nn.modules.conv._ConvNd) and isinstance(bn, FrozenBatchNorm)
                    and qualified not in keep and bn.scale.numel() == conv.out_channels):
                _fold(conv, bn)
                setattr(parent, bn_name, nn.Identity())
                n += 1
    return n


@torch.no_grad()
def _fold(conv: nn.modules.conv._ConvNd, bn: FrozenBatchNorm) -> None:
    scale, shift = bn.scale.reshape(-1), bn.shift.reshape(-1)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    weight = conv.weight * scale.reshape(shape).to(conv.weight.dtype)
    conv.weight = nn.Parameter(weight.contiguous(memory_format=_layout(conv.weight)), requires_grad=False)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
    conv.bias = nn.Parameter(bias * scale + shift, requires_grad=False)


def _layout(w: torch.Tensor) -> torch.memory_format:
    if w.dim() == 4 and w.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def folded_copy(net: nn.Module, captured: Collection[str], fuse: bool = False) -> nn.Module:
    """A frozen copy of `net` with BatchNorms folded into their convs (convs in `captured` kept), activations
    out of place as in `net`: every captured output equals the original's up to float rounding, and so does
    the gradient to the input, so synthesis (tasks/actor.py) runs on it too. (In-place activations were
    measured there too: with autograd they made the MobileNetV2 step 10 % slower, not faster.) `fuse` (CPU
    nets): each conv and the activation after it also run as one oneDNN kernel (models/fused.py), except
    where the conv or its folded BatchNorm is in `captured`."""
    fast = copy.deepcopy(net)
    fold_batchnorm(fast, keep=set(captured))
    if fuse:
        fuse_activations(fast, keep=set(captured))
    return fast.eval().requires_grad_(False)


def _set_inplace(net: nn.Module, names: Collection[str]) -> None:
    modules = dict(net.named_modules())
    for name in names:
        module = modules.get(name)
        if module is not None and isinstance(getattr(module, "inplace", None), bool):
            module.inplace = True


def inference_copy(net: nn.Module, captured: Collection[str], inplace: Collection[str] = (),
                   fuse: bool = False) -> nn.Module:
    """A copy of `net` with BatchNorms folded (convs in `captured` kept), convs fused with their activations
    with `fuse` (see folded_copy) and the other modules in `inplace` switched back to in place. Only for passes
    whose captures are reduced inside the hook."""
    fast = folded_copy(net, captured, fuse)
    _set_inplace(fast, inplace)
    return fast
