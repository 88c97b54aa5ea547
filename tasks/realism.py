"""How much a set of synthesized class images looks like real photos of the class: the DGN-AM benchmark's
measures (benchmarks/dgn_quality.py), on greyscale or colour images as float tensors [N, C, H, W] in [0, 1].

- `judged_probability`: a judge classifier's mean probability of the intended class over small shifts and
  scalings of each image (a picture that only works at one exact placement is not a recognizable object);
- `nearest_distances`: each image's Euclidean pixel distance to its nearest image of a reference set (the
  realism ratio compares its median with real photos'; the copy check compares its minimum with the 5th
  percentile of real photos' own distances to the training set);
- `sharpness`: mean gradient magnitude (finite differences), which a blurred class average fails;
- `pairwise_diversity`: mean pairwise pixel distance between the images of one class (its seeds).

Pure tensors in, numbers out; nothing here reads files.
"""

from __future__ import annotations

import itertools
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["views", "judged_probability", "nearest_distances", "sharpness", "pairwise_diversity"]


def views(x01: torch.Tensor, shifts: tuple[int, ...] = (-2, 0, 2), scales: tuple[float, ...] = (0.9, 1.0, 1.1),
          fill: float = 0.0) -> torch.Tensor:
    """Every (dy, dx, scale) view of each image: [V, N, C, H, W], V = len(shifts)^2 * len(scales); pixels
    from outside the image are `fill` (Fashion-MNIST's background is black)."""
    n, _, h, w = x01.shape
    out = []
    for dy, dx, s in itertools.product(shifts, shifts, scales):
        theta = torch.tensor([[1 / s, 0, -2 * dx / w], [0, 1 / s, -2 * dy / h]], dtype=x01.dtype)
        grid = F.affine_grid(theta.expand(n, 2, 3), list(x01.shape), align_corners=False)
        out.append(F.grid_sample(x01 - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill)
    return torch.stack(out)


@torch.no_grad()
def judged_probability(probs_of: Callable[[torch.Tensor], torch.Tensor], x01: torch.Tensor,
                       classes: torch.Tensor, **view_kwargs) -> torch.Tensor:
    """[N]: per image, the judge's probability of `classes[i]`, averaged over `views` of the image;
    `probs_of` maps [M, C, H, W] images in [0, 1] to probabilities [M, classes]."""
    v = views(x01, **view_kwargs)
    p = probs_of(v.flatten(0, 1)).view(v.shape[0], v.shape[1], -1)
    return p[:, torch.arange(len(classes)), classes].mean(0)


@torch.no_grad()
def nearest_distances(x01: torch.Tensor, reference: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor,
                                                                                                torch.Tensor]:
    """(distance [N], index [N]) of each image's nearest reference image (Euclidean, pixels in [0, 1])."""
    q = x01.flatten(1).double()
    best_d = torch.full((len(q),), float("inf"), dtype=torch.float64)
    best_i = torch.zeros(len(q), dtype=torch.long)
    for start in range(0, len(reference), chunk):
        r = reference[start:start + chunk].flatten(1).double()
        r = r / 255.0 if reference.dtype == torch.uint8 else r
        d, i = torch.cdist(q, r).min(1)
        better = d < best_d
        best_d = torch.where(better, d, best_d)
        best_i = torch.where(better, i + start, best_i)
    return best_d, best_i


def sharpness(x01: torch.Tensor) -> torch.Tensor:
    """[N]: mean absolute difference between horizontally and vertically adjacent pixels."""
    dy = (x01[..., 1:, :] - x01[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (x01[..., :, 1:] - x01[..., :, :-1]).abs().flatten(1).mean(1)
    return (dx + dy) / 2


def pairwise_diversity(x01: torch.Tensor) -> float:
    """Mean Euclidean pixel distance over the pairs of images in `x01` (one class's seeds); 0 for one image."""
    if len(x01) < 2:
        return 0.0
    d = torch.cdist(x01.flatten(1).double(), x01.flatten(1).double())
    n = len(x01)
    return float(d.sum() / (n * (n - 1)))
