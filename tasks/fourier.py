"""The decorrelated Fourier image parameterization of Lucid / Lucent (Olah et al. 2017, "Feature Visualization").

Each item optimizes real-FFT coefficients `spectrum [B, C, H, W//2+1, 2]` (C = the net's channels). Rendering
scales them by 1 / max(f, 1/max(H, W))^decay (so every frequency band moves at about the same rate under
gradient ascent, instead of high frequencies dominating as they do for pixels), inverts the FFT ('ortho'),
divides by Lucid's constant 4, mixes the three channels of an RGB image with the square root of ImageNet's
colour covariance (decorrelated colour; a greyscale image has no colours to decorrelate), and squashes through
a sigmoid into (0, 1). Initial coefficients are N(0, sd) from each item's own seed, so an item's start does
not depend on its batch. `image_to_spectrum` inverts the whole chain (the
round trip is exact up to float error for images strictly inside (0, 1)).

The spectrum may describe a smaller image than the net takes (`fourier_size`): it is rendered at that size and
upsampled bilinearly to the net's input, as Lucent's `render_vis` does by default (a 128 px image for a
224 px net). Fewer, coarser degrees of freedom give larger, smoother structures that survive crops and blur.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .loop import Parameterization

__all__ = ["COLOR_SQRT_COV", "frequency_scale", "render_spectrum", "image_to_spectrum",
           "fourier_parameterization", "initial_spectra"]

# Square root of ImageNet's colour covariance (Lucid's `color_correlation_svd_sqrt`), columns normalized by
# the largest column norm, as Lucid and Lucent use it.
_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                          [0.27, 0.00, -0.05],
                          [0.27, -0.09, 0.03]])
COLOR_SQRT_COV = _SVD_SQRT / _SVD_SQRT.norm(dim=0).max()
_MAGIC = 4.0  # Lucid's constant: the ortho inverse FFT of the N(0, sd) spectrum is divided by it
INIT_EPS = 0.01  # a photo's start values stay this far from 0 and 1, where the sigmoid's gradient vanishes


def frequency_scale(h: int, w: int, decay: float = 1.0, device=None) -> torch.Tensor:
    """[H, W//2+1] factor 1 / max(f, 1/max(H, W))^decay, f = the 2-D frequency of each rfft2 bin."""
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    f = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / torch.clamp(f, min=1.0 / max(h, w)) ** decay


def _mix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Per-pixel colour mix: out[c] = sum_k matrix[c, k] * x[k] for x [B, 3, H, W]."""
    return torch.einsum("ck,bkhw->bchw", matrix.to(x.device, x.dtype), x)


def render_spectrum(spectrum: torch.Tensor, size: tuple[int, int], scale: torch.Tensor,
                    decorrelate: bool = True, color: torch.Tensor | None = None) -> torch.Tensor:
    """spectrum [B, C, H, W//2+1, 2] -> images in (0, 1), [B, C, H, W] (colour-decorrelated when C = 3).
    `color`: COLOR_SQRT_COV already on the spectrum's device (else it is copied there at every call)."""
    spec = torch.view_as_complex(spectrum.contiguous()) * scale
    x = torch.fft.irfft2(spec, s=size, norm="ortho") / _MAGIC
    if decorrelate and x.shape[1] == 3:
        x = _mix(x, COLOR_SQRT_COV if color is None else color)
    return torch.sigmoid(x)


def image_to_spectrum(x01: torch.Tensor, scale: torch.Tensor, decorrelate: bool = True,
                      eps: float = 1e-6) -> torch.Tensor:
    """The spectrum whose render is `x01` [B, C, H, W] (values clamped into (eps, 1 - eps) first)."""
    x = torch.logit(x01.clamp(eps, 1 - eps))
    if decorrelate and x.shape[1] == 3:
        x = _mix(x, torch.linalg.inv(COLOR_SQRT_COV))
    spec = torch.fft.rfft2(x * _MAGIC, norm="ortho") / scale
    return torch.view_as_real(spec).contiguous()


def initial_spectra(seeds: list[int], size: tuple[int, int], sd: float, device: torch.device,
                    channels: int = 3) -> torch.Tensor:
    """One N(0, sd) spectrum per seed, each from its own generator."""
    h, w = size
    shape = (channels, h, w // 2 + 1, 2)
    init = torch.stack([torch.randn(*shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    return (init * sd).to(device)


def fourier_parameterization(seeds: list[int], size: tuple[int, int], device: torch.device, *,
                             sd: float = 0.01, decay: float = 1.0, decorrelate: bool = True,
                             fourier_size: int | None = None, channels: int = 3,
                             init: torch.Tensor | None = None) -> Parameterization:
    """Decorrelated Fourier parameters for each seed, rendering `size` images; no projection step (the
    sigmoid keeps images valid). `fourier_size` S renders an S x S image (S x S*W/H for other aspect ratios)
    and upsamples it to `size` (bilinear, align_corners=True as Lucent; the small image is the
    parameterization's `source`, which robustness views sample from); None, or a size at least the input's,
    renders at `size`. `init` [B, C, H, W] in [0, 1]: start from the spectra of these images (resized to the
    rendered size, values kept within [INIT_EPS, 1 - INIT_EPS] so the sigmoid still passes gradients)."""
    if not math.isfinite(decay) or decay < 0:
        raise ValueError(f"decay {decay} must be a finite number >= 0")
    small = fourier_size is not None and fourier_size < size[0]  # never rendered larger than the input
    inner = (fourier_size, max(1, round(fourier_size * size[1] / size[0]))) if small else size
    scale = frequency_scale(*inner, decay=decay, device=device)
    color = COLOR_SQRT_COV.to(device)  # once, not at every render
    if init is None:
        spectrum = initial_spectra(seeds, inner, sd, device, channels)
    else:
        start = init.to(device, torch.float32)
        if tuple(start.shape[-2:]) != tuple(inner):
            start = F.interpolate(start, size=inner, mode="area")
        spectrum = image_to_spectrum(start, scale, decorrelate, eps=INIT_EPS)
    if tuple(inner) == tuple(size):
        return Parameterization(spectrum, lambda p: render_spectrum(p, size, scale, decorrelate, color))

    def source(p: torch.Tensor) -> torch.Tensor:
        return render_spectrum(p, inner, scale, decorrelate, color)

    def render(p: torch.Tensor) -> torch.Tensor:
        return F.interpolate(source(p), size=size, mode="bilinear", align_corners=True)
    return Parameterization(spectrum, render, source=source)
