"""Exact, mergeable per-unit statistics of codes: count, mean, M2 (sum of squared deviations), max.

Shards are summarized independently and merged with Chan et al.'s pairwise update, which is exact: the
merged mean and variance equal those of the concatenated data (up to float64 rounding), never an average
of per-shard figures. Standard deviations are population ones (ddof = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.capture import Capture

__all__ = ["RunningStats", "encode"]


@dataclass
class RunningStats:
    count: int
    mean: np.ndarray  # float64 [D]
    m2: np.ndarray  # float64 [D]
    max: np.ndarray  # float64 [D]

    @classmethod
    def empty(cls, dim: int) -> "RunningStats":
        return cls(0, np.zeros(dim), np.zeros(dim), np.full(dim, -np.inf))

    @classmethod
    def of(cls, x: np.ndarray) -> "RunningStats":
        """Statistics of a batch of codes [N, D]."""
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            return cls.empty(int(np.prod(x.shape[1:])))
        x = x.reshape(len(x), -1)
        mean = x.mean(0)
        return cls(len(x), mean, ((x - mean) ** 2).sum(0), x.max(0))

    def merge(self, other: "RunningStats") -> "RunningStats":
        """The statistics of both sets together (Chan, Golub & LeVeque's pairwise formula)."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta ** 2 * (self.count * other.count / n)
        return RunningStats(n, mean, m2, np.maximum(self.max, other.max))

    def update(self, x: np.ndarray) -> "RunningStats":
        return self.merge(RunningStats.of(x))

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.count) if self.count else np.zeros_like(self.mean)

    def upper_bounds(self, k: float = 3.0) -> np.ndarray:
        """DGN-AM's clip bound per unit: mean + k * std (the lower bound is 0 for post-ReLU codes)."""
        return self.mean + k * self.std


@torch.no_grad()
def encode(net: torch.nn.Module, to_input, images01: torch.Tensor, layer: str, batch_size: int = 32,
           layouts=None) -> np.ndarray:
    """Codes E_l(x) [N, D] of [0, 1] RGB images at `layer` (flattened channel-first: `layouts`, the net's
    {layer: Layout}, as LoadedNet.layouts gives them), in batches, truncated forward."""
    out = []
    with Capture(net, [layer], layouts=layouts) as cap:
        for i in range(0, len(images01), batch_size):
            out.append(cap(to_input(images01[i:i + batch_size]))[layer].flatten(1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))
