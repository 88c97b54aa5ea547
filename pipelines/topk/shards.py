"""Resumable passes over an image set in shards: the driver ships shard names, the workers read the pixels.

`make_shards` cuts an image set into contiguous shards; a shard is named by its first global index and a
digest of its sources, so a changed image set never reuses a stale record. `run_pass` sends the shards not
yet recorded to the workers (pipelines/dispatch.py: lost workers' shards are re-queued), and for each
finished one writes its record, `<prefix>/<shard name>.parquet` (the payload's table, with the count of
images read and the skipped files in the file's metadata), before merging it into the driver's state. On a
rerun the recorded shards are merged from their records instead of recomputed, so a run killed at any
moment (even SIGKILL) loses nothing, and since merges are exact and each shard is merged once, nothing is
counted twice. Every unreadable file is named in the log as its shard finishes and counted in the summary.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from models.retry import RetryPolicy

from ..cluster import Placement, Pool, start_pool
from ..dispatch import dispatch
from ..imagesets import ImageSet
from ..progress import Progress
from ..sink import parquet_bytes
from ..storage import Store

__all__ = ["Shard", "ShardResult", "Payload", "PassSummary", "CommandSummary", "Workers", "make_shards", "run_pass",
           "cut_crops", "per_source"]

_META = b"neuron_atlas"


@dataclass(frozen=True)
class Shard:
    start: int  # global index of its first source in the image set
    sources: tuple[str, ...]
    labels: tuple[str | None, ...]

    @property
    def name(self) -> str:
        digest = hashlib.sha256("\n".join(self.sources).encode()).hexdigest()[:12]
        return f"{self.start:09d}-{digest}"


class Payload(Protocol):
    """A shard's mergeable result: what its record holds."""

    def to_table(self) -> pa.Table: ...

    @classmethod
    def from_table(cls, table: pa.Table) -> "Payload": ...


@dataclass
class ShardResult:
    payload: Any  # a Payload
    read: int  # images decoded
    skipped: list[tuple[str, str]]  # (source, reason) of each unreadable one
    seconds: float  # time the worker spent on the shard


@dataclass
class PassSummary:
    shards: int
    resumed: int  # shards merged from their records
    read: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    busy_s: float = 0.0
    wall_s: float = 0.0

    def line(self, what: str) -> str:
        return (f"{what}: {self.read} images read, {len(self.skipped)} skipped as unreadable, {self.shards} "
                f"shards ({self.resumed} from an earlier run) in {self.wall_s:.1f} s")


@dataclass
class CommandSummary:
    """The last line of a `topk` or `nearest` command: what was done, or that nothing was left to do."""

    what: str  # e.g. "top-k of 69 units in 2 layers"
    folder: str  # the output folder under --out
    pass_: PassSummary | None  # None: a finished run, rerun

    def line(self, out: str) -> str:
        if self.pass_ is None:
            return f"nothing to do: the {self.what} are already under {out}/{self.folder}"
        return f"done: {self.what}; {self.pass_.line('images')}; results in {out}/{self.folder}"


def make_shards(images: ImageSet, size: int) -> list[Shard]:
    src = images.sources
    return [Shard(i, tuple(s.uri for s in src[i:i + size]), tuple(s.label for s in src[i:i + size]))
            for i in range(0, len(src), size)]


class Workers:
    """The pass's actors, started on first use where `placement` says (pipelines/cluster.start_pool: GPU actors
    that grow as GPUs join, or CPU actors; one worker on this machine lives in the driver's process, no Ray)."""

    def __init__(self, cls: type, args: tuple, placement: Placement, log=print):
        self.cls, self.args, self.placement, self.log = cls, args, placement, log
        self.pool: Pool | None = None

    def get(self) -> list:
        if self.pool is None:
            self.pool = start_pool(self.cls, self.args, {}, self.placement, self.log)
        return self.pool.actors

    @property
    def on_gpu(self) -> bool:
        return self.pool is not None and self.pool.on_gpu

    def grow(self) -> list:
        """Actors started for GPUs that joined (pipelines/cluster.Pool.grow)."""
        return self.pool.grow() if self.pool is not None else []


def _record(result: ShardResult) -> bytes:
    table = result.payload.to_table()
    meta = json.dumps({"read": result.read, "skipped": result.skipped, "seconds": result.seconds}).encode()
    return parquet_bytes(table.replace_schema_metadata({**(table.schema.metadata or {}), _META: meta}))


def run_pass(store: Store, prefix: str, shards: Sequence[Shard], payload: type, workers: Workers,
             submit: Callable[[Any, Shard], Any], merge: Callable[[Any], None], *, desc: str,
             log=print) -> PassSummary:
    """Every shard merged exactly once into the caller's state (`merge(payload)`); returns the accounting."""
    t0 = time.perf_counter()
    recorded = {p.rsplit("/", 1)[-1][: -len(".parquet")] for p in store.find(prefix, ".parquet")}
    done = [s for s in shards if s.name in recorded]
    summary = PassSummary(len(shards), len(done))

    def take(result: ShardResult) -> None:
        merge(result.payload)
        summary.read += result.read
        summary.skipped += [tuple(s) for s in result.skipped]
        summary.busy_s += result.seconds

    for shard in done:
        table = pq.read_table(pa.BufferReader(store.read_bytes(f"{prefix}/{shard.name}.parquet")))
        meta = json.loads(table.schema.metadata[_META])
        take(ShardResult(payload.from_table(table), meta["read"], meta["skipped"], meta["seconds"]))
    todo = [s for s in shards if s.name not in recorded]
    if todo:
        if done:
            log(f"resuming: {len(done)} of {len(shards)} shards already recorded under {store.uri}/{prefix}; "
                f"{len(todo)} to go")
        progress = Progress(sum(len(s.sources) for s in todo), desc=desc)

        def on_result(shard: Shard, result: ShardResult) -> None:
            store.write_bytes(f"{prefix}/{shard.name}.parquet", _record(result))
            for source, reason in result.skipped:
                log(f"skipped unreadable image {source}: {reason}")
            take(result)
            progress.update(len(shard.sources))

        dispatch(workers.get(), todo, submit, on_result, log, grow=workers.grow)
        progress.close()
    summary.wall_s = time.perf_counter() - t0
    return summary


def per_source(workers: Workers, sources: Sequence[str], wanted: dict[int, list], job_of: Callable[[tuple, tuple], Any],
               method: str, on_item: Callable[[int, int, bytes], None], what: str, log=print,
               per_job: int = 16) -> set[int]:
    """Send `wanted` (source index -> requests) to the workers' `method` in jobs of `per_job` sources
    (`job_of(source URIs, their request lists)` builds one); a job returns (per source a list of bytes, one per
    request, empty when unreadable; failures), and `on_item(index, request number, bytes)` runs on the driver.
    Returns the indices that could not be read now."""
    order = sorted(wanted)
    jobs = [tuple(order[i:i + per_job]) for i in range(0, len(order), per_job)]
    lost: set[int] = set()

    def submit(actor, job):
        return getattr(actor, method).remote(job_of(tuple(sources[i] for i in job), tuple(tuple(wanted[i])
                                                                                          for i in job)))

    def on_result(job, value) -> None:
        outputs, failed = value
        for source, reason in failed:
            log(f"cannot draw {what} from {source} (it was read before): {reason}")
        for i, items in zip(job, outputs):
            if not items:
                lost.add(i)
            for b, blob in enumerate(items):
                on_item(i, b, blob)

    if jobs:
        dispatch(workers.get(), jobs, submit, on_result, log, grow=workers.grow)
    return lost


def cut_crops(workers: Workers, sources: Sequence[str], wanted: dict[int, list[tuple[int, int, int, int]]],
              storage_options, on_crop: Callable[[int, int, bytes], None], log=print,
              per_job: int = 16, retry=None) -> set[int]:
    """Cut `wanted` boxes (source index -> boxes) from the net's input view of each image on the workers;
    `on_crop(index, box number, png)` on the driver; `retry` (a RetryPolicy) bounds each read. Returns the
    indices that could not be read now."""
    from .worker import CropJob

    return per_source(workers, sources, wanted,
                      lambda srcs, boxes: CropJob(srcs, boxes, storage_options, retry or RetryPolicy()), "crops",
                      on_crop, "crops", log, per_job)
