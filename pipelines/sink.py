"""Writing results under --out: PNGs, the `units/` and `activations/` Parquet datasets, and reading back
which keys are done.

Order of writes per batch: every PNG first, then the activations part, then the units part. A key counts as
done only when its `units/` row exists, so a crash at any moment leaves either a finished key (PNG and
rows present) or a key that the next run recomputes; part names derive from the batch's keys.
Partition columns (model, snapshot, layer) live in the hive path, not inside the files, so pandas, DuckDB
and pyarrow.dataset read `units/` as one table.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from PIL import Image

from tasks.actor import ItemResult

from .keys import ItemKey, batch_digest
from models.retry import with_retries
from .storage import Store

__all__ = ["write_batch", "done_keys", "png_bytes", "pil_image", "parquet_bytes", "read_units", "read_dataset",
           "PARTITIONING", "UNITS_SCHEMA"]

PARTITION_FIELDS = [("model", pa.string()), ("snapshot", pa.string()), ("layer", pa.string())]
PARTITIONING = ds.partitioning(pa.schema(PARTITION_FIELDS), flavor="hive")

UNITS_SCHEMA = pa.schema([
    ("unit", pa.int32()), ("y", pa.int32()), ("x", pa.int32()), ("seed", pa.int32()), ("method", pa.string()),
    ("objective", pa.string()), ("activation_start", pa.float64()), ("activation_final", pa.float64()),
    ("activation_best", pa.float64()), ("steps", pa.int32()), ("image", pa.string()),
    ("hyperparams", pa.string()), ("device", pa.string()),
])
ACTIVATIONS_SCHEMA = pa.schema([
    ("unit", pa.int32()), ("y", pa.int32()), ("x", pa.int32()), ("seed", pa.int32()), ("method", pa.string()),
    ("hyperparams", pa.string()), ("activation", pa.list_(pa.float32())),
])


def pil_image(image: np.ndarray) -> Image.Image:
    """uint8 [H, W, 3] -> an RGB picture; [H, W, 1] or [H, W] (a 1-channel net's) -> a greyscale one."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return Image.fromarray(np.ascontiguousarray(image), "L" if image.ndim == 2 else "RGB")


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 [H, W, 3] (RGB) or [H, W, 1] (greyscale) -> PNG bytes with no metadata chunks."""
    buf = io.BytesIO()
    pil_image(image).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _table(keys: Sequence[ItemKey], columns: dict, schema: pa.Schema) -> pa.Table:
    base = {"unit": [k.unit for k in keys], "y": [k.y for k in keys], "x": [k.x for k in keys],
            "seed": [k.seed for k in keys], "method": [k.method for k in keys],
            "hyperparams": [k.hyperparams for k in keys]}
    base.update(columns)
    return pa.table({f.name: base[f.name] for f in schema}, schema=schema)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def write_batch(store: Store, keys: Sequence[ItemKey], results: Sequence[ItemResult], steps: int, device: str,
                pool: ThreadPoolExecutor | None = None) -> None:
    """Write one batch (all keys share a partition); PNGs, then activations, then the units rows."""
    if not keys:
        return
    partition = keys[0].partition()
    if any(k.partition() != partition for k in keys):
        raise ValueError("a batch must not span partitions (model, snapshot, layer)")
    pngs = [(k.image_path, png_bytes(r.image)) for k, r in zip(keys, results)]
    if pool is not None:
        list(pool.map(lambda kv: store.write_bytes(*kv), pngs))
    else:
        for rel, data in pngs:
            store.write_bytes(rel, data)
    part = f"part-{batch_digest(keys)}.parquet"
    acts = _table(keys, {"activation": [r.activation.astype(np.float32) for r in results]}, ACTIVATIONS_SCHEMA)
    store.write_bytes(f"activations/{partition}/{part}", parquet_bytes(acts))
    units = _table(keys, {
        "objective": [r.objective for r in results],
        "activation_start": [r.act_start for r in results],
        "activation_final": [r.act_final for r in results],
        "activation_best": [r.act_best for r in results],
        "steps": [steps] * len(keys), "image": [k.image_path for k in keys],
        "device": [device] * len(keys),
    }, UNITS_SCHEMA)
    store.write_bytes(f"units/{partition}/{part}", parquet_bytes(units))


def read_units(store: Store, columns: list[str] | None = None) -> pa.Table:
    """The whole `units/` dataset as one Arrow table (partition columns typed as strings)."""
    return read_dataset(store, "units", columns)


def read_dataset(store: Store, rel: str, columns: list[str] | None = None,
                 partitioning: ds.Partitioning = PARTITIONING, partitions: Iterable[str] | None = None) -> pa.Table:
    """Every live Parquet file under `rel` as one Arrow table, hive partition columns included (empty if none);
    files that a compact file has merged are skipped (pipelines/compaction.py), so each row is read once even
    while a compaction runs."""
    from .compaction import live_files

    listed = store.find(rel, ".parquet") if partitions is None else [
        f for p in sorted(set(partitions)) for f in store.find(f"{rel}/{p}", ".parquet")]
    files = [store.path(p) for p in live_files(store, listed)]
    if not files:
        return pa.table({})

    def load() -> pa.Table:
        dataset = ds.dataset(files, filesystem=store.fs, format="parquet", partitioning=partitioning,
                             partition_base_dir=store.path(rel))
        return dataset.to_table(columns=columns)

    return with_retries(load, f"{store.uri}/{rel}", store.retry)


def done_keys(store: Store, rel: str = "units", partitions: Iterable[str] | None = None) -> set[tuple]:
    """Key tuples (ItemKey.as_tuple order) of every row already written under `rel/` (`units/`; `videos/` for
    preferred videos); with `partitions` (ItemKey.partition() paths), only those are listed and read."""
    table = read_dataset(store, rel, columns=["model", "snapshot", "layer", "unit", "y", "x", "seed", "method",
                                              "hyperparams"], partitions=partitions)
    if table.num_rows == 0:
        return set()
    cols = [table.column(c).to_pylist() for c in table.column_names]
    return set(zip(*cols))
