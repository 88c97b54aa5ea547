"""Per-unit maxima over positions, and the exact, mergeable top-k of a stream of images.

`unit_maxima` turns one layer's output for a batch into one value per (image, unit): a conv unit's maximum
over its spatial map, with the row and column where it occurs (the first in row-major order when several
positions tie), or a fully connected unit's value. `unit_maps` keeps each conv unit's whole map, max-pooled
down to at most `MAP_SIZE` a side: small enough to store with every top-k example, and its maximum is exactly
the unit's maximum (max pooling keeps it).

`TopK` keeps, for each of U columns (units, or queries for nearest neighbours), the k best candidates seen
so far as (value, source index, y, x), ordered by value descending and then by source index ascending. A
source contributes at most one candidate per column, so this order is total, and merging two TopK values
(`merge`) keeps exactly the k best of their union: any split of the images into shards, merged in any
order, gives the same result as one brute-force top-k over all of them. NaN counts as -inf. Columns with
fewer than k candidates are padded with value -inf and index `NO_SOURCE`, which sort last. A TopK may carry
each candidate's activation map (`maps` [k, U, h, w], NaN for padding), which follows its candidate through
every selection and merge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["unit_maxima", "unit_maps", "TopK", "NO_SOURCE", "MAP_SIZE"]

NO_SOURCE = np.iinfo(np.int64).max
MAP_SIZE = 28  # stored activation maps are at most this many cells a side


@torch.no_grad()
def unit_maps(act: torch.Tensor, size: int = MAP_SIZE) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, h, w] float32 with h = min(H, size), w = min(W, size): adaptive max pooling,
    so every cell holds the maximum of its region and the map's maximum is the unit's."""
    h, w = min(act.shape[2], size), min(act.shape[3], size)
    a = act.float()
    return a if (h, w) == tuple(act.shape[2:]) else torch.nn.functional.adaptive_max_pool2d(a, (h, w))


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
    maps: np.ndarray | None = None  # float32 [k, U, h, w]: each candidate's activation map (NaN: padding)

    @property
    def k(self) -> int:
        return self.values.shape[0]

    @property
    def columns(self) -> int:
        return self.values.shape[1]

    @classmethod
    def empty(cls, k: int, columns: int, map_shape: tuple[int, int] | None = None) -> "TopK":
        maps = None if map_shape is None else np.full((k, columns, *map_shape), np.nan, np.float32)
        return cls(np.full((k, columns), -np.inf, np.float32), np.full((k, columns), NO_SOURCE, np.int64),
                   np.full((k, columns), -1, np.int32), np.full((k, columns), -1, np.int32), maps)

    @classmethod
    def of(cls, values: np.ndarray, index: np.ndarray, k: int, y: np.ndarray | None = None,
           x: np.ndarray | None = None, maps: np.ndarray | None = None) -> "TopK":
        """The top k of N candidates per column: `values` [N, U], `index` [N] (or [N, U]), positions [N, U],
        activation maps [N, U, h, w]."""
        return cls.candidates(values, index, y, x, maps)._best(k)

    def merge(self, other: "TopK", k: int | None = None) -> "TopK":
        """The k best of both (default k: the larger of the two); exact, associative and commutative. Maps
        survive only when both sides carry them. `other` may be unsorted candidates (a batch's, `candidates`)."""
        if other.columns != self.columns:
            raise ValueError(f"cannot merge top-k over {self.columns} and {other.columns} columns")
        both = TopK(*(np.concatenate([a, b]) for a, b in zip(self.arrays(), other.arrays())))
        maps = [self._maps_like(other), other._maps_like(self)]
        if all(m is not None for m in maps):
            both.maps = np.concatenate(maps)
        return both._best(k or max(self.k, other.k))

    def _maps_like(self, other: "TopK") -> np.ndarray | None:
        """This side's maps; NaN maps of `other`'s shape when this side has none and no real candidate either
        (a shard whose images were all unreadable must not drop the other shards' maps)."""
        if self.maps is not None or other.maps is None:
            return self.maps
        if (self.index != NO_SOURCE).any():
            return None
        return np.full((self.k, self.columns, *other.maps.shape[2:]), np.nan, np.float32)

    @classmethod
    def candidates(cls, values: np.ndarray, index: np.ndarray, y: np.ndarray | None = None,
                   x: np.ndarray | None = None, maps: np.ndarray | None = None) -> "TopK":
        """N candidates per column as they come (unsorted, unpadded; `of` selects from them): `values` [N, U],
        `index` [N] (or [N, U]), positions [N, U], maps [N, U, h, w]; the other side of `merge(..., k)`."""
        values = np.asarray(values, np.float32)
        n, u = values.shape
        index = np.asarray(index, np.int64)
        index = np.ascontiguousarray(np.broadcast_to(index[:, None] if index.ndim == 1 else index, (n, u)))
        y = np.full((n, u), -1, np.int32) if y is None else np.asarray(y, np.int32)
        x = np.full((n, u), -1, np.int32) if x is None else np.asarray(x, np.int32)
        return cls(values, index, y, x, None if maps is None else np.asarray(maps, np.float32))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.values, self.index, self.y, self.x

    def _best(self, k: int) -> "TopK":
        values = np.where(np.isnan(self.values), -np.inf, self.values)
        order = np.lexsort((self.index, -values), axis=0)[:k]
        picked = TopK(*(np.take_along_axis(a, order, 0) for a in (values, self.index, self.y, self.x)))
        if self.maps is not None:  # whole maps gathered by (row, column): no per-cell index arrays
            picked.maps = self.maps[order, np.arange(self.columns)[None, :]]
        if picked.k < k:  # fewer candidates than k: pad (padding sorts last)
            pad = TopK.empty(k - picked.k, self.columns, None if self.maps is None else self.maps.shape[2:])
            maps = None if self.maps is None else np.concatenate([picked.maps, pad.maps])
            picked = TopK(*(np.concatenate([a, b]) for a, b in zip(picked.arrays(), pad.arrays())), maps)
        return picked

    def map_of(self, rank: int, column: int) -> np.ndarray | None:
        """The activation map [h, w] of one candidate (None without maps)."""
        return None if self.maps is None else self.maps[rank, column]

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
