"""Synthetic outputs in the exact layout the commands write (for the report benchmark and fast tests): no
net, no Ray, just the output contract filled with small noise PNGs and made-up activations.

`synthetic_out(root, units=..., seeds=...)` writes under `root`:
  - `units/` and `images/` through pipelines/sink.write_batch (the atlas's own writer), one layer of `units`
    units x `seeds` seeds, in every snapshot of `snapshots`; activation_final = 1 + unit / 1000 + seed / 10
    (the highest seed is each unit's strongest), activation_start 0.1 below;
  - with `topk`: `topk/examples` (k per unit, crops shared among `crops` files) and `topk/stats`;
  - with `extras`: a `nearest/neighbours` part and sheet for unit 0's images, an inverse-set run
    constraining unit 1, a `videos/` row for unit 2 and, over several snapshots, `tracking/` rows (with
    validation accuracy), filmstrip and plot for unit 3;
  - `manifest.json` with one atlas run.
Returns the paths of the layer's folder name and counts, for the caller's checks.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa

from pipelines.inverse import RUNS_SCHEMA, SAMPLES_SCHEMA
from pipelines.keys import ItemKey, hyperparams_json
from pipelines.sink import parquet_bytes, png_bytes, write_batch
from pipelines.storage import Store
from pipelines.topk.nearest_run import NEIGHBOURS_SCHEMA
from pipelines.topk.topk_out import EXAMPLES_SCHEMA, QUANTILE_COLUMNS, STATS_SCHEMA, part_path

__all__ = ["synthetic_out", "MODEL", "LAYER"]

MODEL, LAYER = "synthnet", "block.7"
HP = hyperparams_json({"lr": 0.05, "steps": 64, "style": "synthetic"})
BATCH = 500


def _png(rng: np.random.Generator, px: int) -> bytes:
    return png_bytes(rng.integers(0, 256, (px, px, 3), dtype=np.uint8))


def _atlas(store: Store, snapshot: str, units: int, seeds: int, px: int, rng) -> None:
    from models.units import Unit
    from tasks.actor import ItemResult, WorkItem

    keys = [ItemKey(MODEL, snapshot, LAYER, u, None, None, s, "image", HP) for u in range(units) for s in range(seeds)]
    for i in range(0, len(keys), BATCH):
        batch = keys[i:i + BATCH]
        results = [ItemResult(WorkItem(Unit(LAYER, k.unit), k.seed),
                              rng.integers(0, 256, (px, px, 3), dtype=np.uint8),
                              0.9 + k.unit / 1000 + k.seed / 10, 1 + k.unit / 1000 + k.seed / 10,
                              1 + k.unit / 1000 + k.seed / 10, np.zeros(4, np.float32), f"unit({LAYER}, {k.unit})")
                   for k in batch]
        write_batch(store, batch, results, steps=64, device="cpu")


def _topk(store: Store, snapshot: str, units: int, k: int, crops: int, px: int, rng) -> None:
    names = [f"topk/images/{MODEL}/{snapshot}/{i:016x}/0_0_{px}_{px}.png" for i in range(crops)]
    for name in names:
        store.write_bytes(name, _png(rng, px))
    rows = [{"unit": u, "rank": r, "activation": 1.0 - r / 10 + u / 1000, "source": f"offline:photo{(u + r) % crops}",
             "label": None, "y": None, "x": None, "box": [0, 0, px, px], "image": names[(u + r) % crops],
             "images": "offline", "k": k, "run_id": "synthetictopk0001"} for u in range(units) for r in range(k)]
    store.write_bytes(part_path("examples", MODEL, snapshot, LAYER, "synthetictopk0001"),
                      parquet_bytes(pa.Table.from_pylist(rows, schema=EXAMPLES_SCHEMA)))
    stats = [{"unit": u, "count": 222, "mean": 0.1, "std": 0.2, "min": -0.5, "max": 1.0 + u / 1000,
              **{c: 0.1 for c in QUANTILE_COLUMNS}, "positive_share": 0.5, "images": "offline",
              "run_id": "synthetictopk0001"} for u in range(units)]
    store.write_bytes(part_path("stats", MODEL, snapshot, LAYER, "synthetictopk0001"),
                      parquet_bytes(pa.Table.from_pylist(stats, schema=STATS_SCHEMA)))


def _extras(store: Store, snapshot: str, seeds: int, px: int, rng) -> None:
    from pipelines.report.queries import nearest_sheet_path

    run = f"syntheticnearest{snapshot}"
    rows = []
    for s in range(seeds):
        key = ItemKey(MODEL, snapshot, LAYER, 0, None, None, s, "image", HP)
        store.write_bytes(nearest_sheet_path(run, key.image_path), _png(rng, px))
        for space in ("pixel", LAYER):
            rows.append({"image": key.image_path, "kind": "atlas", "model": MODEL, "snapshot": snapshot, "layer": LAYER,
                         "unit": 0, "seed": s, "method": "image", "hyperparams": HP, "space": space, "rank": 0,
                         "distance": 3.5, "source": "offline:photo1", "images": "offline", "k": 1,
                         "same_class": False})
    store.write_bytes(f"nearest/neighbours/part-{run}.parquet",
                      parquet_bytes(pa.Table.from_pylist(rows, schema=NEIGHBOURS_SCHEMA)))
    inv, part = "syntheticinverse", f"model={MODEL}/snapshot={snapshot}/part-syntheticinverse.parquet"
    images = [f"inverse/images/{MODEL}/{snapshot}/{inv}/{i:04d}.png" for i in range(3)]
    for name in images:
        store.write_bytes(name, _png(rng, px))
    sheet = f"inverse/sheets/{MODEL}/{snapshot}/{inv}.png"
    store.write_bytes(sheet, _png(rng, px))
    common = {"run_id": inv, "seed": 0, "constraints": [f"{LAYER}:1"], "z1": [0.5], "z2": [1.5]}
    samples = [{**common, "sample": i, "method": "inverse", "activation": [1.0 + i / 10], "in_range": True,
                "image": name, "hyperparams": "{}"} for i, name in enumerate(images)]
    store.write_bytes(f"inverse/samples/{part}", parquet_bytes(pa.Table.from_pylist(samples, schema=SAMPLES_SCHEMA)))
    run_row = {**common, "k": 1, "n": 3, "samples": 3, "status": "complete", "seed_iterations": 1, "seed_steps": 5,
               "sampling_steps": 2, "diversity": 0.5, "diversity_space": "encoder", "encoder_layer": LAYER,
               "closest": [1.0], "sheet": sheet, "seconds": 0.1, "hyperparams": "{}"}
    store.write_bytes(f"inverse/runs/{part}", parquet_bytes(pa.Table.from_pylist([run_row], schema=RUNS_SCHEMA)))
    video = f"videos/{MODEL}/{snapshot}/{LAYER}/2_s0.mp4"
    store.write_bytes(video, b"not a real video")
    row = {"unit": 2, "seed": 0, "method": "dgn", "activation_final": 2.5, "frames": 16, "fps": 8, "video": video,
           "score_shuffled": 1.25}
    store.write_bytes(f"videos/model={MODEL}/snapshot={snapshot}/layer={LAYER}/part-synthetic.parquet",
                      parquet_bytes(pa.Table.from_pylist([row])))


def _tracking(store: Store, snapshots: tuple[str, ...], seeds: int, px: int, rng) -> None:
    """What `neuron-atlas snapshots` adds for unit 3: its tracking rows, filmstrip and plot."""
    from pipelines.snapshots.tracking import TRACKING_SCHEMA, tracking_dir

    folder = tracking_dir(MODEL, "image", HP)
    strip, plot = f"{folder}/filmstrips/{LAYER}/3.png", f"{folder}/plots/{LAYER}.png"
    for name in (strip, plot):
        store.write_bytes(name, _png(rng, px))
    rows = []
    for i, snapshot in enumerate(snapshots):
        for s in range(seeds):
            key = ItemKey(MODEL, snapshot, LAYER, 3, None, None, s, "image", HP)
            rows.append({"model": MODEL, "layer": LAYER, "unit": 3, "seed": s, "method": "image", "hyperparams": HP,
                         "snapshot": snapshot, "step": int(snapshot), "checkpoint": f"ckpt-{snapshot}.pt",
                         "activation_start": 0.9, "activation_final": 1.003 + s / 10, "image": key.image_path,
                         "val_accuracy": 0.5 + i / 10, "metrics": None, "filmstrip": strip, "plot": plot})
    store.write_bytes(f"{folder}/steps.parquet", parquet_bytes(pa.Table.from_pylist(rows, schema=TRACKING_SCHEMA)))


def synthetic_out(root: str, units: int = 100, seeds: int = 2, snapshots: tuple[str, ...] = ("000100",),
                  topk: bool = True, k: int = 4, crops: int = 16, extras: bool = False, px: int = 32,
                  seed: int = 0) -> dict:
    """Write the outputs (module docstring) under the local folder `root`; returns what was written."""
    os.makedirs(root, exist_ok=True)
    store = Store(root)
    rng = np.random.default_rng(seed)
    for snapshot in snapshots:
        _atlas(store, snapshot, units, seeds, px, rng)
        if topk:
            _topk(store, snapshot, units, k, crops, px, rng)
        if extras:
            _extras(store, snapshot, seeds, px, rng)
    if extras and len(snapshots) > 1:
        _tracking(store, snapshots, seeds, px, rng)
    manifest = {"format": 1, "runs": {"synthetic": {
        "model": MODEL, "model_slug": MODEL, "snapshot": snapshots[-1], "method": "image", "layers": [LAYER],
        "items": units * seeds * len(snapshots), "seeds": seeds, "status": "finished", "weights": "synthetic",
        "weights_sha256": "0" * 64, "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:01:00Z",
        "versions": {"neuron-atlas": "0.1.0"}}}}
    store.write_bytes("manifest.json", json.dumps(manifest, indent=2).encode())
    return {"model": MODEL, "layer": LAYER, "snapshots": snapshots, "units": units, "seeds": seeds}
