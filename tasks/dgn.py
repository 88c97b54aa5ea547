"""DGN-AM (Nguyen et al. 2016): optimize the code y of a generator G so that G(y) maximizes a unit.

Objective Phi_h(G(y)) - lambda*||y|| (the paper, `l2="paper"`), or the released code's update: normalized
gradient steps and y <- 0.99*y after every step (`l2="decay"`, the default, as in act_max.py). Every code
unit is clipped to [lower, upper] after every step (upper = 3 sigma from a bounds file, or a constant), and
the learning rate decays linearly. The returned image is the last one, as the authors' code does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from models.errors import UserInputError

from .loop import Parameterization, StepRule, Views
from .transforms import parse_transforms

__all__ = ["DGNConfig", "dgn_parameterization", "fit_to", "code_clipper", "initial_codes"]


@dataclass(frozen=True)
class DGNConfig:
    """DGN-AM hyperparameters; defaults follow the released code's CaffeNet fc8 settings."""

    lr: float = 8.0
    lr_end: float = 1e-10
    normalize: bool = True  # released code: step = lr * g / mean|g|
    l2: str = "decay"  # "decay": y *= decay_factor per step; "paper": penalty lambda*||y||
    l2_lambda: float = 0.005
    decay_factor: float = 0.99
    upper: float | None = None  # constant upper bound, used when no per-unit bounds are given
    lower: float = 0.0
    init_std: float = 1.0
    bounds_digest: str | None = None  # sha256 of the bounds file, so a new file makes a new key
    transforms: str = "none"  # robustness views of G(y) at each step (tasks/transforms.py); not in the paper

    def __post_init__(self):
        if self.l2 not in ("decay", "paper"):
            raise UserInputError(f"unknown --l2 {self.l2!r}; use 'decay' (released code) or 'paper' (lambda*||y||)")
        parse_transforms(self.transforms)

    @property
    def rule(self) -> StepRule:
        return StepRule(self.lr, self.lr_end, self.normalize)

    def views(self, seeds: list[int], size: tuple[int, int] | None = None, steps: int | None = None,
              fixed: bool = False) -> Views | None:
        """The per-step robustness views (None without transforms); `size` and `steps` are unused (renders are
        net-sized; DGN-AM has no coarse steps)."""
        return parse_transforms(self.transforms).views(seeds)

    def hyperparams(self) -> dict:
        """Every field; `transforms` only when on (keys of earlier runs stay valid)."""
        hp = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if self.transforms == "none":
            del hp["transforms"]
        return hp


def fit_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop (as the authors crop 256 -> 227) or, when smaller, bilinearly resize to `size`."""
    h, w = x.shape[-2:]
    th, tw = size
    if (h, w) == (th, tw):
        return x
    if h >= th and w >= tw:
        top, left = (h - th) // 2, (w - tw) // 2
        return x[..., top:top + th, left:left + tw]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def code_clipper(code_shape: tuple[int, ...], device: torch.device, upper: np.ndarray | None,
                 constant_upper: float | None, lower: float) -> Callable[[torch.Tensor], None]:
    """In-place projection of codes [B, *code_shape] onto [lower, upper] (per-unit `upper` from a bounds
    file, else `constant_upper`, else no upper bound)."""
    if upper is not None:
        hi = torch.tensor(np.array(upper, dtype=np.float32), device=device).reshape(1, *code_shape)
    elif constant_upper is not None:
        hi = torch.full((1, *code_shape), float(constant_upper), device=device)
    else:
        hi = torch.full((1, *code_shape), float("inf"), device=device)
    lo = torch.full_like(hi, lower)
    if bool((hi < lo).any()):
        raise UserInputError(f"code bounds have upper < lower ({lower}) for some units; check the bounds file")

    def clip(p: torch.Tensor) -> None:
        torch.maximum(p, lo, out=p)
        torch.minimum(p, hi, out=p)
    return clip


def initial_codes(code_shape: tuple[int, ...], seeds: list[int], std: float, device: torch.device) -> torch.Tensor:
    """One N(0, std) code per seed, each from its own generator (so a code depends on its seed alone)."""
    init = torch.stack([torch.randn(*code_shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    return (init * std).to(device)


def dgn_parameterization(cfg: DGNConfig, generator: torch.nn.Module, to_image01: Callable,
                         code_shape: tuple[int, ...], seeds: list[int], size: tuple[int, int],
                         device: torch.device, upper: np.ndarray | None = None,
                         init: torch.Tensor | None = None) -> Parameterization:
    """Codes y ~ N(0, init_std) per seed (or `init` [B, *code_shape], e.g. the encoder's codes of real
    photos, as the released code's start image), clipped to the bounds; render = fit_to(to_image01(G(y)))."""
    y = initial_codes(code_shape, seeds, cfg.init_std, device) if init is None else \
        init.detach().to(device, torch.float32).reshape(len(seeds), *code_shape).clone()
    clip = code_clipper(code_shape, device, upper, cfg.upper, cfg.lower)
    clip(y)

    def render(p: torch.Tensor) -> torch.Tensor:
        return fit_to(to_image01(generator(p)), size)

    def project(p: torch.Tensor, _grad: torch.Tensor, _t: int) -> None:
        clip(p)
        if cfg.l2 == "decay":
            p.mul_(cfg.decay_factor)
            clip(p)  # a no-op when lower <= 0; keeps the bounds exact otherwise

    penalty = None
    if cfg.l2 == "paper":
        def penalty(p: torch.Tensor) -> torch.Tensor:
            return cfg.l2_lambda * p.flatten(1).norm(dim=1)

    return Parameterization(y, render, penalty, project)
