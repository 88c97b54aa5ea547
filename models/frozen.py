"""Freezing a network for probing: BatchNorm in eval mode becomes a precomputed per-channel affine map.

An eval-mode BatchNorm computes (x - mean) / sqrt(var + eps) * w + b. `FrozenBatchNorm` precomputes the
scale and shift once, so forward and backward are one multiply-add each instead of the generic batch-norm
kernels (which dominate the backward pass of depthwise nets like MobileNetV2 on a CPU). The module keeps
its name and its output, so layer addresses and captured values are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FrozenBatchNorm", "freeze_batchnorm"]


class FrozenBatchNorm(nn.Module):
    """Eval-mode BatchNorm2d/3d as x * scale + shift (buffers precomputed from the running statistics)."""

    def __init__(self, bn: nn.BatchNorm2d | nn.BatchNorm3d):
        super().__init__()
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.detach()
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias.detach()
        shape = (1, -1) + (1,) * (3 if isinstance(bn, nn.BatchNorm3d) else 2)
        self.register_buffer("scale", scale.reshape(shape).clone())
        self.register_buffer("shift", shift.reshape(shape).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)


def freeze_batchnorm(net: nn.Module) -> int:
    """Replace every BatchNorm2d/3d with running statistics by a FrozenBatchNorm, in place; returns how many."""
    n = 0
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (nn.BatchNorm2d, nn.BatchNorm3d)) and child.running_mean is not None:
                setattr(module, child_name, FrozenBatchNorm(child))
                n += 1
    return n
