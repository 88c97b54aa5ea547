"""What one shard of a `topk` or `nearest` pass returns, and its record as an Arrow table (one row per unit,
or per query), so that a recorded shard merges exactly as if it had just been computed.

`TopkShard`: per layer, the shard's top-k per unit (tasks/topk.TopK, with its examples' activation maps for
conv layers) and its activation statistics (tasks/quantiles.UnitStats; the histogram is stored sparse).
`NearestShard`: per code space, the shard's k nearest images per synthesized image, as a TopK of negated
distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tasks.quantiles import N_BINS, UnitStats
from tasks.stats import RunningStats
from tasks.topk import TopK

__all__ = ["TopkShard", "NearestShard"]


def _fixed(a: np.ndarray) -> pa.Array:
    """[k, U] -> a list of length k per column."""
    k, u = a.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(u + 1, dtype=np.int32) * k),
                                    pa.array(np.ascontiguousarray(a.T).ravel()))


def _unfixed(col: pa.ChunkedArray, rows: slice, dtype) -> np.ndarray:
    """The [k, U] array of rows `rows` (one layer or space: the same k throughout)."""
    arr = col.combine_chunks()[rows.start:rows.stop]
    flat = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype)
    return flat.reshape(len(arr), -1).T.copy()


def _topk_columns(top: TopK, prefix: str = "top_") -> dict[str, pa.Array]:
    return {f"{prefix}value": _fixed(top.values), f"{prefix}index": _fixed(top.index),
            f"{prefix}y": _fixed(top.y), f"{prefix}x": _fixed(top.x)}


def _map_columns(top: TopK) -> dict[str, pa.Array]:
    """Per unit: its k candidates' activation maps, flattened (k * h * w values), and the map's h and w; nulls
    and zeros for a layer without maps, so that every layer's rows share one schema."""
    u = top.columns
    if top.maps is None:
        return {"top_map": pa.nulls(u, pa.list_(pa.float32())), "map_h": pa.array(np.zeros(u, np.int32)),
                "map_w": pa.array(np.zeros(u, np.int32))}
    k, _, h, w = top.maps.shape
    flat = np.ascontiguousarray(top.maps.transpose(1, 0, 2, 3)).ravel()
    offsets = pa.array(np.arange(u + 1, dtype=np.int32) * (k * h * w))
    return {"top_map": pa.ListArray.from_arrays(offsets, pa.array(flat, pa.float32())),
            "map_h": pa.array(np.full(u, h, np.int32)), "map_w": pa.array(np.full(u, w, np.int32))}


def _topk_of(table: pa.Table, rows: slice, prefix: str = "top_") -> TopK:
    top = TopK(*(_unfixed(table.column(f"{prefix}{name}"), rows, dtype) for name, dtype in
                 (("value", np.float32), ("index", np.int64), ("y", np.int32), ("x", np.int32))))
    if "map_h" in table.column_names and table.column("map_h")[rows.start].as_py():
        h, w = table.column("map_h")[rows.start].as_py(), table.column("map_w")[rows.start].as_py()
        arr = table.column("top_map").combine_chunks()[rows.start:rows.stop]
        flat = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), np.float32)
        top.maps = flat.reshape(len(arr), top.k, h, w).transpose(1, 0, 2, 3).copy()
    return top


def _groups(table: pa.Table, key: str) -> list[tuple[str, slice]]:
    """Consecutive runs of equal `key` values: (value, row slice)."""
    values = table.column(key).to_pylist()
    out, start = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            out.append((values[start], slice(start, i)))
            start = i
    return out


@dataclass
class TopkShard:
    layers: dict[str, tuple[TopK, UnitStats]]  # layer -> (top-k per selected unit, statistics)

    def __reduce__(self):
        # pickled (by Ray, from worker to driver) as its record: the dense histograms travel sparse
        return TopkShard.from_table, (self.to_table(),)

    def merge(self, other: "TopkShard") -> "TopkShard":
        out = dict(self.layers)
        for layer, (top, st) in other.layers.items():
            if layer in out:
                top0, st0 = out[layer]
                out[layer] = (top0.merge(top), st0.merge(st))
            else:
                out[layer] = (top, st)
        return TopkShard(out)

    def to_table(self) -> pa.Table:
        parts = []
        for layer, (top, st) in self.layers.items():
            u = top.columns
            nz_unit, nz_bin = np.nonzero(st.hist)
            offsets = np.searchsorted(nz_unit, np.arange(u + 1)).astype(np.int32)
            m = st.moments
            parts.append(pa.table({
                "layer": pa.array([layer] * u), "count": pa.array(np.full(u, m.count, np.int64)),
                "mean": m.mean, "m2": m.m2, "max": m.max, "min": st.minimum, "positive": st.positive,
                "hist_bins": pa.ListArray.from_arrays(pa.array(offsets), pa.array(nz_bin.astype(np.int16))),
                "hist_counts": pa.ListArray.from_arrays(pa.array(offsets), pa.array(st.hist[nz_unit, nz_bin])),
                **_topk_columns(top), **_map_columns(top)}))
        return pa.concat_tables(parts)

    @classmethod
    def from_table(cls, table: pa.Table) -> "TopkShard":
        layers = {}
        for layer, rows in _groups(table, "layer"):
            t = table.slice(rows.start, rows.stop - rows.start)
            u = t.num_rows
            col = {name: t.column(name).to_numpy() for name in ("count", "mean", "m2", "max", "min", "positive")}
            hist = np.zeros((u, N_BINS), np.int32)
            bins, counts = t.column("hist_bins").combine_chunks(), t.column("hist_counts").combine_chunks()
            units = np.repeat(np.arange(u), np.diff(bins.offsets.to_numpy()))
            hist[units, bins.flatten().to_numpy().astype(np.int64)] = counts.flatten().to_numpy()
            stats = UnitStats(RunningStats(int(col["count"][0]), col["mean"], col["m2"], col["max"]), col["min"],
                              col["positive"].astype(np.int64), hist)
            layers[layer] = (_topk_of(table, rows), stats)
        return cls(layers)


@dataclass
class NearestShard:
    spaces: dict[str, TopK]  # space -> per synthesized image, the nearest real images (values = -distance)

    def merge(self, other: "NearestShard") -> "NearestShard":
        return NearestShard({s: self.spaces[s].merge(t) if s in self.spaces else t for s, t in other.spaces.items()}
                            | {s: t for s, t in self.spaces.items() if s not in other.spaces})

    def to_table(self) -> pa.Table:
        return pa.concat_tables([pa.table({"space": pa.array([space] * top.columns), **_topk_columns(top)})
                                 for space, top in self.spaces.items()])

    @classmethod
    def from_table(cls, table: pa.Table) -> "NearestShard":
        return cls({space: _topk_of(table, rows) for space, rows in _groups(table, "space")})
