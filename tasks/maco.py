"""MACO: magnitude-constrained Fourier images (Fel et al. 2023, "Unlocking Feature Visualization for Deeper
Networks with MAgnitude Constrained Optimization").

Only the phase of each image's spectrum is optimized; its magnitude stays a fixed natural-image magnitude
spectrum, so every image keeps the energy per frequency of real photos, which is what lets feature visualization
stay readable on deep nets and ViTs where plain Fourier ascent drifts into high-frequency noise.

Render, per item (as the authors' reference code): the phase standardized (mean 0, std 1), the spectrum
`magnitude * exp(i phase)` inverted with `irfft2`, the image standardized, mixed to RGB with the square root of
ImageNet's colour covariance (the magnitude lives in that decorrelated colour space; greyscale images skip it),
and squashed by a sigmoid into (0, 1). Phases start N(0, 1) from each item's seed.

`natural_magnitude` estimates the magnitude from photos (tensors in, tensor out); the shipped spectra in
`models/spectra/` were estimated from the offline photos and Fashion-MNIST (`python -m pipelines.spectra`),
and are resized bilinearly to the rendered size, as the reference code resizes its ImageNet spectrum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .fourier import COLOR_SQRT_COV
from .loop import Parameterization

__all__ = ["natural_magnitude", "fit_magnitude", "render_phase", "maco_parameterization", "initial_phases"]

_EPS = 1e-5


def _mix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ck,bkhw->bchw", matrix.to(x.device, x.dtype), x)


def _standardize(x: torch.Tensor) -> torch.Tensor:
    """Each row to mean 0 and std 1 over all its values."""
    flat = x.flatten(1)
    mean = flat.mean(1).view(-1, *([1] * (x.dim() - 1)))
    std = flat.std(1, unbiased=False).view(-1, *([1] * (x.dim() - 1)))
    return (x - mean) / (std + _EPS)


def natural_magnitude(images01: torch.Tensor) -> torch.Tensor:
    """The mean |rfft2| [C, H, W//2+1] of [0, 1] images [N, C, H, W], each standardized, for 3 channels taken
    into the decorrelated colour space (where `render_phase` puts its spectrum), and windowed."""
    x = _standardize(images01.float())
    if x.shape[1] == 3:
        x = _mix(x, torch.linalg.inv(COLOR_SQRT_COV))
    # a Hann window first: a photo's borders would otherwise put a bright cross on the spectrum's axes, which
    # every render would then draw as straight horizontal and vertical lines
    h, w = x.shape[-2:]
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    x = x * window / window.pow(2).mean().sqrt()
    return torch.fft.rfft2(x).abs().mean(0)


def fit_magnitude(magnitude: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`magnitude` [C, h, w//2+1] resized (bilinear) to the spectrum of a `size` image, [C, H, W//2+1]."""
    shape = (size[0], size[1] // 2 + 1)
    if tuple(magnitude.shape[-2:]) == shape:
        return magnitude
    return F.interpolate(magnitude[None], size=shape, mode="bilinear", align_corners=False)[0]


def render_phase(phase: torch.Tensor, magnitude: torch.Tensor, size: tuple[int, int],
                 color: torch.Tensor | None = None) -> torch.Tensor:
    """phases [B, C, H, W//2+1] -> images in (0, 1) [B, C, H, W] (module docstring). `color`: COLOR_SQRT_COV
    already on the phases' device (else it is copied there at every call)."""
    phase = _standardize(phase)
    spectrum = torch.polar(magnitude.expand_as(phase), phase)
    x = _standardize(torch.fft.irfft2(spectrum, s=size))
    if x.shape[1] == 3:
        x = _mix(x, COLOR_SQRT_COV if color is None else color)
    return torch.sigmoid(x)


def initial_phases(seeds: list[int], size: tuple[int, int], channels: int, device: torch.device) -> torch.Tensor:
    """N(0, 1) phases, one generator per seed, so an item's start does not depend on its batch."""
    shape = (channels, size[0], size[1] // 2 + 1)
    return torch.stack([torch.randn(*shape, generator=torch.Generator().manual_seed(s)) for s in seeds]).to(device)


def maco_parameterization(seeds: list[int], size: tuple[int, int], device: torch.device, magnitude: torch.Tensor,
                          *, fourier_size: int | None = None, init: torch.Tensor | None = None) -> Parameterization:
    """Phases for each seed, rendering `size` images through the fixed `magnitude` [C, h, w'] (any size; fitted
    to the rendered one). `fourier_size` S renders S x S and upsamples to `size` (the small image is the
    `source` views sample from), as the Fourier parameterization does. `init` [B, C, H, W] in [0, 1]: start from
    the phases of these images (their magnitude is replaced by the natural one)."""
    channels = magnitude.shape[0]
    small = fourier_size is not None and fourier_size < size[0]
    inner = (fourier_size, max(1, round(fourier_size * size[1] / size[0]))) if small else tuple(size)
    mag = fit_magnitude(magnitude.to(device, torch.float32), inner)
    color = COLOR_SQRT_COV.to(device)  # once, not at every render
    if init is None:
        phase = initial_phases(seeds, inner, channels, device)
    else:
        start = init.to(device, torch.float32)
        if tuple(start.shape[-2:]) != inner:
            start = F.interpolate(start, size=inner, mode="area")
        x = _standardize(start)
        if channels == 3:
            x = _mix(x, torch.linalg.inv(COLOR_SQRT_COV))
        phase = torch.fft.rfft2(x).angle().contiguous()

    def source(p: torch.Tensor) -> torch.Tensor:
        return render_phase(p, mag, inner, color)

    if inner == tuple(size):
        return Parameterization(phase, source)

    def render(p: torch.Tensor) -> torch.Tensor:
        return F.interpolate(source(p), size=size, mode="bilinear", align_corners=True)
    return Parameterization(phase, render, source=source)
