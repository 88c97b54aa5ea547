"""The atlas driver: work list -> batches -> Ray actors -> files under --out, with progress and accounting.

Keys already written under --out are dropped first, so a rerun (or a resume after the driver was killed)
only computes what is missing. Each actor keeps two batches queued so it never waits on the driver; the
driver writes finished batches while the actors compute the next ones. A batch whose actor died is put
back on the queue (actors are restarted by Ray, see `ACTOR_OPTIONS`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import ray
from ray.exceptions import RayActorError

from tasks.actor import Batch, SynthesisActor

from .keys import ItemKey
from .manifest import write_manifest
from .progress import Progress
from .sink import done_keys, write_batch
from .spec import Plan
from .storage import Store

__all__ = ["RunSummary", "run_atlas", "make_batches", "ACTOR_OPTIONS"]

# Actors are restarted when their process or node dies, and a call that was in flight is not retried by Ray
# itself: the driver re-queues that batch, so it is computed once more on a live actor and written once.
ACTOR_OPTIONS = {"max_restarts": 4, "max_task_retries": 0}
QUEUE_DEPTH = 2  # batches queued per actor


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


def make_batches(items: list[tuple[ItemKey, object]], batch_size: int) -> list[list[tuple[ItemKey, object]]]:
    """Chunk items into batches that never span a (model, snapshot, layer) partition."""
    groups: dict[str, list] = {}
    for key, item in items:
        groups.setdefault(key.partition(), []).append((key, item))
    return [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]


def _init_ray(address: str) -> None:
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=True)
    if address in ("", "local", None):
        ray.init(**kwargs)
    else:
        ray.init(address=address, **kwargs)


def _actor_layout(plan: Plan) -> tuple[int, dict]:
    """How many actors, and their resource options: one per GPU, else one CPU actor per `--actors`."""
    res = ray.cluster_resources()
    gpus = res.get("GPU", 0)
    cpus = int(res.get("CPU", os.cpu_count() or 1))
    spec = plan.spec
    if gpus >= spec.gpus_per_actor > 0:
        n = spec.actors or max(1, int(gpus // spec.gpus_per_actor))
        return n, {"num_gpus": spec.gpus_per_actor, "num_cpus": 1}
    n = spec.actors or 1
    return n, {"num_cpus": max(1, cpus // n)}


def run_id_of(plan: Plan) -> str:
    sel = repr(sorted({(k.layer, k.unit, k.y, k.x) for k, _ in plan.items}))
    return hashlib.sha256((plan.hyperparams + plan.snapshot + plan.model_slug + sel).encode()).hexdigest()[:12]


def run_atlas(plan: Plan, *, log=print) -> RunSummary:
    """Synthesize every item of `plan` not yet under --out; returns the accounting summary."""
    spec = plan.spec
    store = Store(spec.out, spec.storage_options)
    t0 = time.perf_counter()
    done = done_keys(store)
    todo = [(k, w) for k, w in plan.items if k.as_tuple() not in done]
    skipped = len(plan.items) - len(todo)
    if not todo:
        return RunSummary(len(plan.items), skipped, 0, time.perf_counter() - t0, 0.0, 0)
    if skipped:
        log(f"resuming: {skipped} of {len(plan.items)} items already under {spec.out}, {len(todo)} to go")
    run_id = run_id_of(plan)
    write_manifest(store, plan, run_id, status="running")

    _init_ray(spec.address)
    n_actors, resources = _actor_layout(plan)
    on_gpu = "num_gpus" in resources
    batch_size = spec.batch_size or (64 if on_gpu else 8)
    threads = None if on_gpu else resources["num_cpus"]
    actor_cls = ray.remote(SynthesisActor).options(**resources, **ACTOR_OPTIONS)
    actors = [actor_cls.remote(spec.net, threads=threads, code_upper=plan.code_upper) for _ in range(n_actors)]

    queue = deque(make_batches(todo, batch_size))
    inflight: dict = {}  # ObjectRef -> (actor index, batch)
    synth_s = 0.0
    written = 0
    bar = Progress(len(todo))

    def submit(ai: int) -> None:
        batch = queue.popleft()
        ref = actors[ai].run.remote(Batch(tuple(w for _, w in batch), spec.config, spec.steps))
        inflight[ref] = (ai, batch)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for ai in range(n_actors):
            for _ in range(QUEUE_DEPTH):
                if queue:
                    submit(ai)
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            ref = ready[0]
            ai, batch = inflight.pop(ref)
            try:
                result = ray.get(ref)
            except RayActorError:
                queue.append(batch)  # the actor died; Ray restarts it, the batch runs again
                if queue:
                    submit(ai)
                continue
            write_batch(store, [k for k, _ in batch], result.results, spec.steps, result.device, pool)
            synth_s += result.seconds
            written += len(batch)
            bar.update(len(batch))
            if queue:
                submit(ai)
    bar.close()
    wall = time.perf_counter() - t0
    summary = RunSummary(len(plan.items), skipped, written, wall, synth_s, n_actors)
    write_manifest(store, plan, run_id, status="finished", finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                   time.gmtime()), synth_fraction=round(summary.synth_fraction, 4))
    return summary
