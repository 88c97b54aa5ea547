"""Tracking outputs of a snapshot sweep, under `<out>/tracking/<model>/<method>-<hp8>/` (one folder per model
and hyperparameter set, the `<method>-<hp8>` of the image names):

    steps.parquet                                 one row per (layer, unit, y, x, seed, snapshot)
    filmstrips/<layer>/<unit>[_<y>_<x>].png       a unit's preferred input at every snapshot, a row per seed
    plots/<layer>.png                             activation_final vs step (and val_accuracy where known)

`steps.parquet` columns: model, layer, unit, y, x, seed, method, hyperparams, snapshot, step, checkpoint,
activation_start, activation_final, image (relative to --out, as in `units/`), val_accuracy (the
`val_accuracy` of the checkpoint's sidecar `<name>.json`, null without one), metrics (the sidecar's JSON
text, or null), filmstrip and plot (the unit's filmstrip and the layer's plot, relative to --out). It joins
`units/` on (model, snapshot, layer, unit, y, x, seed, method, hyperparams).

`Tracker.refresh` rewrites only what changed: nothing at all when the table equals the one already written
(a rerun of a finished sweep writes nothing), else the table, the filmstrips whose frames changed and the
plots whose points changed. Thumbnails come from the images in memory as batches finish, or are read once
from `images/` for keys written by an earlier run.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from models.units import position_text

from ..keys import ItemKey, position_segment, safe_segment
from ..sink import parquet_bytes, pil_image, read_units
from ..storage import Store
from .figures import TILE, activation_plot, filmstrip

__all__ = ["Tracker", "SnapshotInfo", "TRACKING_SCHEMA", "tracking_dir"]

TRACKING_SCHEMA = pa.schema([
    ("model", pa.string()), ("layer", pa.string()), ("unit", pa.int32()), ("y", pa.int32()), ("x", pa.int32()),
    ("seed", pa.int32()), ("method", pa.string()), ("hyperparams", pa.string()), ("snapshot", pa.string()),
    ("step", pa.int64()), ("checkpoint", pa.string()), ("activation_start", pa.float64()),
    ("activation_final", pa.float64()), ("image", pa.string()), ("val_accuracy", pa.float64()),
    ("metrics", pa.string()), ("filmstrip", pa.string()), ("plot", pa.string()),
])


@dataclass(frozen=True)
class SnapshotInfo:
    """What the tracking outputs know of one processed snapshot."""

    step: int
    checkpoint: str
    metrics: Mapping | None = None

    @property
    def val_accuracy(self) -> float | None:
        v = (self.metrics or {}).get("val_accuracy")
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def tracking_dir(model: str, method: str, hyperparams: str) -> str:
    """tracking/<model>/<method>-<hp8>, relative to --out."""
    hp8 = ItemKey(model, "", "", 0, None, None, 0, method, hyperparams).hp_digest
    return f"tracking/{safe_segment(model, 'model')}/{method}-{hp8}"


def _unit_name(unit: int, y: int | None, x: int | None) -> str:
    return f"{unit}{position_segment(y, x)}"


class Tracker:
    """The rows of one sweep (one model and hyperparameter set) and the files drawn from them."""

    def __init__(self, store: Store, model: str, method: str, hyperparams: str, tile: int = TILE):
        self.store, self.model, self.method, self.hyperparams, self.tile = store, model, method, hyperparams, tile
        self.dir = tracking_dir(model, method, hyperparams)
        self._rows: dict[tuple, dict] = {}  # (snapshot, layer, unit, y, x, seed) -> units/ row fields
        self._thumbs: dict[str, Image.Image] = {}  # image path -> thumbnail
        self._written: dict | None = None  # the table as last written (None: not read yet)
        self._drawn: dict[str, tuple] = {}  # file -> the content it was drawn from

    def load(self) -> int:
        """Take the rows an earlier run wrote to `units/` for this model and hyperparameters; returns how many."""
        table = read_units(self.store, columns=["model", "snapshot", "layer", "unit", "y", "x", "seed", "method",
                                                "hyperparams", "activation_start", "activation_final", "image"])
        n = 0
        for r in table.to_pylist() if table.num_rows else []:
            if r["model"] == self.model and r["method"] == self.method and r["hyperparams"] == self.hyperparams:
                self._rows[(r["snapshot"], r["layer"], r["unit"], r["y"], r["x"], r["seed"])] = r
                n += 1
        return n

    def add(self, key: ItemKey, act_start: float, act_final: float, image: np.ndarray | None = None) -> None:
        """A key just written; `image` (uint8 [H, W, C]) saves reading its PNG back for the filmstrip."""
        self._rows[(key.snapshot, key.layer, key.unit, key.y, key.x, key.seed)] = {
            "model": key.model, "snapshot": key.snapshot, "layer": key.layer, "unit": key.unit, "y": key.y,
            "x": key.x, "seed": key.seed, "method": key.method, "hyperparams": key.hyperparams,
            "activation_start": act_start, "activation_final": act_final, "image": key.image_path}
        if image is not None:
            self._thumbs[key.image_path] = self._thumb(pil_image(image))

    def table(self, snapshots: Mapping[str, SnapshotInfo]) -> pa.Table:
        """The tracking table over the `snapshots` given (label -> info), sorted by layer, unit, seed, step."""
        rows = []
        for k in sorted(self._rows, key=lambda k: (k[1], k[2], k[3] or 0, k[4] or 0, k[5], k[0])):
            info = snapshots.get(k[0])
            if info is None:
                continue
            r = self._rows[k]
            rows.append({**{f: r[f] for f in ("model", "layer", "unit", "y", "x", "seed", "method", "hyperparams",
                                              "snapshot", "activation_start", "activation_final", "image")},
                         "step": info.step, "checkpoint": info.checkpoint, "val_accuracy": info.val_accuracy,
                         "metrics": json.dumps(info.metrics, sort_keys=True) if info.metrics is not None else None,
                         "filmstrip": self.filmstrip_path(r["layer"], r["unit"], r["y"], r["x"]),
                         "plot": self.plot_path(r["layer"])})
        return pa.Table.from_pylist(rows, schema=TRACKING_SCHEMA)

    def refresh(self, snapshots: Mapping[str, SnapshotInfo], table: pa.Table | None = None) -> bool:
        """Rewrite what changed (see the module docstring); returns whether anything was written. `table`: the
        caller's `self.table(snapshots)`, when it already has it."""
        table = self.table(snapshots) if table is None else table
        if self._written is None:
            self._written = self._read_written()
        current = table.to_pydict()
        if table.num_rows == 0 or current == self._written:
            return False
        self.store.write_bytes(f"{self.dir}/steps.parquet", parquet_bytes(table))
        self._written = current
        rows = table.to_pylist()
        by_unit: dict[tuple, list[dict]] = {}
        for r in rows:
            by_unit.setdefault((r["layer"], r["unit"], r["y"], r["x"]), []).append(r)
        for (layer, unit, y, x), unit_rows in by_unit.items():
            content = tuple((r["step"], r["seed"], r["activation_final"], r["image"]) for r in unit_rows)
            self._draw(self.filmstrip_path(layer, unit, y, x), content,
                       lambda: self._filmstrip(layer, unit, y, x, unit_rows))
        for layer in sorted({r["layer"] for r in rows}):
            layer_rows = [r for r in rows if r["layer"] == layer]
            content = tuple((r["step"], r["unit"], r["y"], r["x"], r["activation_final"], r["val_accuracy"])
                            for r in layer_rows)
            self._draw(self.plot_path(layer), content, lambda: self._plot(layer, layer_rows))
        return True

    def filmstrip_path(self, layer: str, unit: int, y: int | None, x: int | None) -> str:
        return f"{self.dir}/filmstrips/{safe_segment(layer, 'layer')}/{_unit_name(unit, y, x)}.png"

    def plot_path(self, layer: str) -> str:
        return f"{self.dir}/plots/{safe_segment(layer, 'layer')}.png"

    def _draw(self, rel: str, content: tuple, make) -> None:
        if self._drawn.get(rel) == content:
            return
        buf = io.BytesIO()
        make().save(buf, format="PNG")
        self.store.write_bytes(rel, buf.getvalue())
        self._drawn[rel] = content

    def _filmstrip(self, layer: str, unit: int, y, x, rows: list[dict]) -> Image.Image:
        steps = sorted({r["step"] for r in rows})
        seeds = sorted({r["seed"] for r in rows})
        cells = {(r["seed"], r["step"]): (self._thumbnail(r["image"]), r["activation_final"]) for r in rows}
        pos = position_text(y, x)
        return filmstrip(f"{layer} u{unit}{pos}", steps, seeds, cells, self.tile)

    def _plot(self, layer: str, rows: list[dict]) -> Image.Image:
        per_unit: dict[str, dict[int, list[float]]] = {}
        accuracy: dict[int, float] = {}
        for r in rows:
            per_unit.setdefault(_unit_name(r["unit"], r["y"], r["x"]), {}).setdefault(r["step"], []).append(
                r["activation_final"])
            if r["val_accuracy"] is not None:
                accuracy[r["step"]] = r["val_accuracy"]
        series = {u: [(s, sum(v) / len(v)) for s, v in sorted(by_step.items())] for u, by_step in per_unit.items()}
        return activation_plot(f"{self.model} {layer}", series, sorted(accuracy.items()))

    def _thumb(self, img: Image.Image) -> Image.Image:
        return img.convert("RGB").resize((self.tile, self.tile), Image.NEAREST if img.width < self.tile
                                         else Image.BILINEAR)

    def _thumbnail(self, rel: str) -> Image.Image:
        if rel not in self._thumbs:
            with Image.open(io.BytesIO(self.store.read_bytes(rel))) as img:
                self._thumbs[rel] = self._thumb(img)
        return self._thumbs[rel]

    def _read_written(self) -> dict:
        try:
            blob = self.store.read_bytes(f"{self.dir}/steps.parquet")
        except FileNotFoundError:
            return {}
        return pq.read_table(io.BytesIO(blob)).cast(TRACKING_SCHEMA).to_pydict()
