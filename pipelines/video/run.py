"""The preferred-video driver: work list -> batches of videos -> Ray video actors -> files under --out.

The atlas's machinery end to end: keys already in `videos/` are dropped first (a rerun prints `nothing to
do`, a resumed run computes only what is missing), actors start through `runner.start_actors` (as
tasks/video/actor.VideoActor), batches never span a (model, snapshot, layer) partition and go out through
`dispatch` (lost workers' batches are re-queued), and each finished batch is written once by the driver
(pipelines/video/outputs.py). A batch holds `--batch-size` videos; by default as many as keep about 64
frames per batch on a CPU actor (512 on a GPU).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from tasks.video.actor import VideoActor, VideoBatch

from ..dispatch import dispatch
from ..manifest import run_record, utc_now, write_manifest
from ..progress import Progress
from ..runner import RunSummary, compact_partitions, make_batches, remaining, run_id_of, start_actors
from .outputs import done_video_keys, write_videos
from .plan import VideoPlan

__all__ = ["run_video", "video_batch_size", "video_record"]


def video_batch_size(requested: int | None, pool_default: int, frames: int) -> int:
    """--batch-size, else about 512 frames per batch on a GPU (whose image batch is 64), 64 on a CPU."""
    return requested or max(1, (512 if pool_default >= 64 else 64) // frames)


def video_record(vp: VideoPlan, command: str = "video") -> dict:
    """The manifest entry of a video run: the atlas entry plus the command and the video settings."""
    return {**run_record(vp.base), "command": command, "video": asdict(vp.spec.video),
            "time_layouts": {n: layer.layout for n, layer in vp.video_net.layers.items()
                             if n in {k.layer for k, _ in vp.base.items}}}


def run_video(vp: VideoPlan, *, log=print) -> RunSummary:
    """Synthesize every video of the plan not yet under --out; returns the accounting summary."""
    plan, video = vp.base, vp.spec.video
    spec = plan.spec
    store = spec.store()
    t0 = time.perf_counter()
    store.remove_stale_temporaries()
    todo = remaining(plan, done_video_keys(store), log, "videos")
    skipped = len(plan.items) - len(todo)
    if not todo:
        return RunSummary(len(plan.items), skipped, 0, time.perf_counter() - t0, 0.0, 0)
    run_id = run_id_of(plan)
    record = video_record(vp)
    json.dumps(record)  # fail here, not after the run, if anything in it cannot be recorded
    write_manifest(store, run_id, record, status="running")

    pool = start_actors(spec, plan.code_upper, actor_class=VideoActor)
    batch_size = video_batch_size(spec.batch_size, pool.batch_size, video.frames)
    progress = Progress(len(todo), desc="videos")
    totals = {"written": 0, "synth_s": 0.0}

    with ThreadPoolExecutor(max_workers=8) as threads:
        def submit(actor, batch):
            items = tuple(w for _, w in batch)
            return actor.video.remote(VideoBatch(items, spec.config, video, spec.steps, spec.objective))

        def on_result(batch, result) -> None:
            write_videos(store, [k for k, _ in batch], result.results, spec.steps, result.device, video, threads)
            totals["written"] += len(batch)
            totals["synth_s"] += result.seconds
            progress.update(len(batch))

        try:
            dispatch(pool.actors, make_batches(todo, batch_size), submit, on_result, log, grow=pool.pool.grow)
        finally:
            pool.pool.stop()
    progress.close()
    summary = RunSummary(len(plan.items), skipped, totals["written"], time.perf_counter() - t0, totals["synth_s"],
                         len(pool.actors))
    write_manifest(store, run_id, record, status="finished", finished_at=utc_now(),
                   synth_fraction=round(summary.synth_fraction, 4))
    compact_partitions(store, [k for k, _ in todo], log, ("units", "activations", "videos"))
    return summary
