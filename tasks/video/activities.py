"""Procedural activity clips: one object per clip moving left, right, up or down, growing, shrinking or blinking.

Every clip shows one shape (square, disc, triangle, cross) in a random bright colour on a random dull
background with a little pixel noise, doing one of the activities over T frames. Labels come two ways:
`motion` (which activity: only frame order tells left from right and growing from shrinking) and `shape`
(what the object looks like: any single frame tells). The two demo models (models/video_demo.py) learn one
each. Clips are a pure function of (seed, n, frames, size): values in [0, 1], `[n, T, 3, S, S]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["MOTIONS", "SHAPES", "Clips", "make_clips"]

MOTIONS = ("left", "right", "up", "down", "grow", "shrink", "blink")
SHAPES = ("square", "disc", "triangle", "cross")


@dataclass
class Clips:
    clips: torch.Tensor  # float [n, T, 3, S, S] in [0, 1]
    motion: torch.Tensor  # long [n], index into MOTIONS
    shape: torch.Tensor  # long [n], index into SHAPES


def _masks(shape: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Boolean masks of each clip's shape; dx, dy [n, T, S, S] offsets from the centre, r [n, T, 1, 1]."""
    ax, ay = dx.abs(), dy.abs()
    square = (ax <= r) & (ay <= r)
    disc = dx * dx + dy * dy <= r * r
    triangle = (dy >= -r) & (dy <= r) & (ax <= (dy + r) / 2)
    cross = ((ax <= r) & (ay <= r / 3)) | ((ay <= r) & (ax <= r / 3))
    s = shape.view(-1, 1, 1, 1)
    return torch.where(s == 0, square, torch.where(s == 1, disc, torch.where(s == 2, triangle, cross)))


def make_clips(n: int, seed: int, frames: int = 16, size: int = 32, noise: float = 0.03) -> Clips:
    """`n` clips with balanced random labels, drawn from `seed` alone."""
    g = torch.Generator().manual_seed(seed)

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*(shape or (n,)), generator=g)

    motion = torch.randint(len(MOTIONS), (n,), generator=g)
    shape = torch.randint(len(SHAPES), (n,), generator=g)
    t = torch.linspace(0, 1, frames).view(1, frames)  # progress through the clip
    r0 = u(0.16, 0.24).view(n, 1) * size
    cx, cy = u(0.3, 0.7).view(n, 1) * size, u(0.3, 0.7).view(n, 1) * size
    start, travel = u(0.2, 0.3).view(n, 1) * size, u(0.4, 0.55).view(n, 1) * size
    along = start + travel * t  # position along the direction of travel
    m = motion.view(n, 1)
    x = torch.where(m == 0, size - along, torch.where(m == 1, along, cx.expand(n, frames)))
    y = torch.where(m == 2, size - along, torch.where(m == 3, along, cy.expand(n, frames)))
    small, big = u(0.1, 0.14).view(n, 1) * size, u(0.3, 0.4).view(n, 1) * size
    r = torch.where(m == 4, small + (big - small) * t, torch.where(m == 5, big - (big - small) * t, r0.expand(n, frames)))
    period = torch.randint(2, 4, (n, 1), generator=g)
    phase = torch.randint(0, 2, (n, 1), generator=g)
    step = torch.arange(frames).view(1, frames)
    visible = torch.where(m == 6, ((step // period + phase) % 2) == 0, torch.ones(n, frames, dtype=torch.bool))

    grid = torch.arange(size, dtype=torch.float32) + 0.5
    dx = grid.view(1, 1, 1, size) - x.view(n, frames, 1, 1)
    dy = grid.view(1, 1, size, 1) - y.view(n, frames, 1, 1)
    mask = _masks(shape, dx, dy, r.view(n, frames, 1, 1)) & visible.view(n, frames, 1, 1)

    hue = u(0, 2 * math.pi)
    fg = torch.stack([0.6 + 0.4 * torch.cos(hue + k * 2 * math.pi / 3) for k in range(3)], 1).clamp(0, 1)
    bg = u(0.1, 0.45, n, 3)
    clips = torch.where(mask.unsqueeze(2), fg.view(n, 1, 3, 1, 1), bg.view(n, 1, 3, 1, 1))
    clips = clips + noise * torch.randn(clips.shape, generator=g)
    return Clips(clips.clamp(0, 1), motion, shape)
