"""What `neuron-atlas topk` writes under `<out>/topk/`, all hive-partitioned like `units/` so that the tables
join with it on (model, snapshot, layer, unit):

    topk/examples/model=../snapshot=../layer=../part-<run>.parquet   one row per (unit, rank)
    topk/stats/model=../snapshot=../layer=../part-<run>.parquet      one row per unit
    topk/images/<model>/<snapshot>/<source16>/<y0>_<x0>_<y1>_<x1>.png the crop of each example
    topk/maps/<model>/<snapshot>/<layer>/<unit>/<source16>.png        a conv unit's map over each example
    topk/attributions/<model>/<snapshot>/<layer>/<unit>/<source16>.png  its attribution (--attribution)
    topk/shards/<run>/<shard>.parquet                                 the finished shards (resume records)

`examples`: unit, rank (0 = the strongest), activation (the unit's maximum over positions in that image),
source (the image's URI, `offline:<name>` or `<parquet URI>#<row>`), label, y, x (where the maximum is;
null for fully connected units), box ([y0, x0, y1, x1], half-open, in the net's input: the image resized so
its short side is size/0.875 and centre-cropped; the receptive field of (y, x) clipped to it, or the whole
input), image (the crop's path relative to --out), images (the --images URI), k, run_id, map (a conv unit's
activation map in that image, row-major, max-pooled to at most 28 x 28 so its maximum is `activation`), map_h,
map_w, overlay (the map as a heat map over the image, the maximum ringed: topk/maps/...), attribution (with
--attribution: tasks/attribution.py's gradient x input over the image: topk/attributions/...). A crop is named by
its image (a digest of the image set and the source) and its box, so the examples that share a picture
(every logit unit's whole-image crops of one photo, neighbouring positions' clipped fields) share one file.
`stats`: unit, count (readable images), mean, std (population), min, max, q01, q05, q25, q50, q75, q95, q99
(tasks/quantiles.py: within 1 % of the true value), positive_share (the share of images whose value is
> 0), images, run_id. A unit's value in an image is its maximum over positions, as ranked in `examples`.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from tasks.quantiles import QUANTILES, UnitStats
from tasks.receptive import Geometry
from tasks.topk import TopK

from ..imagesets import ImageSet
from ..sink import read_dataset
from ..storage import Store

__all__ = ["Example", "examples", "examples_table", "stats_table", "crop_path", "figure_path", "part_path",
           "read_topk", "QUANTILE_COLUMNS"]

QUANTILE_COLUMNS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)

EXAMPLES_SCHEMA = pa.schema([
    ("unit", pa.int32()), ("rank", pa.int32()), ("activation", pa.float64()), ("source", pa.string()),
    ("label", pa.string()), ("y", pa.int32()), ("x", pa.int32()), ("box", pa.list_(pa.int32(), 4)),
    ("image", pa.string()), ("images", pa.string()), ("k", pa.int32()), ("run_id", pa.string()),
    ("map", pa.list_(pa.float32())), ("map_h", pa.int32()), ("map_w", pa.int32()), ("overlay", pa.string()),
    ("attribution", pa.string()),
])
STATS_SCHEMA = pa.schema([
    ("unit", pa.int32()), ("count", pa.int64()), ("mean", pa.float64()), ("std", pa.float64()),
    ("min", pa.float64()), ("max", pa.float64()), *[(c, pa.float64()) for c in QUANTILE_COLUMNS],
    ("positive_share", pa.float64()), ("images", pa.string()), ("run_id", pa.string()),
])


def partition(model: str, snapshot: str, layer: str) -> str:
    return f"model={model}/snapshot={snapshot}/layer={layer}"


def part_path(what: str, model: str, snapshot: str, layer: str, run_id: str) -> str:
    """topk/<what>/<partition>/part-<run>.parquet (what: examples or stats)."""
    return f"topk/{what}/{partition(model, snapshot, layer)}/part-{run_id}.parquet"


def _source_id(images: ImageSet, index: int) -> str:
    """Source `index` of `images` as a path segment: a digest of the image set and the source."""
    return hashlib.sha256(f"{images.digest}\n{images.sources[index].uri}".encode()).hexdigest()[:16]


def crop_path(model: str, snapshot: str, images: ImageSet, index: int, box: tuple[int, int, int, int]) -> str:
    """The crop of `box` from source `index` of `images`, in the net's input view of the image."""
    return f"topk/images/{model}/{snapshot}/{_source_id(images, index)}/{'_'.join(map(str, box))}.png"


def figure_path(model: str, snapshot: str, images: ImageSet, index: int, layer: str, unit: int, kind: str) -> str:
    """The overlay of `kind` ('map' or 'attribution') of one unit on source `index`."""
    return f"topk/{kind}s/{model}/{snapshot}/{layer}/{unit}/{_source_id(images, index)}.png"


class Example(NamedTuple):
    """One row of `examples`, with the source as its index in the image set."""

    unit: int
    rank: int
    activation: float
    index: int
    y: int | None
    x: int | None
    box: tuple[int, int, int, int]
    image: str
    map: np.ndarray | None = None  # the unit's activation map in this image (conv units, with maps on)
    overlay: str | None = None  # its heat map over the image
    attribution: str | None = None  # the attribution overlay (topk --attribution)


def examples(top: TopK, channels: list[int], geometry: Geometry | None, size: tuple[int, int], crop,
             figure=None, attribution: bool = False) -> list[Example]:
    """The rows of one layer: every real candidate of every unit, with its box; `crop(index, box)` names the
    crop file, `figure(index, unit, kind)` an overlay's."""
    h, w = size
    rows = []
    for col, unit in enumerate(channels):
        for rank, value, index, y, x in top.entries(col):
            box = geometry.box(y, x, h, w) if geometry is not None and y is not None else (0, 0, h, w)
            amap = top.map_of(rank, col)
            rows.append(Example(unit, rank, value, index, y, x, box, crop(index, box), amap,
                                figure(index, unit, "map") if amap is not None else None,
                                figure(index, unit, "attribution") if attribution else None))
    return rows


def examples_table(rows: list[Example], images: ImageSet, k: int, run_id: str, missing: set[str]) -> pa.Table:
    """The `examples` part of one layer; crops listed in `missing` (unreadable now) get a null image."""
    src = images.sources
    return pa.table({
        "unit": [r.unit for r in rows], "rank": [r.rank for r in rows], "activation": [r.activation for r in rows],
        "source": [src[r.index].uri for r in rows], "label": [src[r.index].label for r in rows],
        "y": [r.y for r in rows], "x": [r.x for r in rows], "box": [list(r.box) for r in rows],
        "image": [None if r.image in missing else r.image for r in rows], "images": [images.uri] * len(rows),
        "k": [k] * len(rows), "run_id": [run_id] * len(rows),
        "map": [None if r.map is None else r.map.ravel().tolist() for r in rows],
        "map_h": [None if r.map is None else r.map.shape[0] for r in rows],
        "map_w": [None if r.map is None else r.map.shape[1] for r in rows],
        "overlay": [None if r.overlay in missing else r.overlay for r in rows],
        "attribution": [None if r.attribution in missing else r.attribution for r in rows],
    }, schema=EXAMPLES_SCHEMA)


def stats_table(st: UnitStats, channels: list[int], images: str, run_id: str) -> pa.Table:
    q = st.quantiles()
    n = len(channels)
    return pa.table({
        "unit": channels, "count": [st.count] * n, "mean": st.moments.mean, "std": st.moments.std,
        "min": st.minimum, "max": st.moments.max, **{c: q[:, j] for j, c in enumerate(QUANTILE_COLUMNS)},
        "positive_share": st.positive_share(), "images": [images] * n, "run_id": [run_id] * n,
    }, schema=STATS_SCHEMA)


def read_topk(store: Store, what: str = "examples") -> pa.Table:
    """`topk/examples` or `topk/stats` as one Arrow table (model, snapshot, layer from the hive path)."""
    return read_dataset(store, f"topk/{what}")
