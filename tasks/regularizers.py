"""The four image-space regularizers of Yosinski et al. (2015), as in-place operators r_theta(x).

All act on a batch of mean-centred images x [B, 3, H, W] on a 0-255 scale (the paper's space: zero is the
dataset mean colour) and treat every row independently: percentiles are per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["l2_decay", "gaussian_blur", "clip_small_norm", "clip_small_contribution", "clamp_range",
           "gaussian_kernel"]


def l2_decay(x: torch.Tensor, decay: float) -> None:
    """x <- (1 - decay) * x."""
    if decay:
        x.mul_(1.0 - decay)


def gaussian_kernel(sigma: float, device=None, dtype=None) -> torch.Tensor:
    """1-D normalized Gaussian, radius ceil(4 sigma) (scipy.ndimage's default truncation)."""
    radius = max(1, math.ceil(4.0 * sigma))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype or torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> None:
    """Separable Gaussian blur of width `sigma` pixels per channel, reflecting at the borders."""
    if sigma <= 0:
        return
    b, c, h, w = x.shape
    k = gaussian_kernel(sigma, x.device, x.dtype)
    r = k.numel() // 2
    if r >= min(h, w):  # reflect padding needs the image to be wider than the kernel radius
        r = min(h, w) - 1
        k = k[k.numel() // 2 - r: k.numel() // 2 + r + 1]
        k = k / k.sum()
    flat = x.reshape(b * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    x.copy_(flat.view(b, c, h, w))


def _zero_below_percentile(x: torch.Tensor, score: torch.Tensor, pct: float) -> None:
    """Zero the pixels (all channels) whose per-pixel `score` [B, H, W] is under the row's percentile."""
    thr = torch.quantile(score.flatten(1), pct / 100.0, dim=1).view(-1, 1, 1)
    x.mul_((score >= thr).unsqueeze(1).to(x.dtype))


def clip_small_norm(x: torch.Tensor, pct: float) -> None:
    """Zero pixels whose RGB norm is under the `pct` percentile of the image's pixel norms."""
    if pct > 0:
        _zero_below_percentile(x, x.norm(dim=1), pct)


def clip_small_contribution(x: torch.Tensor, grad: torch.Tensor, pct: float) -> None:
    """Zero pixels whose linearized contribution |sum_c x * grad| is under the `pct` percentile."""
    if pct > 0:
        _zero_below_percentile(x, (x * grad).sum(1).abs(), pct)


def clamp_range(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
    """Keep pixels valid: lo/hi are per-channel bounds shaped [1, 3, 1, 1]."""
    torch.maximum(x, lo, out=x)
    torch.minimum(x, hi, out=x)
