"""Writing preferred videos under --out: media files per key, then one row per key in `videos/`.

Per key (names derive from the key, as the atlas's PNGs do; `<stem>` = `<unit>[_<y>_<x>]_s<seed>_<method>-<hp8>`):
```
<out>/clips/<model>/<snapshot>/<layer>/<stem>.webp   lossless animated WebP: the frames exactly as measured
<out>/clips/<model>/<snapshot>/<layer>/<stem>.mp4    H.264, for people and browsers
<out>/clips/<model>/<snapshot>/<layer>/<stem>.png    contact strip of every Nth frame
<out>/videos/model=…/snapshot=…/layer=…/part-<batch digest>.parquet
```
`videos/` columns: the atlas's `units/` columns (`image` is the contact strip) plus `frames, fps`, `video`
(the MP4: what a page plays), `lossless` (the WebP: the frames `activation_final` was measured on), `strip`
(= `image`), `time_pool`, the frame-order scores `score_reversed, score_shuffled_mean, score_shuffled_std,
score_shuffled_min, shuffles`, and `activation` (the probed layer's time-pooled vector at the unit's
position). Media first, then the row: a key is done once its row exists, so a crash never leaves a row
without its files.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pyarrow as pa

from tasks.video import VideoConfig
from tasks.video.actor import VideoItemResult

from ..keys import ItemKey, batch_digest
from ..sink import UNITS_SCHEMA, done_keys, parquet_bytes
from ..storage import Store
from .media import mp4_bytes, strip_png, webp_bytes

__all__ = ["VIDEOS_SCHEMA", "media_paths", "write_videos", "done_video_keys", "STRIP_FRAMES"]

STRIP_FRAMES = 8
VIDEOS_SCHEMA = pa.schema(list(UNITS_SCHEMA) + [
    ("frames", pa.int32()), ("fps", pa.float64()), ("video", pa.string()), ("lossless", pa.string()),
    ("strip", pa.string()), ("time_pool", pa.string()), ("score_reversed", pa.float64()), ("score_shuffled_mean", pa.float64()),
    ("score_shuffled_std", pa.float64()), ("score_shuffled_min", pa.float64()), ("shuffles", pa.int32()),
    ("activation", pa.list_(pa.float32())),
])


def media_paths(key: ItemKey) -> tuple[str, str, str]:
    """(contact strip PNG, lossless WebP, MP4) paths of a key, relative to --out."""
    stem = "clips/" + key.image_path[len("images/"):-len(".png")]
    return f"{stem}.png", f"{stem}.webp", f"{stem}.mp4"


def _media(key: ItemKey, r: VideoItemResult, v: VideoConfig) -> list[tuple[str, bytes]]:
    strip, webp, mp4 = media_paths(key)
    scale = max(1, 96 // r.frames.shape[1])  # small frames are enlarged in the strip, pixel for pixel
    return [(webp, webp_bytes(r.frames, v.fps)), (mp4, mp4_bytes(r.frames, v.fps)),
            (strip, strip_png(r.frames, STRIP_FRAMES, scale=scale))]


def write_videos(store: Store, keys: Sequence[ItemKey], results: Sequence[VideoItemResult], steps: int,
                 device: str, video: VideoConfig, pool: ThreadPoolExecutor | None = None) -> None:
    """Write one batch (its keys share a partition): every media file, then the `videos/` part."""
    if not keys:
        return
    partition = keys[0].partition()
    if any(k.partition() != partition for k in keys):
        raise ValueError("a batch must not span partitions (model, snapshot, layer)")
    files = [f for k, r in zip(keys, results) for f in _media(k, r, video)]
    if pool is not None:
        list(pool.map(lambda kv: store.write_bytes(*kv), files))
    else:
        for rel, data in files:
            store.write_bytes(rel, data)
    paths = [media_paths(k) for k in keys]
    n = len(keys)
    cols = {
        "unit": [k.unit for k in keys], "y": [k.y for k in keys], "x": [k.x for k in keys],
        "seed": [k.seed for k in keys], "method": [k.method for k in keys], "hyperparams": [k.hyperparams for k in keys],
        "objective": [r.objective for r in results], "activation_start": [r.act_start for r in results],
        "activation_final": [r.act_final for r in results], "activation_best": [r.act_best for r in results],
        "steps": [steps] * n, "image": [p[0] for p in paths], "device": [device] * n,
        "frames": [int(r.frames.shape[0]) for r in results], "fps": [float(video.fps)] * n,
        "video": [p[2] for p in paths], "lossless": [p[1] for p in paths], "strip": [p[0] for p in paths],
        "time_pool": [video.time_pool] * n,
        "shuffles": [video.shuffles] * n, "activation": [r.activation.astype(np.float32) for r in results],
    }
    for col in ("score_reversed", "score_shuffled_mean", "score_shuffled_std", "score_shuffled_min"):
        cols[col] = [r.order[col] for r in results]
    table = pa.table({f.name: cols[f.name] for f in VIDEOS_SCHEMA}, schema=VIDEOS_SCHEMA)
    store.write_bytes(f"videos/{partition}/part-{batch_digest(keys)}.parquet", parquet_bytes(table))


def done_video_keys(store: Store) -> set[tuple]:
    """Key tuples of every row already under `videos/`."""
    return done_keys(store, "videos")
