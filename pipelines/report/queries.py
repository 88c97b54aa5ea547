"""Queries over everything under an OUT: the rows the report's pages are made of (pyarrow; reads only).

`load_atlas(store)` reads each output once and groups its rows by the page that shows them:
  - `units/` (atlas items) per layer and unit: `AtlasData.units[LayerKey][unit] -> rows`;
  - `topk/examples` and `topk/stats` per unit (`topk`, `stats`);
  - `nearest/neighbours` per synthesized image, with the run's sheet when it exists (`neighbours`, `sheets`);
  - `inverse/runs` with their `inverse/samples`, under every unit a run constrains (`inverse`);
  - `tracking/` rows (snapshot sweeps) per (model, layer, unit), and `videos/` rows per unit (`tracking`,
    `videos`): the slots the `snapshots` and `video` commands fill;
  - the start photos of `--init` runs that exist under OUT (`inits`: paths such as `inits/<digest>.png`);
  - `manifest.json`.
A unit's key is `(LayerKey(model, snapshot, layer), unit)`, with the path-safe names of the hive partitions.
Outputs that are absent give empty mappings. A dataset that is present but lacks the columns a page needs is
named in `notes` and left out, never guessed at.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from models.retry import with_retries

from ..inverse import read_inverse
from ..sink import PARTITIONING, read_dataset, read_units
from ..storage import Store
from ..topk.topk_out import read_topk

__all__ = ["LayerKey", "UnitKey", "AtlasData", "load_atlas", "constraint_unit", "nearest_sheet_path"]


class LayerKey(NamedTuple):
    model: str
    snapshot: str
    layer: str


UnitKey = tuple[LayerKey, int]

_CONSTRAINT = re.compile(r"^(?P<layer>.+):(?P<unit>\d+)(@\d+,\d+)?$")
_TRACKING_NEEDS = ("layer", "unit", "snapshot", "image")
_VIDEO_NEEDS = ("model", "snapshot", "layer", "unit", "video")


@dataclass
class AtlasData:
    units: dict[LayerKey, dict[int, list[dict]]] = field(default_factory=dict)
    topk: dict[UnitKey, list[dict]] = field(default_factory=dict)  # by (images, run_id, rank)
    stats: dict[UnitKey, list[dict]] = field(default_factory=dict)  # one row per topk run
    neighbours: dict[str, list[dict]] = field(default_factory=dict)  # atlas image -> rows in file order
    sheets: dict[tuple[str, str], str] = field(default_factory=dict)  # (nearest run, atlas image) -> sheet
    inverse: dict[UnitKey, list[dict]] = field(default_factory=dict)  # run rows, each with "samples"
    tracking: dict[tuple[str | None, str, int], list[dict]] = field(default_factory=dict)
    videos: dict[UnitKey, list[dict]] = field(default_factory=dict)
    inits: set[str] = field(default_factory=set)  # start photos present under OUT (pipelines/init_photos.py)
    manifest: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def layers(self) -> list[LayerKey]:
        """Every layer that has any unit with something to show, sorted."""
        keys = set(self.units)
        for mapping in (self.topk, self.inverse, self.videos):
            keys.update(k for k, _ in mapping)
        return sorted(keys)

    def layer_units(self, key: LayerKey) -> list[int]:
        """The units of `key` with any content (atlas rows, top-k, inverse sets or videos), ascending."""
        units = set(self.units.get(key, {}))
        for mapping in (self.topk, self.inverse, self.videos):
            units.update(u for k, u in mapping if k == key)
        return sorted(units)

    @property
    def empty(self) -> bool:
        return not (self.units or self.topk or self.inverse or self.videos)


def constraint_unit(label: str) -> tuple[str, int] | None:
    """'features.9:3@7,7' (an inverse-set constraint label) -> ('features.9', 3); None if malformed."""
    m = _CONSTRAINT.match(label)
    return (m["layer"], int(m["unit"])) if m else None


def nearest_sheet_path(run_id: str, image: str) -> str:
    """Where `neuron-atlas nearest` run `run_id` drew the sheet of the synthesized `image` (under OUT)."""
    return f"nearest/sheets/{run_id[:8]}/{image.removeprefix('images/')}"


def load_atlas(store: Store) -> AtlasData:
    """Everything under `store` that the report shows (see the module docstring)."""
    data = AtlasData()
    _load_units(store, data)
    _load_topk(store, data)
    _load_nearest(store, data)
    _load_inverse(store, data)
    _load_tracking(store, data)
    _load_videos(store, data)
    data.inits = set(store.find("inits", ".png"))
    try:
        data.manifest = json.loads(store.read_bytes("manifest.json"))
    except FileNotFoundError:
        data.manifest = {}
    except json.JSONDecodeError as e:
        data.notes.append(f"manifest.json is not JSON ({e}); the run summary is left out")
    return data


def _key(row: dict) -> LayerKey:
    return LayerKey(str(row["model"]), str(row["snapshot"]), str(row["layer"]))


def _load_units(store: Store, data: AtlasData) -> None:
    """units/ rows per layer and unit; a row that names a `video` (the design's video columns in units/) is
    also a preferred video of its unit."""
    grouped: dict[LayerKey, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in read_units(store).to_pylist():
        grouped[_key(r)][r["unit"]].append(r)
        if r.get("video"):
            data.videos.setdefault((_key(r), r["unit"]), []).append(r)
    data.units = {k: dict(v) for k, v in grouped.items()}


def _load_topk(store: Store, data: AtlasData) -> None:
    examples: dict[UnitKey, list[dict]] = defaultdict(list)
    for r in read_topk(store, "examples").to_pylist():
        examples[(_key(r), r["unit"])].append(r)
    data.topk = {k: sorted(v, key=lambda r: (r["images"], r["run_id"], r["rank"])) for k, v in examples.items()}
    stats: dict[UnitKey, list[dict]] = defaultdict(list)
    for r in read_topk(store, "stats").to_pylist():
        stats[(_key(r), r["unit"])].append(r)
    data.stats = dict(stats)


def _load_nearest(store: Store, data: AtlasData) -> None:
    """Each part file is one nearest run (`part-<run>.parquet`); its run id names its sheets' folder."""
    sheets = set(store.find("nearest/sheets", ".png"))
    grouped: dict[str, list[dict]] = defaultdict(list)
    for part in store.find("nearest/neighbours", ".parquet"):
        run_id = part.rsplit("/part-", 1)[-1].removesuffix(".parquet")
        table = with_retries(lambda p=part: pq.read_table(store.path(p), filesystem=store.fs),
                             f"{store.uri}/{part}", store.retry)
        for r in table.to_pylist():
            if r.get("kind") != "atlas":
                continue
            r["nearest_run"] = run_id
            grouped[r["image"]].append(r)
            sheet = nearest_sheet_path(run_id, r["image"])
            if sheet in sheets:
                data.sheets[(run_id, r["image"])] = sheet
    data.neighbours = dict(grouped)


def _load_inverse(store: Store, data: AtlasData) -> None:
    runs = read_inverse(store, "runs").to_pylist()
    samples: dict[tuple, list[dict]] = defaultdict(list)
    for s in read_inverse(store, "samples").to_pylist():
        samples[(s["model"], s["snapshot"], s["run_id"])].append(s)
    grouped: dict[UnitKey, list[dict]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r["run_id"]):
        run["samples"] = sorted(samples.get((run["model"], run["snapshot"], run["run_id"]), []),
                                key=lambda s: s["sample"])
        for label in run["constraints"]:
            target = constraint_unit(label)
            if target is None:
                data.notes.append(f"inverse run {run['run_id']}: constraint {label!r} names no unit; left out")
                continue
            grouped[(LayerKey(run["model"], run["snapshot"], target[0]), target[1])].append(run)
    data.inverse = dict(grouped)


def _read_optional(store: Store, rel: str, needs: tuple[str, ...], data: AtlasData,
                   partitioning: ds.Partitioning | None = PARTITIONING) -> list[dict]:
    """Rows of an optional dataset under `rel` (with `partitioning`, hive partitions model/snapshot/layer as
    in units/); [] with a note when it lacks a column in `needs` or cannot be read."""
    files = store.find(rel, ".parquet")
    if not files:
        return []
    try:
        table = read_dataset(store, rel, partitioning=partitioning)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        try:  # not hive-partitioned the way units/ is: read the files as they are
            table = with_retries(lambda: ds.dataset([store.path(p) for p in files], filesystem=store.fs,
                                                    format="parquet").to_table(), f"{store.uri}/{rel}", store.retry)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            data.notes.append(f"{rel}/ cannot be read as one table ({e}); left out of the site")
            return []
    rows = table.to_pylist()
    missing = [c for c in needs if c not in table.column_names or all(r[c] is None for r in rows)]
    if missing:
        data.notes.append(f"{rel}/ has no column {', '.join(missing)}; left out of the site")
        return []
    return rows


def _load_tracking(store: Store, data: AtlasData) -> None:
    grouped: dict[tuple[str | None, str, int], list[dict]] = defaultdict(list)
    # tracking/<model>/<method>-<hp8>/steps.parquet (pipelines/snapshots/tracking.py): plain folders, the
    # key columns inside the files
    for r in _read_optional(store, "tracking", _TRACKING_NEEDS, data, partitioning=None):
        grouped[(r.get("model"), str(r["layer"]), int(r["unit"]))].append(r)
    data.tracking = {k: sorted(v, key=lambda r: (r.get("step") is None, r.get("step"), str(r["snapshot"])))
                     for k, v in grouped.items()}


def _load_videos(store: Store, data: AtlasData) -> None:
    for r in _read_optional(store, "videos", _VIDEO_NEEDS, data):
        data.videos.setdefault((_key(r), int(r["unit"])), []).append(r)
