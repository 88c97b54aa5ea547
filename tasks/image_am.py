"""Regularized image-space activation maximization (Yosinski et al. 2015).

Update x <- r_theta(x + eta * da/dx) on mean-centred 0-255 pixels, r_theta composed of L2 decay, a Gaussian
blur every `blur_every` steps, clipping of small-norm pixels and of small-contribution pixels, then a clamp
to the valid pixel range. The four Table 1 presets are selectable by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from models.errors import UserInputError

from .loop import Parameterization, StepRule
from .regularizers import (clamp_range, clip_small_contribution, clip_small_norm, gaussian_blur, l2_decay)

__all__ = ["ImageAMConfig", "PRESETS", "image_parameterization"]

# Table 1 of Yosinski et al. 2015, (decay, blur_width, blur_every, norm_pct, contrib_pct), named after the
# style each produced in the paper's Figure 4 (rows top to bottom = quadrants TL, TR, BL, BR).
PRESETS: dict[str, tuple[float, float, int, float, float]] = {
    "sparse": (0.0, 0.5, 4, 50.0, 0.0),        # row 1, top-left: a sparse set of important regions
    "highfreq": (0.3, 0.0, 0, 20.0, 0.0),      # row 2, top-right: high-frequency patterns
    "lowfreq": (0.0001, 1.0, 4, 0.0, 0.0),     # row 3, bottom-left: the paper's best single set
    "contrib": (0.0, 0.5, 4, 0.0, 90.0),       # row 4, bottom-right: small-contribution clipping
    "none": (0.0, 0.0, 0, 0.0, 0.0),           # plain gradient ascent, for ablations
}


@dataclass(frozen=True)
class ImageAMConfig:
    """Hyperparameters of image-space AM; `from_preset` fills the regularizers from Table 1.

    The step is normalized per image by default (lr = mean |change| per step in 0-255 pixel levels), so one
    lr works across nets with different input scales; `normalize=False` with lr ~ 100 is the toolbox's raw
    step for Caffe nets.
    """

    preset: str = "lowfreq"
    decay: float = 0.0001
    blur_width: float = 1.0
    blur_every: int = 4
    norm_pct: float = 0.0
    contrib_pct: float = 0.0
    lr: float = 6.0
    lr_end: float | None = 1.0
    normalize: bool = True
    init_std: float = 10.0

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ImageAMConfig":
        if name not in PRESETS:
            raise UserInputError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
        decay, bw, be, npct, cpct = PRESETS[name]
        base = cls(preset=name, decay=decay, blur_width=bw, blur_every=be, norm_pct=npct, contrib_pct=cpct)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def rule(self) -> StepRule:
        return StepRule(self.lr, self.lr_end, self.normalize)

    def hyperparams(self) -> dict:
        return asdict(self)


def image_parameterization(cfg: ImageAMConfig, seeds: list[int], size: tuple[int, int],
                           mean01: tuple[float, float, float], device: torch.device) -> Parameterization:
    """Pixels for each seed, initialised N(0, init_std) around the mean colour (per-seed generator)."""
    h, w = size
    init = torch.stack([torch.randn(3, h, w, generator=torch.Generator().manual_seed(s)) for s in seeds])
    x = (init * cfg.init_std).to(device)
    mean255 = torch.tensor(mean01, device=device).view(1, 3, 1, 1) * 255.0
    lo, hi = -mean255, 255.0 - mean255
    clamp_range(x, lo, hi)

    def render(p: torch.Tensor) -> torch.Tensor:
        return (p + mean255) / 255.0

    def project(p: torch.Tensor, grad: torch.Tensor, t: int) -> None:
        l2_decay(p, cfg.decay)
        if cfg.blur_every and cfg.blur_width > 0 and t % cfg.blur_every == 0:
            gaussian_blur(p, cfg.blur_width)
        clip_small_norm(p, cfg.norm_pct)
        clip_small_contribution(p, grad, cfg.contrib_pct)
        clamp_range(p, lo, hi)

    return Parameterization(x, render, None, project)
