"""The atlas driver: work list -> batches -> Ray actors -> files under --out, with progress and accounting.

Keys already written under --out are dropped first, so a rerun (or a resume after the driver was killed)
only computes what is missing. Batches go out through `dispatch` (lost workers' batches are re-queued) and
each finished batch is written by the driver exactly once, so retries can never duplicate a key.
`start_actors` and `synthesize` are the pieces other drivers reuse (training-snapshot sweeps: actors that
live across polling rounds, batches that run on a snapshot's weights).
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from tasks.actor import Batch, BatchResult, NetSpec, SynthesisActor, WorkItem

from .cluster import Pool, start_pool
from .dispatch import call, dispatch
from .keys import ItemKey
from .manifest import run_record, utc_now, write_manifest
from .progress import Progress
from .sink import done_keys, write_batch
from .spec import AtlasSpec, Plan

__all__ = ["RunSummary", "run_atlas", "make_batches", "ActorPool",
           "Synthesized", "start_actors", "synthesize", "run_id_of", "remaining", "atlas_batch_size",
           "compact_partitions", "whole_groups", "memory_batch_size", "batch_for_memory", "first_of_partition"]


@dataclass
class RunSummary:
    total: int
    skipped: int
    done: int
    wall_s: float
    synth_s: float
    actors: int

    @property
    def synth_fraction(self) -> float:
        return self.synth_s / (self.wall_s * self.actors) if self.wall_s > 0 and self.actors else 0.0

    def line(self, out: str) -> str:
        if self.done == 0:
            return f"nothing to do: all {self.total} items already under {out}"
        return (f"done: {self.done} items ({self.skipped} already present) in {self.wall_s:.1f} s wall; "
                f"actors synthesizing {self.synth_fraction:.0%} of wall time; results in {out}")


def make_batches(items: list[tuple[ItemKey, object]], batch_size: int, *, whole_units: bool = False
                 ) -> list[list[tuple[ItemKey, object]]]:
    """Chunk items into batches that never span a (model, snapshot, layer) partition, each partition's items
    in near-equal batches of at most `batch_size` (10 items at 4: 4, 3, 3, not 4, 4, 2, whose small last batch
    leaves the cores idle). `whole_units`: a unit's items (its seeds, one diversity group) always share a
    batch, which then holds whole units only (one unit with more seeds than `batch_size` is one batch)."""
    groups: dict[str, list] = {}
    for key, item in items:
        groups.setdefault(key.partition(), []).append((key, item))
    if not whole_units:
        return [chunk for g in groups.values() for chunk in _even_chunks(g, batch_size)]
    out = []
    for g in groups.values():
        units: dict[tuple, list] = {}
        for key, item in g:
            units.setdefault(_unit_of(key), []).append((key, item))
        batch: list = []
        for members in units.values():
            if batch and len(batch) + len(members) > batch_size:
                out.append(batch)
                batch = []
            batch += members
        if batch:
            out.append(batch)
    return out


def _even_chunks(items: list, size: int) -> list[list]:
    n = -(-len(items) // size)  # the fewest batches of at most `size`
    bounds = [round(i * len(items) / n) for i in range(n + 1)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:])]


def _unit_of(key: ItemKey) -> tuple:
    """The unit a key belongs to (its seeds: one diversity group)."""
    return key.partition(), key.unit, key.y, key.x


def whole_groups(items: list[tuple[ItemKey, WorkItem]], missing: list[tuple[ItemKey, WorkItem]]
                 ) -> tuple[list[tuple[ItemKey, WorkItem]], frozenset[ItemKey]]:
    """For a run with diversity, where a unit's seeds are optimized as one group: the items of every unit
    with a missing item (a resumed run recomputes the whole group, so each seed's image is the one an
    uninterrupted run gives) and the keys among them already written, which must not be written again."""
    need = {_unit_of(k) for k, _ in missing}
    pending = {k for k, _ in missing}
    todo = [(k, w) for k, w in items if _unit_of(k) in need]
    return todo, frozenset(k for k, _ in todo if k not in pending)


def run_id_of(plan: Plan) -> str:
    sel = repr(sorted({(k.layer, k.unit, k.y, k.x) for k, _ in plan.items}))
    return hashlib.sha256((plan.hyperparams + plan.snapshot + plan.model_slug + sel).encode()).hexdigest()[:12]


@dataclass
class ActorPool:
    """Started synthesis actors (pipelines/cluster.Pool: more join as GPUs do) and the batch size that suits
    their devices."""

    pool: Pool
    batch_size: int

    @property
    def actors(self) -> list:
        return self.pool.actors


@dataclass
class Synthesized:
    """What `synthesize` did: items written, seconds the actors spent synthesizing and loading weights."""

    written: int = 0
    synth_s: float = 0.0
    load_s: float = 0.0


def start_actors(spec: AtlasSpec, code_upper, net: NetSpec | None = None,
                 actor_class: type = SynthesisActor, log=print) -> ActorPool:
    """Start the actors (`actor_class`, a SynthesisActor) where `spec.placement` says (pipelines/cluster.py),
    each holding `net` (default `spec.net`); returns once each first actor answered."""
    pool = start_pool(actor_class, (net or spec.net,), {"code_upper": code_upper}, spec.placement, log)
    return ActorPool(pool, atlas_batch_size(spec.batch_size, pool.on_gpu))


def memory_batch_size(pool: ActorPool, spec: AtlasSpec, todo: list[tuple[ItemKey, WorkItem]], log=print) -> int:
    """The batch size for GPU actors from memory: one actor runs 2 steps of the first few items and reports
    the peak bytes per item and the free bytes (SynthesisActor.memory_per_item); the batch takes 80 % of the
    free memory, at most `MAX_GPU_BATCH` items. A CPU pool keeps its batch size."""
    if not pool.pool.on_gpu or not todo:
        return pool.batch_size
    probe = Batch(tuple(w for _, w in first_of_partition(todo, 4)), spec.config, 2, spec.objective)
    measured = call(pool.actors[0], "memory_per_item", probe)
    if measured is None:
        return pool.batch_size
    per_item, free = measured
    size = batch_for_memory(per_item, free)
    log(f"GPU batch: {size} items ({per_item / 2 ** 20:.0f} MiB per item, {free / 2 ** 30:.1f} GiB free)")
    return size


MAX_GPU_BATCH = 512


def first_of_partition(todo: list[tuple[ItemKey, WorkItem]], n: int) -> list[tuple[ItemKey, WorkItem]]:
    """The first to-do (key, item) pairs of the first one's partition (one snapshot, one layer), at most `n`:
    a batch to measure a run's cost or memory on. `todo` must not be empty."""
    first = todo[0][0].partition()
    return [kv for kv in todo if kv[0].partition() == first][:n]


def batch_for_memory(per_item: float, free: float, fraction: float = 0.8, most: int = MAX_GPU_BATCH) -> int:
    """Items per batch that fill `fraction` of `free` bytes at `per_item` bytes each, between 1 and `most`."""
    return max(1, min(most, int(fraction * free / max(per_item, 1.0))))


def atlas_batch_size(requested: int | None, on_gpu: bool) -> int:
    """Items per batch: --batch-size, else 64 on a GPU and 10 on a CPU. On a 2-core CPU, with freed memory kept
    (models/host_memory.py), the lucid step per item falls from batch 1 to about 10 and is flat beyond: 23.8,
    15.5, 13.2, 11.9, 11.4, 11.3, 10.7, 10.4, 10.4, 10.6 ms at batches 1-6, 8, 10, 12, 16, alternating in one
    process (before memory was kept, page faults grew with the batch and 4-5 was best)."""
    return requested or (64 if on_gpu else 10)


def synthesize(pool: ActorPool, spec: AtlasSpec, store, todo: list[tuple[ItemKey, WorkItem]], *, log=print,
               weights: Mapping[str, str] | None = None,
               on_batch: Callable[[list[ItemKey], BatchResult], None] | None = None,
               on_error: Callable[[list[ItemKey], str], None] | None = None,
               skip: frozenset[ItemKey] = frozenset()) -> Synthesized:
    """Dispatch `todo` in batches that never span a partition, write each finished batch once (then call
    `on_batch`). `weights` maps a snapshot label to the target weights its batches run on; the batches of one
    snapshot are consecutive, so an actor loads each snapshot's weights once per group of batches. A batch
    whose weights an actor could not load writes nothing and goes to `on_error` (RuntimeError without one).
    With diversity a unit's seeds share a batch; keys in `skip` (a group's seeds written before a resume,
    `whole_groups`) are optimized with their group but not written again."""
    done = Synthesized()
    progress = Progress(len(todo) - len(skip))
    diversity = (spec.diversity.weight, spec.diversity.layer) if spec.diversity else None

    def submit(actor, batch):
        uri = weights.get(batch[0][0].snapshot) if weights else None
        init = tuple(spec.init_photos.images[w.seed] for _, w in batch) if spec.init_photos else None
        return actor.run.remote(Batch(tuple(w for _, w in batch), spec.config, spec.steps, spec.objective, uri,
                                      diversity, init))

    with ThreadPoolExecutor(max_workers=8) as threads:
        def on_result(batch, result) -> None:
            if skip and result.error is None:
                kept = [(b, r) for b, r in zip(batch, result.results) if b[0] not in skip]
                batch, result = [b for b, _ in kept], replace(result, results=[r for _, r in kept])
            keys = [k for k, _ in batch]
            if result.error is not None:
                if on_error is None:
                    raise RuntimeError(result.error)
                progress.update(len(batch))
                on_error(keys, result.error)
                return
            write_batch(store, keys, result.results, spec.steps, result.device, threads)
            done.written += len(batch)
            done.synth_s += result.seconds
            done.load_s += result.load_seconds
            progress.update(len(batch))
            if on_batch is not None:
                on_batch(keys, result)

        dispatch(pool.actors, make_batches(todo, pool.batch_size, whole_units=diversity is not None), submit,
                 on_result, log, grow=pool.pool.grow)
    progress.close()
    return done


def remaining(plan: Plan, done: set[tuple], log=print, noun: str = "items") -> list[tuple[ItemKey, WorkItem]]:
    """The plan's items whose keys are not in `done`, in order; says so when a run resumes."""
    todo = [(k, w) for k, w in plan.items if k.as_tuple() not in done]
    skipped = len(plan.items) - len(todo)
    if todo and skipped:
        log(f"resuming: skipping {skipped} of {len(plan.items)} {noun} already under {plan.spec.out}; "
            f"{len(todo)} to go")
    return todo


def run_atlas(plan: Plan, *, log=print) -> RunSummary:
    """Synthesize every item of `plan` not yet under --out; returns the accounting summary."""
    spec = plan.spec
    store = spec.store()
    t0 = time.perf_counter()
    store.remove_stale_temporaries()
    todo = remaining(plan, done_keys(store, partitions={k.partition() for k, _ in plan.items}), log)
    skipped = len(plan.items) - len(todo)
    todo, rewrite = whole_groups(plan.items, todo) if spec.diversity else (todo, frozenset())
    if not todo:
        return RunSummary(len(plan.items), skipped, 0, time.perf_counter() - t0, 0.0, 0)
    pool = start_actors(spec, plan.code_upper, log=log)  # before any write: a run that cannot start leaves nothing
    if spec.batch_size is None:
        pool.batch_size = memory_batch_size(pool, spec, todo, log)
    run_id = run_id_of(plan)
    write_manifest(store, run_id, run_record(plan), status="running")
    if spec.init_photos is not None:
        spec.init_photos.write(store)
    result = synthesize(pool, spec, store, todo, log=log, skip=rewrite)
    wall = time.perf_counter() - t0
    summary = RunSummary(len(plan.items), skipped, result.written, wall, result.synth_s, len(pool.actors))
    write_manifest(store, run_id, run_record(plan), status="finished", finished_at=utc_now(),
                   synth_fraction=round(summary.synth_fraction, 4))
    compact_partitions(store, [k for k, _ in todo], log)
    return summary


def compact_partitions(store, keys, log=print, datasets: tuple[str, ...] = ("units", "activations")) -> None:
    """Merge the parts that a finished run wrote into the partitions of `keys` (pipelines/compaction.py)."""
    from .compaction import compact

    folders = {f"{d}/{p}" for p in {k.partition() for k in keys} for d in datasets}
    if folders:
        c = compact(store, datasets, folders=folders)
        log(f"compacted {c.files_before:,} files of {c.partitions:,} partitions into {c.files_after:,} "
            f"({c.seconds:.1f} s)")
