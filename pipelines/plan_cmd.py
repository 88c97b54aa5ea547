"""`neuron-atlas plan` (also `atlas --dry-run`): what an atlas run will cost, before a cluster is booked.

Takes every flag of `atlas`, plans the run exactly as `atlas` would (the same validation, the same keys), and
prints per layer and in total: items, items already done under --out, bytes it will write, and the time it
will take on this device and on N actors of this kind. Writes nothing anywhere.

Time comes from a calibration on this process's device: per layer, one batch of the run's own batch size
(fewer when the layer has fewer items) runs two warm-up steps, then `--calibration-steps` steps, timed; a
layer's time is its batches x steps x the measured seconds per batch-step. N actors divide the time of the
batches (a run has at least one batch per layer and actor), and the fixed start-up of a run (Ray, actors,
model load; `--startup-s`, 15 s by default, measured on this 2-core machine) is added once. Bytes come from
writing the calibration batch through the real sink into a counting store (PNGs of partly optimized images:
their size is that of the final ones within a few per cent). `--no-calibrate` prints items and done only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field

__all__ = ["add_subcommand", "add_dry_run_flags", "run", "estimate", "LayerPlan"]

DEFAULT_ACTORS = (1, 4, 16)


@dataclass
class LayerPlan:
    layer: str
    items: int
    done: int
    batches: int = 0
    seconds_per_batch_step: float | None = None
    bytes_per_item: float | None = None

    @property
    def todo(self) -> int:
        return self.items - self.done


@dataclass
class Estimate:
    layers: list[LayerPlan]
    steps: int
    batch_size: int
    device: str
    calibration_s: float = 0.0
    startup_s: float = 15.0
    actors: tuple[int, ...] = DEFAULT_ACTORS
    notes: list[str] = field(default_factory=list)

    def seconds(self, actors: int = 1) -> float | None:
        """Estimated wall time of the remaining work on `actors` actors like this device (None: uncalibrated)."""
        if any(lp.seconds_per_batch_step is None for lp in self.layers if lp.todo):
            return None
        batches = [(lp.seconds_per_batch_step * self.steps, lp.batches) for lp in self.layers if lp.todo]
        if not batches:
            return 0.0
        work = sum(s * n for s, n in batches)  # actors take batches of any layer as they come free
        return max(work / actors, max(s for s, _ in batches)) + self.startup_s

    def bytes(self) -> float | None:
        if any(lp.bytes_per_item is None for lp in self.layers if lp.todo):
            return None
        return sum(lp.bytes_per_item * lp.todo for lp in self.layers)

    def as_dict(self) -> dict:
        return {"device": self.device, "steps": self.steps, "batch_size": self.batch_size,
                "calibration_s": round(self.calibration_s, 2), "startup_s": self.startup_s,
                "layers": [{"layer": lp.layer, "items": lp.items, "done": lp.done, "todo": lp.todo,
                            "batches": lp.batches, "seconds_per_batch_step": lp.seconds_per_batch_step,
                            "bytes": None if lp.bytes_per_item is None else round(lp.bytes_per_item * lp.todo),
                            "seconds_one_actor": None if lp.seconds_per_batch_step is None else round(
                                lp.seconds_per_batch_step * self.steps * lp.batches, 2)}
                           for lp in self.layers],
                "total": {"items": sum(lp.items for lp in self.layers), "done": sum(lp.done for lp in self.layers),
                          "bytes": self.bytes(),
                          "seconds": {str(n): self.seconds(n) for n in self.actors}},
                "notes": self.notes}


class _CountingStore:
    """A store that only counts the bytes written to it (the sink's writes, measured without any I/O)."""

    def __init__(self):
        self.bytes = 0

    def write_bytes(self, rel: str, data: bytes, content_type: str | None = None) -> None:
        self.bytes += len(data)


def estimate(p, done: set[tuple], *, calibrate: bool = True, calibration_steps: int = 5, startup_s: float = 15.0,
             actors: tuple[int, ...] = DEFAULT_ACTORS, log=print) -> Estimate:
    """The Estimate of plan `p` (pipelines/spec.py) given the keys already `done` (module docstring)."""
    import torch

    from tasks.actor import Batch, SynthesisActor, pick_device

    from .runner import atlas_batch_size
    from .sink import write_batch

    device = pick_device()
    batch_size = atlas_batch_size(p.spec.batch_size, device.type == "cuda")
    items_of: dict[str, int] = {}
    todo_of: dict[str, list] = {}
    for key, item in p.items:
        items_of[key.layer] = items_of.get(key.layer, 0) + 1
        todo = todo_of.setdefault(key.layer, [])
        if key.as_tuple() not in done:
            todo.append((key, item))
    layers = [LayerPlan(layer, n, n - len(todo_of[layer]), math.ceil(len(todo_of[layer]) / batch_size))
              for layer, n in items_of.items()]
    est = Estimate(layers, p.spec.steps, batch_size, str(device), startup_s=startup_s, actors=actors)
    if not calibrate:
        return est
    t0 = time.perf_counter()
    actor = SynthesisActor(p.spec.net, device=str(device), code_upper=p.code_upper)
    for lp in layers:
        if not lp.todo:
            continue
        todo = todo_of[lp.layer]
        batch = [kv for kv in todo if kv[0].partition() == todo[0][0].partition()][:batch_size]  # one snapshot
        work = Batch(tuple(w for _, w in batch), p.spec.config, 2, p.spec.objective)
        actor.run(work)  # warm-up: first-call allocations and kernel choices
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        s = time.perf_counter()
        result = actor.run(Batch(work.items, work.config, calibration_steps, work.objective))
        lp.seconds_per_batch_step = (time.perf_counter() - s) / calibration_steps
        counter = _CountingStore()
        write_batch(counter, [k for k, _ in batch], result.results, p.spec.steps, result.device)
        lp.bytes_per_item = counter.bytes / len(batch)
        log(f"calibrated {lp.layer}: {lp.seconds_per_batch_step * 1000:.1f} ms per step of a batch of {len(batch)}")
    est.calibration_s = time.perf_counter() - t0
    if any(lp.todo > batch_size and lp.todo % batch_size for lp in layers):  # a lone partial batch was timed as is
        est.notes.append("a layer's last batch is partly full and is counted as a full one")
    return est


def _human_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _human_s(s: float | None) -> str:
    from .progress import format_seconds

    return "–" if s is None else format_seconds(round(s))


def text(est: Estimate) -> str:
    """The human table: a row per layer and a total, the time on each actor count."""
    rows = [("layer", "items", "done", "to do", "bytes", "time, 1 actor")]
    for lp in est.layers:
        one = None if lp.seconds_per_batch_step is None else lp.seconds_per_batch_step * est.steps * lp.batches
        rows.append((lp.layer, f"{lp.items:,}", f"{lp.done:,}", f"{lp.todo:,}",
                     _human_bytes(None if lp.bytes_per_item is None else lp.bytes_per_item * lp.todo), _human_s(one)))
    total_items = sum(lp.items for lp in est.layers)
    total_done = sum(lp.done for lp in est.layers)
    rows.append(("total", f"{total_items:,}", f"{total_done:,}", f"{total_items - total_done:,}",
                 _human_bytes(est.bytes()), _human_s(est.seconds(1))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    lines.append(f"device {est.device}, batch {est.batch_size}, {est.steps} steps; time includes {est.startup_s:.0f} s "
                 f"of start-up; calibration took {est.calibration_s:.1f} s")
    if est.seconds(1) is not None:
        lines.append("on N actors like this device: " + ", ".join(f"{n}: {_human_s(est.seconds(n))}"
                                                                  for n in est.actors))
    lines += est.notes
    return "\n".join(lines)


def add_dry_run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("plan")
    g.add_argument("--json", action="store_true", help="print the estimate as JSON")
    g.add_argument("--calibration-steps", type=int, default=5, help="timed steps per layer (after a warm-up)")
    g.add_argument("--no-calibrate", action="store_true", help="items and done only; no time or bytes")
    g.add_argument("--startup-s", type=float, default=15.0, help="fixed start-up of a run added to the time")
    g.add_argument("--estimate-actors", default="1,4,16", help="actor counts to estimate the time for")


def topk_estimate(tp, *, calibrate: bool = True, startup_s: float = 15.0,
                  actors: tuple[int, ...] = DEFAULT_ACTORS, log=print) -> Estimate:
    """The Estimate of a top-k run (pipelines/topk/topk_run.py): one row, every selected unit of every layer,
    whose items are the images; done = images in the shards an earlier run finished. Calibration: one shard of
    up to 64 images through the worker's own code on this device. Bytes: the crops (k per unit, sized as the
    net's input view of the first image, an upper bound) and the tables."""
    import numpy as np

    from .photos import preprocessing_input

    from .imagesets import read_images
    from .sink import png_bytes
    from .topk.shards import make_shards
    from .topk.worker import ImageWorker, TopkJob, default_batch_size

    spec = tp.spec
    store = spec.store()
    shards = make_shards(tp.images, spec.shard_size)
    finished = set(store.find(f"topk/shards/{tp.run_id}", ".parquet"))
    left = [s for s in shards if f"topk/shards/{tp.run_id}/{s.name}.parquet" not in finished]
    units = sum(len(ch) for _, ch in tp.selection)
    row = LayerPlan(f"{len(tp.selection)} layers, {units:,} units", len(tp.images.sources),
                    len(tp.images.sources) - sum(len(s.sources) for s in left), len(left))
    est = Estimate([row], 1, spec.batch_size or default_batch_size(False), "cpu", startup_s=startup_s,
                   actors=actors)
    if not calibrate or not row.todo:
        return est
    t0 = time.perf_counter()
    worker = ImageWorker(spec.net)
    est.device = str(worker.device)
    layers = tuple((layer, tuple(ch)) for layer, ch in tp.selection)
    sample = make_shards(tp.images, min(64, len(tp.images.sources)))[0]
    batch = spec.batch_size or default_batch_size(worker.device.type == "cuda")
    worker.topk(TopkJob(sample, layers, spec.k, batch, dict(spec.storage_options), spec.retry()))  # warm-up
    s = time.perf_counter()
    worker.topk(TopkJob(sample, layers, spec.k, batch, dict(spec.storage_options), spec.retry()))
    per_image = (time.perf_counter() - s) / len(sample.sources)
    row.seconds_per_batch_step = per_image * spec.shard_size  # one "batch" = one shard
    first = read_images([tp.images.sources[0].uri], spec.storage_options)[0][0]
    crop = 0
    if first is not None:  # an unreadable first image: the crops' bytes are not estimated
        view = preprocessing_input(first, tp.target.entry.preprocessing).transpose(1, 2, 0) * 255
        crop = len(png_bytes(view.round().astype(np.uint8)))
    row.bytes_per_item = (units * spec.k * (crop + 200)) / max(1, row.items)  # crops and table rows, per image
    est.calibration_s = time.perf_counter() - t0
    log(f"calibrated top-k: {per_image * 1000:.1f} ms per image")
    return est


def snapshots_plan(spec):
    """The atlas Plan of a snapshots sweep (pipelines/snapshots/sweep.py) over the complete checkpoints under its
    prefix now, the base work list relabelled per checkpoint; reads no checkpoint and writes nothing."""
    from dataclasses import replace

    from models.errors import UserInputError
    from models.loading import BUILT_WEIGHTS

    from .snapshots.checkpoints import Prefix, compile_pattern, find_checkpoints
    from .spec import plan

    atlas = spec.atlas
    base = plan(replace(atlas, net=replace(atlas.net, weights=BUILT_WEIGHTS), snapshot="base"))
    prefix = Prefix(spec.checkpoints, atlas.storage_options, atlas.retry())
    ckpts = [c for c in find_checkpoints(prefix.list(), prefix.uri, compile_pattern(spec.pattern))[0]
             if spec.selection.keeps(c.step)]
    if not ckpts:
        raise UserInputError(f"no checkpoints to plan under --checkpoints {prefix.uri!r} "
                             f"({spec.selection.describe()})")
    items = [(replace(k, snapshot=c.label), w) for c in ckpts for k, w in base.items]
    return replace(base, items=items), len(ckpts)


def add_subcommand(subparsers) -> None:
    from . import atlas_cmd

    p = subparsers.add_parser("plan", help="items, done, bytes and time of an atlas run before it runs; "
                              "writes nothing")
    atlas_cmd.add_atlas_flags(p)
    add_dry_run_flags(p)


def run(args: argparse.Namespace, snapshots: bool = False) -> int:
    """Print the estimate of the atlas run the flags describe (of the snapshots sweep with `snapshots`)."""
    from .atlas_cmd import spec_from_args
    from .sink import done_keys
    from .spec import plan

    estimate_actors(args)  # bad plan flags fail before anything is loaded
    if snapshots:
        from .snapshots.snapshots_cmd import spec_from_args as snapshot_spec

        p, n = snapshots_plan(snapshot_spec(args))
        print(f"{n} checkpoints, {len(p.items) // n:,} items each (checkpoint loads not counted)", file=sys.stderr)
    else:
        p = plan(spec_from_args(args))
    done = done_keys(p.spec.store(), partitions={k.partition() for k, _ in p.items})
    return print_estimate(args, lambda **kw: estimate(p, done, calibration_steps=args.calibration_steps, **kw))


def estimate_actors(args: argparse.Namespace) -> tuple[int, ...]:
    """The actor counts of --estimate-actors; UserInputError for them or a bad --calibration-steps."""
    from models.errors import UserInputError

    if args.calibration_steps < 1:
        raise UserInputError(f"--calibration-steps {args.calibration_steps} must be at least 1")
    try:
        actors = tuple(int(n) for n in args.estimate_actors.split(","))
        if not actors or min(actors) < 1:
            raise ValueError
    except ValueError:
        raise UserInputError(f"--estimate-actors {args.estimate_actors!r}: give counts >= 1, e.g. 1,4,16") from None
    return actors


def print_estimate(args: argparse.Namespace, make) -> int:
    """Validate the plan flags, call `make(calibrate=, startup_s=, actors=, log=)` and print its Estimate."""
    actors = estimate_actors(args)
    est = make(calibrate=not args.no_calibrate, startup_s=args.startup_s, actors=actors,
               log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(est.as_dict(), indent=1) if args.json else text(est))
    return 0
