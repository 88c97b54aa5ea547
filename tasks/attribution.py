"""Where in an input image a unit's activation comes from: gradient x input, smoothed.

For row i of a batch, the activation a_i of one unit (a conv unit at its top-k position, or a fully connected
unit) is differentiated with respect to the net's (normalized) input x_i; the attribution map is
|sum over channels of x_i * da_i/dx_i| (gradient x input, Shrikumar et al. 2016: each pixel's first-order
contribution relative to the dataset-mean image, which normalization maps to 0), Gaussian-smoothed with
sigma = `SIGMA_FRACTION` of the image side (4 px at 224), and scaled to [0, 1] per image. It plays the part
of the Deep Visualization Toolbox's deconvolution of the top-9 images. One forward and one backward pass per
batch of (image, unit) rows; rows never mix.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from .regularizers import gaussian_blur

__all__ = ["gradient_x_input", "METHOD", "SIGMA_FRACTION"]

METHOD = "gradient x input (Shrikumar et al. 2016), |sum over colour channels|, Gaussian-smoothed"
SIGMA_FRACTION = 1 / 56


def gradient_x_input(forward: Callable[[torch.Tensor], Mapping[str, torch.Tensor]], x: torch.Tensor,
                     units: Sequence[tuple[str, int, int | None, int | None]]) -> torch.Tensor:
    """[B, C, H, W] net inputs and one (layer, channel, y, x) per row -> [B, H, W] maps in [0, 1].
    `forward` maps inputs to the captured layers (a models.capture.Capture call)."""
    x = x.detach().clone().requires_grad_(True)
    acts = forward(x)
    rows = []
    for i, (layer, channel, y, xx) in enumerate(units):
        a = acts[layer][i, channel]
        rows.append(a[y, xx] if y is not None else (a if a.dim() == 0 else a.flatten().max()))
    (grad,) = torch.autograd.grad(torch.stack(rows).sum(), x)
    attr = (grad * x.detach()).sum(1, keepdim=True).abs()
    gaussian_blur(attr, max(0.5, SIGMA_FRACTION * max(x.shape[-2:])))
    top = attr.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (attr / top)[:, 0]
