"""Per-unit statistics of activations over a set of images, exactly mergeable across shards.

`UnitStats` holds, per unit: count, mean and M2 (tasks/stats.RunningStats: Chan's exact pairwise merge),
the exact minimum and maximum, how many values were positive, and a fixed-bin histogram for quantiles.

Quantiles come from a fixed-bin histogram on a logarithmic scale (the bucket layout of DDSketch, Masson et
al. 2019): bucket i > 0 holds values in (g^(i-1), g^i] with g = (1 + a) / (1 - a), negative values mirror
it, and |v| < MIN_ABS falls in one zero bucket. The buckets do not depend on the data, so merging is adding
counts: exact, in any order. A quantile is the bucket that holds the element of rank floor(q (n - 1)) of the
sorted values (numpy's method="lower"), reported as the bucket's midpoint 2 g^i / (g + 1) and clipped to
[min, max] (the ranks 0 and n - 1 are the exact min and max). That is within a relative error of
a = REL_ERROR of the true value for |v| >= MIN_ABS, and within MIN_ABS of it below; values beyond MAX_ABS
share the outermost bucket (the clip to the exact min/max keeps the extreme quantiles right).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stats import RunningStats

__all__ = ["UnitStats", "QUANTILES", "REL_ERROR", "MIN_ABS", "MAX_ABS", "N_BINS"]

REL_ERROR = 0.01
MIN_ABS = 1e-3
MAX_ABS = 1e5
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)

_GAMMA = (1 + REL_ERROR) / (1 - REL_ERROR)
_LOG_GAMMA = np.log(_GAMMA)
_I_MIN = int(np.ceil(np.log(MIN_ABS) / _LOG_GAMMA))  # the lowest positive bucket
_I_MAX = int(np.ceil(np.log(MAX_ABS) / _LOG_GAMMA))
_SIDE = _I_MAX - _I_MIN + 1
N_BINS = 2 * _SIDE + 1  # negative buckets (most negative first), the zero bucket, positive buckets


def _bucket(v: np.ndarray) -> np.ndarray:
    """Bin of each value; bins are in value order."""
    a = np.abs(v)
    i = np.ceil(np.log(np.maximum(a, MIN_ABS)) / _LOG_GAMMA).astype(np.int64)
    i = np.clip(i, _I_MIN, _I_MAX) - _I_MIN  # 0.._SIDE-1
    return np.where(a < MIN_ABS, _SIDE, np.where(v > 0, _SIDE + 1 + i, _SIDE - 1 - i))


def _midpoint(b: np.ndarray) -> np.ndarray:
    side = np.where(b > _SIDE, b - _SIDE - 1, _SIDE - 1 - b) + _I_MIN
    mag = 2 * _GAMMA ** side / (_GAMMA + 1)
    return np.where(b == _SIDE, 0.0, np.where(b > _SIDE, mag, -mag))


@dataclass
class UnitStats:
    moments: RunningStats  # count, mean, M2, max
    minimum: np.ndarray  # float64 [U]
    positive: np.ndarray  # int64 [U]: values > 0
    hist: np.ndarray  # int32 [U, N_BINS] (int32: a shard's result travels dense; 2^31 images is far off)

    @classmethod
    def empty(cls, units: int) -> "UnitStats":
        return cls(RunningStats.empty(units), np.full(units, np.inf), np.zeros(units, np.int64),
                   np.zeros((units, N_BINS), np.int32))

    @classmethod
    def of(cls, values: np.ndarray) -> "UnitStats":
        """Statistics of [N, U] values (N images, U units); NaN values are not allowed."""
        v = np.asarray(values, np.float64)
        n, u = v.shape
        flat = (_bucket(v) + np.arange(u) * N_BINS).ravel()
        hist = np.bincount(flat, minlength=u * N_BINS).astype(np.int32).reshape(u, N_BINS)
        return cls(RunningStats.of(v), v.min(0) if n else np.full(u, np.inf), (v > 0).sum(0).astype(np.int64),
                   hist)

    @property
    def count(self) -> int:
        return self.moments.count

    def merge(self, other: "UnitStats") -> "UnitStats":
        return UnitStats(self.moments.merge(other.moments), np.minimum(self.minimum, other.minimum),
                         self.positive + other.positive, self.hist + other.hist)

    def quantiles(self, qs=QUANTILES) -> np.ndarray:
        """[U, len(qs)] estimates (see the module docstring for their accuracy); NaN when count is 0."""
        n = self.count
        out = np.full((self.hist.shape[0], len(qs)), np.nan)
        if n == 0:
            return out
        cum = np.cumsum(self.hist, axis=1)
        for j, q in enumerate(qs):
            rank = int(np.floor(q * (n - 1)))
            b = (cum <= rank).sum(axis=1)  # the first bin whose cumulative count exceeds the rank
            out[:, j] = np.clip(_midpoint(b), self.minimum, self.moments.max)
            if rank in (0, n - 1):  # the extremes are known exactly
                out[:, j] = self.minimum if rank == 0 else self.moments.max
        return out

    def positive_share(self) -> np.ndarray:
        return self.positive / self.count if self.count else np.full(len(self.positive), np.nan)
