"""Per-unit maxima over positions, and the exact, mergeable top-k of a stream of images.

`unit_maxima` turns one layer's output for a batch into one value per (image, unit): a conv unit's maximum
over its spatial map, with the row and column where it occurs (the first in row-major order when several
positions tie), or a fully connected unit's value.

`TopK` keeps, for each of U columns (units, or queries for nearest neighbours), the k best candidates seen
so far as (value, source index, y, x), ordered by value descending and then by source index ascending. A
source contributes at most one candidate per column, so this order is total, and merging two TopK values
(`merge`) keeps exactly the k best of their union: any split of the images into shards, merged in any
order, gives the same result as one brute-force top-k over all of them. NaN counts as -inf. Columns with
fewer than k candidates are padded with value -inf and index `NO_SOURCE`, which sort last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["unit_maxima", "TopK", "NO_SOURCE"]

NO_SOURCE = np.iinfo(np.int64).max


@torch.no_grad()
def unit_maxima(act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """[B, C, H, W] -> (max over H, W [B, C], its row [B, C], its column [B, C]); [B, C] -> (act, None, None)."""
    if act.dim() == 2:
        return act, None, None
    if act.dim() != 4:
        raise ValueError(f"expected a [B, C] or [B, C, H, W] layer output, got shape {tuple(act.shape)}")
    w = act.shape[3]
    values, flat = act.flatten(2).max(dim=2)
    return values, flat // w, flat % w


@dataclass
class TopK:
    values: np.ndarray  # float32 [k, U], best first
    index: np.ndarray  # int64 [k, U]: the candidate's source index (NO_SOURCE for padding)
    y: np.ndarray  # int32 [k, U] (-1 where there is no position)
    x: np.ndarray  # int32 [k, U]

    @property
    def k(self) -> int:
        return self.values.shape[0]

    @property
    def columns(self) -> int:
        return self.values.shape[1]

    @classmethod
    def empty(cls, k: int, columns: int) -> "TopK":
        return cls(np.full((k, columns), -np.inf, np.float32), np.full((k, columns), NO_SOURCE, np.int64),
                   np.full((k, columns), -1, np.int32), np.full((k, columns), -1, np.int32))

    @classmethod
    def of(cls, values: np.ndarray, index: np.ndarray, k: int, y: np.ndarray | None = None,
           x: np.ndarray | None = None) -> "TopK":
        """The top k of N candidates per column: `values` [N, U], `index` [N] (or [N, U]), positions [N, U]."""
        values = np.asarray(values, np.float32)
        n, u = values.shape
        index = np.asarray(index, np.int64)
        index = np.broadcast_to(index[:, None] if index.ndim == 1 else index, (n, u))
        y = np.full((n, u), -1, np.int32) if y is None else np.asarray(y, np.int32)
        x = np.full((n, u), -1, np.int32) if x is None else np.asarray(x, np.int32)
        return cls(values, np.ascontiguousarray(index), y, x)._best(k)

    def merge(self, other: "TopK") -> "TopK":
        """The k best of both (k = the larger of the two); exact, associative and commutative."""
        if other.columns != self.columns:
            raise ValueError(f"cannot merge top-k over {self.columns} and {other.columns} columns")
        both = TopK(*(np.concatenate([a, b]) for a, b in zip(self.arrays(), other.arrays())))
        return both._best(max(self.k, other.k))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.values, self.index, self.y, self.x

    def _best(self, k: int) -> "TopK":
        values = np.where(np.isnan(self.values), -np.inf, self.values)
        order = np.lexsort((self.index, -values), axis=0)[:k]
        picked = TopK(*(np.take_along_axis(a, order, 0) for a in (values, self.index, self.y, self.x)))
        if picked.k < k:  # fewer candidates than k: pad (padding sorts last)
            pad = TopK.empty(k - picked.k, self.columns)
            picked = TopK(*(np.concatenate([a, b]) for a, b in zip(picked.arrays(), pad.arrays())))
        return picked

    def entries(self, column: int) -> list[tuple[int, float, int, int | None, int | None]]:
        """(rank, value, source index, y, x) of one column's real candidates, best first."""
        out = []
        for r in range(self.k):
            i = int(self.index[r, column])
            if i == NO_SOURCE:
                break
            y, x = int(self.y[r, column]), int(self.x[r, column])
            out.append((r, float(self.values[r, column]), i, y if y >= 0 else None, x if x >= 0 else None))
        return out
