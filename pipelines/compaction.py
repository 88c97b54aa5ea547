"""Compaction: a partition's many small Parquet parts merged into few files, safe at any kill.

Runs write one `part-<digest>.parquet` per batch into each partition folder of `units/`, `activations/` and
`videos/` (8 items a part on a CPU, 64 on a GPU): at a million items, hundreds of thousands of small files,
which is what makes DuckDB, pandas and Athena slow on object storage. `compact` merges them:

- per partition folder, the *live* files are those that no compact file present names as a source; a compact
  file, `compact-<digest of its sources' names>.parquet`, records the names of the files it merged in its
  Parquet key-value metadata (`neuron-atlas.sources`);
- live files smaller than `target_bytes` (64 MB) are merged into one new compact file (written atomically,
  under a name derived from its sources, so a rerun after a kill writes the same file again), then the
  sources are deleted; a partition with one live file, or whose small files are already one, is left alone;
- a kill at any moment leaves, at worst, a compact file beside some of its sources: `live_files` hides those
  sources from every reader of the project (`read_dataset`, hence the resume check, the report, snapshots,
  nearest), and the next compaction deletes them. Every key is present exactly once at every moment.

A plain reader of the raw files (`read_parquet('units/**/*.parquet')` in DuckDB, pandas on the folder) can see
a partition's rows twice during the moments between a compact file's write and the deletion of its sources;
the site's query snippets deduplicate on the key, so they are exact at every moment too.

Datasets written once per run (`topk/`, `inverse/`, `nearest/`, `video-order/`) grow with runs, not items,
and their readers address parts by run id: they are not compacted.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from models.retry import with_retries

from .storage import Store

__all__ = ["COMPACTED_DATASETS", "SOURCES_KEY", "TARGET_BYTES", "live_files", "compact", "CompactionSummary"]

COMPACTED_DATASETS = ("units", "activations", "videos")
SOURCES_KEY = b"neuron-atlas.sources"
TARGET_BYTES = 64 * 2 ** 20
_COMPACT = "compact-"


def _is_compact(name: str) -> bool:
    return posixpath.basename(name).startswith(_COMPACT)


def _sources(store: Store, rel: str) -> list[str]:
    """The file names a compact file says it merged (read from its footer only)."""
    def read() -> list[str]:
        with store.fs.open(store.path(rel), "rb") as f:
            meta = pq.read_metadata(f).metadata or {}
        return json.loads(meta.get(SOURCES_KEY, b"[]"))
    return with_retries(read, f"{store.uri}/{rel}", store.retry)


def live_files(store: Store, files: Iterable[str]) -> list[str]:
    """`files` (paths relative to the store) without those that a compact file among them names as a source."""
    files = list(files)
    by_folder: dict[str, set[str]] = {}
    for rel in files:
        if _is_compact(rel):
            folder = posixpath.dirname(rel)
            try:
                names = _sources(store, rel)
            except FileNotFoundError:  # removed by a concurrent compaction after the listing
                names = [posixpath.basename(rel)]
            by_folder.setdefault(folder, set()).update(names)
    if not by_folder:
        return files
    return [rel for rel in files if posixpath.basename(rel) not in by_folder.get(posixpath.dirname(rel), ())]


@dataclass
class CompactionSummary:
    partitions: int = 0  # partition folders looked at
    merged: int = 0  # compact files written
    files_before: int = 0
    files_after: int = 0
    removed: int = 0  # source files deleted (this run's and those a killed run left)
    rows: int = 0
    seconds: float = 0.0

    def line(self, out: str) -> str:
        return (f"compacted {out}: {self.files_before:,} files in {self.partitions:,} partitions -> "
                f"{self.files_after:,} ({self.merged:,} merged files written, {self.removed:,} parts removed, "
                f"{self.rows:,} rows) in {self.seconds:.1f} s")


def _folders(store: Store, datasets: Iterable[str], only: set[str] | None) -> tuple[dict[str, list[str]],
                                                                                 dict[str, int]]:
    """(partition folder -> its Parquet files, file -> size), for every dataset, or for the folders in `only`
    (listed one by one: a finished run's few partitions, not the whole output)."""
    out: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    roots = sorted(only) if only is not None else list(datasets)
    for root in roots:
        for rel, size in store.find_sizes(root, ".parquet").items():
            folder = posixpath.dirname(rel)
            if only is None or folder in only:
                out.setdefault(folder, []).append(rel)
                sizes[rel] = size
    return out, sizes


def compact(store: Store, datasets: Iterable[str] = COMPACTED_DATASETS, *, folders: Iterable[str] | None = None,
            target_bytes: int = TARGET_BYTES, log: Callable[[str], None] | None = None,
            threads: int = 16) -> CompactionSummary:
    """Compact every partition folder of `datasets` under `store` (only `folders`, relative paths, when given);
    reads and deletes run on `threads` threads (object stores answer many requests at once)."""
    t0 = time.perf_counter()
    summary = CompactionSummary()
    found, sizes = _folders(store, datasets, set(folders) if folders is not None else None)
    last = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i, (folder, files) in enumerate(sorted(found.items())):
            summary.partitions += 1
            summary.files_before += len(files)
            live = live_files(store, files)
            covered = sorted(set(files) - set(live))  # sources a killed compaction left behind
            list(pool.map(store.remove, covered))
            summary.removed += len(covered)
            small = [rel for rel in live if sizes[rel] < target_bytes]
            if len(small) > 1:
                summary.rows += _merge(store, folder, small, pool)
                summary.merged += 1
                list(pool.map(store.remove, small))  # only once the compact file holds every row
                summary.removed += len(small)
            summary.files_after += len(live) - len(small) + 1 if len(small) > 1 else len(live)
            if log is not None and time.monotonic() - last > 10:
                last = time.monotonic()
                log(f"compacting: {i + 1:,}/{len(found):,} partitions")
    summary.seconds = time.perf_counter() - t0
    return summary


def _merge(store: Store, folder: str, sources: list[str], pool: ThreadPoolExecutor) -> int:
    """Write the compact file of `sources` (atomically, named after them); returns its row count."""
    names = sorted(posixpath.basename(rel) for rel in sources)
    tables = list(pool.map(lambda r: pq.read_table(io.BytesIO(store.read_bytes(r))), sorted(sources)))
    table = pa.concat_tables(tables, promote_options="default")
    meta = dict(table.schema.metadata or {})
    meta[SOURCES_KEY] = json.dumps(names).encode()
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=1 << 17)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    store.write_bytes(f"{folder}/{_COMPACT}{digest}.parquet", buf.getvalue())
    return table.num_rows
