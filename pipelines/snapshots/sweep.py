"""A training-snapshot sweep: the same units and seeds synthesized on every complete checkpoint under a prefix.

`Sweep` is one watcher: `round()` polls the prefix once and processes what is new; `pipelines/snapshots/
follow.py` decides when to call it. Per round:
1. list the prefix; keep the checkpoints whose step the selection keeps and that the completeness rule
   (completeness.py) says are whole; a checkpoint is never read before that;
2. per new checkpoint, the atlas work list relabelled with its snapshot label (the zero-padded step): every
   (snapshot, layer, unit, y, x, seed) is one key of the output contract, and keys already under --out are
   dropped, so a killed watcher started again redoes only what was in flight, and a snapshot whose keys are
   all present is not read at all;
3. read the checkpoint once on the driver (`weights_only=True`) and fit it to the architecture; one that is
   truncated, not a checkpoint or of another architecture is named in one line, recorded in the manifest
   under `failed_checkpoints` with its size and stamp, and skipped (again only when it changes);
4. synthesize the rest through the shared runner: batches grouped by snapshot, each naming its snapshot's
   weights, so an actor loads a snapshot once per group of batches; actors live across rounds. A snapshot
   that an actor cannot load (deleted or rewritten since step 3) is skipped and recorded like a corrupt one;
5. record the snapshots in the manifest and refresh the tracking outputs (tracking.py), and with --tensorboard
   write each processed snapshot's TensorBoard event file once (tensorboard.py).
The manifest entry is keyed by the hyperparameters, the selection and the checkpoints prefix.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from models.errors import StorageError, UserInputError
from models.loading import BUILT_WEIGHTS
from models.weights import load_into, read_weights

from ..manifest import run_record, utc_now, write_manifest
from ..runner import (ActorPool, compact_partitions, memory_batch_size, run_id_of, start_actors, synthesize,
                      whole_groups)
from ..sink import done_keys
from ..spec import AtlasSpec, plan
from .checkpoints import Checkpoint, Prefix, StepSelection, compile_pattern, find_checkpoints
from .completeness import Completeness
from .follow import Round
from .tracking import SnapshotInfo, Tracker

__all__ = ["SnapshotSpec", "Sweep", "SweepTimings"]


@dataclass(frozen=True)
class SnapshotSpec:
    """A sweep: the atlas job (its `net.weights` and `snapshot` unset) over the checkpoints under a prefix."""

    atlas: AtlasSpec
    checkpoints: str
    pattern: str | None = None
    selection: StepSelection = StepSelection()
    follow: bool = False
    interval: float = 60.0
    until_idle: float | None = None
    tensorboard: str | None = None  # LOGDIR of the TensorBoard event files (tensorboard.py), or None


@dataclass
class SweepTimings:
    """Where the driver's and actors' time went, summed over the sweep (seconds)."""

    listing: float = 0.0  # listing the prefix and reading sidecars
    validate: float = 0.0  # reading each checkpoint on the driver and fitting it to the architecture
    load: float = 0.0  # actors loading snapshot weights
    tracking: float = 0.0  # tracking table, filmstrips and plots
    synthesis: float = 0.0  # actors synthesizing

    @property
    def overhead(self) -> float:
        return self.listing + self.validate + self.load + self.tracking


@dataclass
class _Totals:
    snapshots: int = 0
    items: int = 0
    present: int = 0
    failed: int = 0
    timings: SweepTimings = field(default_factory=SweepTimings)


class Sweep:
    """One watcher over a checkpoints prefix (see the module docstring)."""

    def __init__(self, spec: SnapshotSpec, log: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic):
        atlas = spec.atlas
        if atlas.net.weights:
            raise UserInputError("snapshots reads its weights from --checkpoints; drop --weights")
        self.spec, self.log, self.clock = spec, log, clock
        self.pattern = compile_pattern(spec.pattern)
        if spec.interval <= 0 or (spec.until_idle is not None and spec.until_idle < 0):
            raise UserInputError(f"--interval {spec.interval:g} must be above 0 and --until-idle at least 0")
        self.prefix = Prefix(spec.checkpoints, atlas.storage_options, atlas.retry())
        # the work list is validated on the architecture alone: no checkpoint is read to plan
        self.base = plan(replace(atlas, net=replace(atlas.net, weights=BUILT_WEIGHTS), snapshot="base"))
        self.store = atlas.store()
        self.run_id = run_id_of(replace(self.base, snapshot=f"snapshots:{self.prefix.uri}"))
        self.store.remove_stale_temporaries()
        self.done = done_keys(self.store)
        self._rewrite: set = set()  # written keys recomputed with their diversity group, not written again
        self._written_keys: list = []  # keys this watcher wrote: their partitions are compacted at the end
        entry = self.base.spec.net.entry()
        with torch.random.fork_rng(devices=[]):
            self.arch = entry.build()  # unfrozen, to fit each checkpoint's state dict to
        self.model_name = entry.name
        earlier = self._manifest_entry()
        self.snapshots: dict[str, dict] = dict(earlier.get("snapshots") or {})
        self.failed: dict[str, dict] = dict(earlier.get("failed_checkpoints") or {})
        self.tracker = Tracker(self.store, self.base.model_slug, self.base.spec.method, self.base.hyperparams)
        self.tracker.load()
        self.tensorboard = None
        if spec.tensorboard:
            from .tensorboard import TensorBoardLog

            self.tensorboard = TensorBoardLog(spec.tensorboard, atlas.storage_options)
        self.completeness = Completeness(spec.interval)
        self.pool: ActorPool | None = None
        self.processed: set[str] = set()
        self._ckpts: dict[str, Checkpoint] = {}  # label -> the checkpoint it was taken from, this process
        self.totals = _Totals()
        self._said: set[str] = set()
        self._last_listing: dict | None = None
        self._tracking_checked = False
        self._recorded = json.dumps([self.snapshots, self.failed], sort_keys=True)

    def require_checkpoints(self) -> None:
        """UserInputError unless the prefix holds at least one checkpoint (a sweep that is not following)."""
        if not find_checkpoints(self.prefix.list(), self.prefix.uri, self.pattern)[0]:
            what = "files matching --pattern" if self.pattern else ("files ending in .pt, .pth, .ckpt or .bin with "
                                                                    "a step number in the name")
            raise UserInputError(f"no checkpoints under --checkpoints {self.prefix.uri!r} ({what}); check the URI, "
                                 "pass --pattern, or --follow to wait for a trainer")

    # -- one poll ---------------------------------------------------------------------------------------------
    def round(self) -> Round:
        """Poll the prefix once and process every new complete checkpoint; see the module docstring."""
        t0 = time.perf_counter()
        listing = self.prefix.list()
        now = self.clock()
        changed = self._last_listing is not None and listing != self._last_listing
        self._last_listing = listing
        found, no_step, clashes = find_checkpoints(listing, self.prefix.uri, self.pattern)
        self._say_once(no_step, clashes)
        fresh = [c for c in found if self.spec.selection.keeps(c.step) and c.label not in self.processed
                 and not self._failed_before(c)]
        split = self.completeness.split(fresh, listing, now)
        metrics_changed = self._update_metrics(listing)
        self.totals.timings.listing += time.perf_counter() - t0
        processed = self._process(split.complete, listing) if split.complete else 0
        if processed or metrics_changed or not self._tracking_checked:
            self._refresh_tracking()
        return Round(processed, len(split.pending), changed)

    def _process(self, new: list[Checkpoint], listing) -> int:
        """Synthesize the missing keys of the `new` checkpoints; returns how many snapshots were processed."""
        todo, weights, taken = [], {}, []
        for ckpt in new:
            items = [(replace(k, snapshot=ckpt.label), w) for k, w in self.base.items]
            missing = [(k, w) for k, w in items if k.as_tuple() not in self.done]
            present = len(items) - len(missing)
            if missing and self.base.spec.diversity:  # a unit's seeds are one group: recompute it whole
                missing, rewrite = whole_groups(items, missing)
                self._rewrite |= rewrite
            sha = self.snapshots.get(ckpt.label, {}).get("sha256")
            if missing:
                sha = self._validate(ckpt)
                if sha is None:
                    continue
                weights[ckpt.label] = ckpt.uri
                todo += missing
            t0 = time.perf_counter()
            metrics = self.prefix.read_metrics(ckpt.rel, listing)
            self.totals.timings.listing += time.perf_counter() - t0
            self.snapshots[ckpt.label] = {"step": ckpt.step, "checkpoint": ckpt.uri, "sha256": sha,
                                          "size": ckpt.size, "items": len(items), "metrics": metrics}
            self.failed.pop(ckpt.rel, None)
            self.totals.present += present
            self._ckpts[ckpt.label] = ckpt
            taken.append(ckpt)
        if todo:
            self._synthesize(todo, weights, len(self.base.items) * len(taken) - len(todo) + len(self._rewrite))
        taken = [c for c in taken if c.label in self.snapshots]  # minus those an actor could not load
        for ckpt in taken:
            self.snapshots[ckpt.label]["processed_at"] = self.snapshots[ckpt.label].get("processed_at") or utc_now()
            self.processed.add(ckpt.label)
        self.totals.snapshots += len([label for label in weights if label in self.snapshots])
        self._write_manifest("watching" if self.spec.follow else "running")
        return len(taken)

    def _synthesize(self, todo: list, weights: dict[str, str], present: int) -> None:
        if present:
            self.log(f"resuming: skipping {present} items already under {self.spec.atlas.out}; {len(todo)} to go")
        self.log(f"snapshots {', '.join(weights)}: {len(todo)} items")
        self._write_manifest("running", force=True)
        if self.base.spec.init_photos is not None:
            self.base.spec.init_photos.write(self.store)
        if self.pool is None:
            net = replace(self.base.spec.net, weights=BUILT_WEIGHTS)
            self.pool = start_actors(self.base.spec, self.base.code_upper, net=net, log=self.log)
            if self.base.spec.batch_size is None:  # a GPU's batch from its memory (pipelines/runner.py)
                self.pool.batch_size = memory_batch_size(self.pool, self.base.spec, todo, self.log)
        result = synthesize(self.pool, self.base.spec, self.store, todo, log=self.log, weights=weights,
                            on_batch=self._on_batch, on_error=self._on_actor_error, skip=frozenset(self._rewrite))
        self._rewrite.clear()
        self.totals.items += result.written
        self.totals.timings.synthesis += result.synth_s
        self.totals.timings.load += result.load_s

    def _on_batch(self, keys, result) -> None:
        for key, r in zip(keys, result.results):
            self.done.add(key.as_tuple())
            self._written_keys.append(key)
            self.tracker.add(key, r.act_start, r.act_final, r.image)

    def _on_actor_error(self, keys, error: str) -> None:
        """An actor could not load a snapshot the driver had read (deleted or rewritten since, as trainers
        that keep only their last checkpoints do): that snapshot is skipped like a corrupt one."""
        label = keys[0].snapshot
        if label in self.snapshots:
            del self.snapshots[label]
            self._fail(self._ckpts[label], error)

    def _validate(self, ckpt: Checkpoint) -> str | None:
        """Read the checkpoint and fit it to the architecture: its SHA-256, or None after reporting it."""
        t0 = time.perf_counter()
        try:
            weights = read_weights(ckpt.uri, self.spec.atlas.storage_options, self.spec.atlas.retry())
            load_into(self.arch, weights, self.model_name)
            return weights.sha256
        except StorageError:
            raise  # storage is down: stop the watch, not the checkpoint
        except UserInputError as e:
            self._fail(ckpt, str(e))
            return None
        finally:
            self.totals.timings.validate += time.perf_counter() - t0

    def _fail(self, ckpt: Checkpoint, error: str) -> None:
        self.log(f"skipped checkpoint {ckpt.uri}: {error}")
        self.failed[ckpt.rel] = {"checkpoint": ckpt.uri, "step": ckpt.step, "size": ckpt.size, "stamp": ckpt.stamp,
                                 "error": error, "at": utc_now()}
        self.totals.failed += 1
        self._write_manifest("watching" if self.spec.follow else "running")

    def _failed_before(self, ckpt: Checkpoint) -> bool:
        rec = self.failed.get(ckpt.rel)
        return rec is not None and (rec.get("size"), rec.get("stamp")) == ckpt.signature

    def _update_metrics(self, listing) -> bool:
        """Read sidecars that appeared after their snapshot was processed; returns whether any did."""
        changed = False
        for label in self.processed:
            rec = self.snapshots[label]
            if rec.get("metrics") is None:
                metrics = self.prefix.read_metrics(self._ckpts[label].rel, listing)
                if metrics is not None:
                    rec["metrics"], changed = metrics, True
        return changed

    def _refresh_tracking(self) -> None:
        t0 = time.perf_counter()
        infos = {label: SnapshotInfo(rec["step"], rec["checkpoint"], rec.get("metrics"))
                 for label, rec in self.snapshots.items() if label in self.processed}
        table = self.tracker.table(infos)
        self.tracker.refresh(infos, table)
        if self.tensorboard is not None:
            written = self.tensorboard.sync(table.to_pylist(), self.store.read_bytes)
            if written:
                self.log(f"tensorboard: snapshots {', '.join(written)} -> {self.tensorboard.store.uri}")
        self._tracking_checked = True
        self.totals.timings.tracking += time.perf_counter() - t0

    def _say_once(self, no_step: list[str], clashes) -> None:
        for rel in no_step:
            if rel not in self._said:
                self._said.add(rel)
                self.log(f"ignored {self.prefix.uri}/{rel}: no step number in its name; pass --pattern with "
                         "(?P<step>...) to name it")
        for dropped, kept in clashes:
            if dropped.rel not in self._said:
                self._said.add(dropped.rel)
                self.log(f"ignored {dropped.uri}: step {dropped.step} is already {kept.uri}'s; narrow --pattern")

    # -- manifest ---------------------------------------------------------------------------------------------
    def _manifest_entry(self) -> dict:
        try:
            manifest = json.loads(self.store.read_bytes("manifest.json"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return (manifest.get("runs") or {}).get(self.run_id) or {}

    def _write_manifest(self, status: str, force: bool = False, **extra) -> None:
        """Merge this sweep's entry into manifest.json, unless neither the snapshots, the failures nor `extra`
        changed since the last write (a rerun with nothing new leaves the manifest as it was)."""
        state = json.dumps([self.snapshots, self.failed], sort_keys=True)
        if state == self._recorded and not extra and not force:
            return
        self._recorded = state
        record = {**run_record(self.base), "snapshot": None, "weights": None, "weights_sha256": None,
                  "command": "snapshots", "checkpoints": self.prefix.uri, "pattern": self.spec.pattern,
                  "selection": self.spec.selection.describe(), "items_per_snapshot": len(self.base.items),
                  "items": len(self.base.items) * len(self.snapshots)}
        write_manifest(self.store, self.run_id, record, status=status, snapshots=self.snapshots,
                       failed_checkpoints=self.failed, **extra)

    def finish(self, status: str) -> None:
        """Record the end of this watcher in the manifest, when it processed or skipped anything."""
        if self.totals.snapshots or self.totals.failed:
            self._write_manifest(status, finished_at=utc_now())
        if self._written_keys:
            compact_partitions(self.store, self._written_keys, self.log)
            self._written_keys = []
