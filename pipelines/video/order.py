"""`neuron-atlas video --analyze-order --videos URI`: the frame-order analysis of real videos, as a Parquet table.

For every video under --videos (pipelines/video/sources.py) and every selected unit (default: every unit of
the model's output layer), the unit's time-pooled score as given, with the frames reversed, and with the
frames shuffled by `--shuffles` seeded permutations (mean, std, min), plus the model's decision (arg-max of
its time-pooled output) as given, reversed, and the share of shuffles that keep it. Videos longer than
`--frames` are scored on `--frames` evenly spaced frames. The driver decodes each shard of videos just
before an actor takes it (memory stays bounded), the actors score them, and the driver writes ONE file when
every video is scored:
```
<out>/video-order/part-<run>.parquet   name, label, layer, unit, y, x, frames, score, score_reversed,
    score_shuffled_mean, score_shuffled_std, score_shuffled_min, predicted, predicted_reversed,
    predicted_shuffled (one per shuffle), predicted_shuffled_same, model, snapshot, videos, time_pool,
    shuffles, order_seed, run_id
```
`<run>` digests the model, snapshot, video listing, units and settings: a rerun prints `nothing to do`; an
unreadable video stops the run with one line before anything is written.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, replace

import pyarrow as pa

from tasks.video.actor import OrderJob, VideoActor

from ..dispatch import dispatch
from ..manifest import utc_now, write_manifest
from ..progress import Progress
from ..runner import start_actors
from ..sink import parquet_bytes
from ..spec import plan
from .plan import VideoPlan, VideoSpec, load, selected_layers, video_net_spec
from .run import video_record
from .sources import list_videos, read_video

__all__ = ["OrderSummary", "run_order", "SHARD"]

SHARD = 4  # videos per actor call


@dataclass
class OrderSummary:
    path: str  # the table, relative to --out
    videos: int
    rows: int
    wall_s: float
    skipped: bool = False

    def line(self, out: str) -> str:
        if self.skipped:
            return f"nothing to do: the order analysis of these {self.videos} videos is already in {out}/{self.path}"
        return (f"done: frame-order analysis of {self.videos} videos ({self.rows} rows) in {self.wall_s:.1f} s; "
                f"table {out}/{self.path}")


def run_order(spec: VideoSpec, videos_uri: str, *, log=print) -> OrderSummary:
    """Score every video under `videos_uri` for the selected units; see the module docstring."""
    t0 = time.perf_counter()
    atlas = replace(spec.atlas, net=video_net_spec(spec.atlas.net), seeds=1)
    target, video = load(atlas)
    vs = list_videos(videos_uri, atlas.storage_options, atlas.retry())
    atlas = replace(atlas, layers=selected_layers(atlas, video))
    base = plan(atlas, target=target, extra_hp={**spec.video.hyperparams(), "videos": vs.digest})
    units = tuple(w.unit for _, w in base.items)
    run_id = hashlib.sha256(f"{base.hyperparams}|{base.snapshot}|{base.model_slug}|{vs.uri}|{units}".encode()
                            ).hexdigest()[:16]
    rel = f"video-order/part-{run_id}.parquet"
    store = atlas.store()
    if store.find("video-order", rel.rsplit("/", 1)[1]):
        return OrderSummary(rel, len(vs.videos), 0, time.perf_counter() - t0, skipped=True)
    size, v = target.entry.preprocessing.size, spec.video
    for x in vs.videos:  # an unreadable video stops the run here, before Ray starts and anything is written
        read_video(vs, x, size, check=True)
    labels = {x.name: x.label for x in vs.videos}
    record = {**video_record(VideoPlan(spec, base, video), command="video --analyze-order"), "videos": vs.uri,
              "videos_digest": vs.digest, "table": rel}
    write_manifest(store, run_id, record, status="running")

    pool = start_actors(base.spec, None, actor_class=VideoActor)
    shards = [vs.videos[i:i + SHARD] for i in range(0, len(vs.videos), SHARD)]
    progress = Progress(len(vs.videos), desc="videos")
    rows: list[dict] = []

    def submit(actor, shard):
        clips = tuple(read_video(vs, x, size, v.frames) for x in shard)
        return actor.order.remote(OrderJob(tuple(x.name for x in shard), clips, units, v))

    def on_result(shard, result) -> None:
        rows.extend(result.rows)
        progress.update(len(shard))

    try:
        dispatch(pool.actors, shards, submit, on_result, log, grow=pool.pool.grow)
    finally:
        pool.pool.stop()
    progress.close()
    common = {"model": base.model_slug, "snapshot": base.snapshot, "videos": vs.uri, "time_pool": v.time_pool,
              "shuffles": v.shuffles, "order_seed": v.order_seed, "run_id": run_id}
    table = pa.Table.from_pylist([{**r, "label": labels.get(r["name"]), **common} for r in rows])
    store.write_bytes(rel, parquet_bytes(table))
    write_manifest(store, run_id, {**record, "video": asdict(v)}, status="finished", finished_at=utc_now(),
                   rows=len(rows))
    return OrderSummary(rel, len(vs.videos), len(rows), time.perf_counter() - t0)
