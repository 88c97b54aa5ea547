"""A convolution and the activation after it as one oneDNN kernel on CPUs (synthesis and sweeps).

Once BatchNorm is folded (models/inference.py), MobileNetV2's blocks are conv -> Identity -> ReLU6 inside an
nn.Sequential, and VGG-style nets are conv -> ReLU. The activation's own pass reads and writes the whole conv
output again; oneDNN applies it while the output is still in cache (`mkldnn::_convolution_pointwise`, the
kernel torch.compile's CPU backend emits for the same pattern). `fuse_activations` replaces such a conv by a
`FusedConv` and the activation by `nn.Identity`, so every module name still resolves and a captured
activation's output is the fused output.

The backward pass is the activation's backward taken on the output (for ReLU and Hardtanh, y lies strictly
inside the linear range exactly when x does) followed by the conv's gradient to its input: the same arithmetic
as the unfused net, so the input gradient is equal up to float reassociation inside oneDNN. Off the CPU, or for
anything but float32, a `FusedConv` runs the conv and the activation as before (a GPU fuses in its own kernels).

The activation's backward writes into the incoming gradient when that gradient is one the next fused conv's
backward just allocated for this conv's output (tagged with the node it is for): nothing else holds it, and
not allocating a fresh tensor of a whole layer's size per conv per step saves 13 % of the pass on this CPU
(README, Speed). Contract: these are copies for gradients to the *input* (synthesis, attribution); a
caller that asked autograd for the gradient of an intermediate fused output itself (`inputs=` or a tensor
hook keeping it) would see it masked by the activation's backward.
"""

from __future__ import annotations

from typing import Collection

import torch
from torch import nn

__all__ = ["FusedConv", "fuse_activations", "fusion_available"]


def fusion_available() -> bool:
    """Whether this torch build has oneDNN's fused CPU convolution."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def _activation(module: nn.Module) -> tuple[str, list[float]] | None:
    """oneDNN's name and scalars for an activation it can fuse (ReLU, ReLU6, Hardtanh), else None."""
    if isinstance(module, nn.ReLU):
        return "relu", []
    if isinstance(module, nn.Hardtanh):  # ReLU6 is a Hardtanh(0, 6)
        return "hardtanh", [float(module.min_val), float(module.max_val)]
    return None


_FOR = "_fused_grad_for"  # tag on a gradient this module computed: the autograd node it was computed for


class _ConvActivation(torch.autograd.Function):
    """y = act(conv(x)) (attr "none": y = conv(x)); the gradient flows to x only (the nets are frozen).

    A gradient that arrives tagged for this very node was computed by the next `_ConvActivation` for it
    alone (see the module docstring), so the activation's backward overwrites it instead of allocating."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv: nn.Conv2d, attr: str, scalars: list[float]):
        y = torch.ops.mkldnn._convolution_pointwise(x, weight, bias, conv.padding, conv.stride, conv.dilation,
                                                     conv.groups, attr, scalars, "")
        ctx.save_for_backward(x, weight, y)
        ctx.conv, ctx.attr, ctx.scalars = conv, attr, scalars
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, y = ctx.saved_tensors
        own = getattr(grad, _FOR, None) is ctx
        if ctx.attr == "relu":
            grad = (torch.ops.aten.threshold_backward.grad_input(grad, y, 0, grad_input=grad) if own
                    else torch.ops.aten.threshold_backward(grad, y, 0))
        elif ctx.attr == "hardtanh":
            grad = (torch.ops.aten.hardtanh_backward.grad_input(grad, y, *ctx.scalars, grad_input=grad) if own
                    else torch.ops.aten.hardtanh_backward(grad, y, *ctx.scalars))
        c = ctx.conv
        grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, c.stride, c.padding, c.dilation, False,
                                                     [0, 0], c.groups, [True, False, False])[0]
        if x.grad_fn is not None:
            setattr(grad_x, _FOR, x.grad_fn)
        return grad_x, None, None, None, None, None


class FusedConv(nn.Module):
    """`conv` followed by `activation` (nn.Identity: none), one oneDNN kernel for float32 CPU tensors."""

    def __init__(self, conv: nn.Conv2d, activation: nn.Module):
        super().__init__()
        self.conv, self.activation = conv, activation
        self._attr = _activation(activation) or ("none", [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        if x.device.type != "cpu" or x.dtype != torch.float32 or w.dtype != torch.float32:
            return self.activation(self.conv(x))
        attr, scalars = self._attr
        return _ConvActivation.apply(x, w, self.conv.bias, self.conv, attr, scalars)


def _fusable(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and conv.weight.dtype == torch.float32 and conv.weight.device.type == "cpu")


def fuse_activations(net: nn.Module, keep: Collection[str] = ()) -> int:
    """Fuse each conv that an activation follows in an nn.Sequential (with only nn.Identity between, such as a
    folded BatchNorm), in place; returns how many. Skipped where the conv or an Identity between is named in
    `keep` (a captured pre-activation output would change) and on builds without oneDNN. The other convs of
    a Sequential become a `FusedConv` without an activation (the same kernel as before), so that the
    gradient they pass back is tagged too."""
    if not fusion_available():
        return 0
    n = 0
    for prefix, parent in list(net.named_modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for i, (conv_name, conv) in enumerate(children):
            if not _fusable(conv):
                continue
            j = i + 1
            while j < len(children) and isinstance(children[j][1], nn.Identity):
                j += 1
            names = [f"{prefix}.{name}" if prefix else name for name, _ in children[i:j]]
            if j == len(children) or _activation(children[j][1]) is None:
                if names[0] not in keep:  # a plain conv: its input gradient gets the tag too
                    setattr(parent, conv_name, FusedConv(conv, nn.Identity()))
                continue
            if any(name in keep for name in names):
                continue
            act_name, act = children[j]
            setattr(parent, conv_name, FusedConv(conv, act))
            setattr(parent, act_name, nn.Identity())
            n += 1
    return n
