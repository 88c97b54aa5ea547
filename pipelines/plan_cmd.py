"""`neuron-atlas plan` (also `atlas --dry-run`): what an atlas run will cost, before a cluster is booked.

Takes every flag of `atlas`, plans the run exactly as `atlas` would (the same validation, the same keys), and
prints per layer and in total: items, items already done under --out, bytes it will write, and the time it
will take on the run's device and on N actors of this kind. Writes nothing under --out.

Time comes from a calibration where the run's actors run, not on this process's device (pipelines/
calibration.py): one actor is started through `cluster.start_pool` with the run's placement (`--address`,
`--device`, `--wait-gpus`; one actor): in this process for a local run, a GPU actor on a worker for a
cluster (`plan --address auto` on a CPU head times a GPU). Per layer, one batch of the batch size a run uses on
that device (fewer items when the layer has fewer) runs two warm-up steps, then `--calibration-steps` steps,
timed inside the actor; a layer's time is its batches x steps x the measured seconds per batch-step. N actors
divide the time of the batches (a run has at least one batch per layer and actor), and the fixed start-up of
a run (Ray, actors, model load; `--startup-s`, 15 s by default, measured on this 2-core machine) is added
once. Bytes come from writing the calibration batch through the real sink into a counting store (PNGs of
partly optimized images: their size is that of the final ones within a few per cent). `--no-calibrate`
prints items and done only.

`--calibration FILE` takes the figures from a file instead and starts no actor: the output of
`plan --json > FILE` run on a GPU worker (or as `plan --address auto`), whose per-layer
`seconds_per_batch_step` and `bytes_per_item` hold for its device and batch size. Layers the file lacks are
uncalibrated (a note says which); where the run's batch of a layer differs from the file's, its seconds are
scaled linearly per item (a note says so; on a GPU that overestimates a larger batch). With `--no-calibrate`
the batch size follows the device the placement would give (`--device`; auto: a GPU on a joined cluster or
where torch sees one).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field

from .calibration import Calibration

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
    batch_items: int = 0  # items of one of its batches, the one its seconds_per_batch_step are for

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
                            "bytes_per_item": lp.bytes_per_item, "batch_items": lp.batch_items,
                            "bytes": None if lp.bytes_per_item is None else round(lp.bytes_per_item * lp.todo),
                            "seconds_one_actor": None if lp.seconds_per_batch_step is None else round(
                                lp.seconds_per_batch_step * self.steps * lp.batches, 2)}
                           for lp in self.layers],
                "total": {"items": sum(lp.items for lp in self.layers), "done": sum(lp.done for lp in self.layers),
                          "bytes": self.bytes(),
                          "seconds": {str(n): self.seconds(n) for n in self.actors}},
                "notes": self.notes}


def estimate(p, done: set[tuple], *, calibrate: bool = True, calibration_steps: int = 5, startup_s: float = 15.0,
             actors: tuple[int, ...] = DEFAULT_ACTORS, calibration: Calibration | None = None, log=print) -> Estimate:
    """The Estimate of plan `p` (pipelines/spec.py) given the keys already `done` (module docstring): figures from
    `calibration` when given (nothing runs), else measured on one actor placed as the run's (`calibrate`), else
    none. Raises UserInputError where the run could not start its actors."""
    from .calibration import measure
    from .cluster import expected_device
    from .runner import atlas_batch_size, first_of_partition

    items_of: dict[str, int] = {}
    todo_of: dict[str, list] = {}
    for key, item in p.items:
        items_of[key.layer] = items_of.get(key.layer, 0) + 1
        todo = todo_of.setdefault(key.layer, [])
        if key.as_tuple() not in done:
            todo.append((key, item))
    cal = calibration
    if cal is None and calibrate:
        cal = measure(p, todo_of, calibration_steps, log)
    device = cal.device if cal else expected_device(p.spec.placement, log)
    batch_size = atlas_batch_size(p.spec.batch_size, device.startswith("cuda"))
    layers = [LayerPlan(layer, n, n - len(todo_of[layer]), math.ceil(len(todo_of[layer]) / batch_size))
              for layer, n in items_of.items()]
    est = Estimate(layers, p.spec.steps, batch_size, device, startup_s=startup_s, actors=actors)
    if cal is None:
        return est
    est.calibration_s = cal.seconds
    scaled, missing = [], []
    for lp in (lp for lp in layers if lp.todo):
        fig = cal.layers.get(lp.layer)
        if fig is None:
            missing.append(lp.layer)
            continue
        lp.batch_items = len(first_of_partition(todo_of[lp.layer], batch_size))
        lp.seconds_per_batch_step, lp.bytes_per_item = fig.seconds_for(lp.batch_items), fig.bytes_per_item
        if lp.batch_items != fig.items:
            scaled.append(f"{lp.layer} {fig.items} -> {lp.batch_items}")
    if cal.source:
        est.notes.append(f"figures from --calibration {cal.source} (device {cal.device}, batch {cal.batch_size}); "
                         "nothing was calibrated")
    if missing:
        est.notes.append(f"not in --calibration {cal.source}, so uncalibrated: {', '.join(missing)}")
    if scaled:
        est.notes.append("seconds scaled linearly per item from the file's batch to the run's (seconds_per_batch_"
                         f"step x run batch / file batch; a GPU's time grows less, so this overestimates it): "
                         f"{', '.join(scaled)}")
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
    g.add_argument("--calibration", metavar="FILE", help="per-layer figures from FILE instead of calibrating: the "
                   "output of 'plan --json > FILE' on the run's device (a GPU worker, or plan --address auto)")
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
    cal = calibration_of(args)
    if snapshots:
        from .snapshots.snapshots_cmd import spec_from_args as snapshot_spec

        p, n = snapshots_plan(snapshot_spec(args))
        print(f"{n} checkpoints, {len(p.items) // n:,} items each (checkpoint loads not counted)", file=sys.stderr)
    else:
        p = plan(spec_from_args(args))
    done = done_keys(p.spec.store(), partitions={k.partition() for k, _ in p.items})
    return print_estimate(args, lambda **kw: estimate(p, done, calibration_steps=args.calibration_steps,
                                                      calibration=cal, **kw), takes_calibration=True)


def calibration_of(args: argparse.Namespace) -> Calibration | None:
    """The figures of --calibration (None without it); UserInputError for a bad file or with --no-calibrate."""
    from models.errors import UserInputError

    from .calibration import read_calibration

    if not args.calibration:
        return None
    if args.no_calibrate:
        raise UserInputError("--calibration and --no-calibrate: give one (--no-calibrate uses no figures)")
    return read_calibration(args.calibration)


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


def print_estimate(args: argparse.Namespace, make, *, takes_calibration: bool = False) -> int:
    """Validate the plan flags, call `make(calibrate=, startup_s=, actors=, log=)` and print its Estimate;
    --calibration is a UserInputError unless `make` uses it (`takes_calibration`: atlas and snapshots plans)."""
    from models.errors import UserInputError

    actors = estimate_actors(args)
    if getattr(args, "calibration", None) and not takes_calibration:
        raise UserInputError("--calibration is for atlas and snapshots plans; a top-k plan calibrates here")
    est = make(calibrate=not args.no_calibrate, startup_s=args.startup_s, actors=actors,
               log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(est.as_dict(), indent=1) if args.json else text(est))
    return 0
