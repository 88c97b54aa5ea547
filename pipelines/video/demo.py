"""`make video-demo`: the frame-order finding of the DGN-AM supplement, offline, on two small CNN + LSTM models.

`python -m pipelines.video.demo [--out video-demo-out] [--docs docs]` does, in one process (one Ray start):
1. trains `video-motion` (7 activities, scored from the LSTM's last step: needs frame order) and
   `video-appearance` (4 shapes, per-frame scores averaged: any frame tells) on procedural activity clips
   (tasks/video/activities.py, tasks/video/train.py; fresh clips every step), saving OUT/models/<model>.pt;
2. writes 140 held-out clips twice, labelled by activity (H.264 MP4s, OUT/clips/motion/<activity>/) and by
   shape (lossless WebPs, OUT/clips/shape/<shape>/);
3. runs `neuron-atlas video` for every class of both models (16 frames, one image per frame) and
   `neuron-atlas video --analyze-order` on the held-out clips, through the real CLI, into OUT/atlas;
4. draws the strips (DOCS/video-motion.png, DOCS/video-appearance.png) and prints the order table (also
   OUT/order-table.md), with the commands and the wall time.
Every step skips what an earlier run already finished (trained weights, clips, keys, analysis tables).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from models.video_demo import DEMO_PRE, appearance_net, motion_net
from tasks.video.activities import MOTIONS, SHAPES, make_clips
from tasks.video.train import accuracy, train_video_classifier

from ..cli import main as cli
from ..storage import Store
from .figures import order_markdown, order_rows, video_sheet
from .media import mp4_bytes, webp_bytes

__all__ = ["main", "MODELS", "SYNTH"]

FRAMES = 16
# (registry name, label, class names, training steps, learning rate)
MODELS = (("video-motion", "motion", MOTIONS, 250, 3e-3), ("video-appearance", "shape", SHAPES, 250, 6e-3))
# the preferred videos: one Fourier image per frame rendered at 16 px (coarse, readable blobs), views jittered
# by up to 3 px (the same view for every frame of a video), Adam, 256 steps
SYNTH = ["--frames", str(FRAMES), "--style", "lucid", "--transforms", "jitter=3+2", "--fourier-size", "16",
         "--steps", "256"]
TEST_PER_CLASS = 20


def train(out: str, name: str, label: str, steps: int, lr: float, log) -> str:
    """Train one demo model (unless OUT/models/<name>.pt exists); returns the weights path."""
    path = os.path.join(out, "models", f"{name}.pt")
    if os.path.exists(path):
        log(f"{name}: trained weights found at {path}")
        return path
    torch.manual_seed(0)
    net = motion_net() if label == "motion" else appearance_net()
    norm = DEMO_PRE.module()
    log(f"{name}: training on fresh {label}-labelled clips, {steps} steps")
    t0 = time.perf_counter()
    train_video_classifier(net, label, norm, steps=steps, lr=lr, frames=FRAMES, log=log)
    held_out = make_clips(512, 10 ** 6, FRAMES)
    acc = {o: accuracy(net, held_out, label, norm, o) for o in ("given", "reversed", "shuffled")}
    log(f"{name}: {time.perf_counter() - t0:.0f} s; held-out accuracy {acc['given']:.0%} (frames reversed "
        f"{acc['reversed']:.0%}, shuffled {acc['shuffled']:.0%})")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(net.state_dict(), path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


def write_clips(out: str, log) -> dict[str, str]:
    """Held-out clips, TEST_PER_CLASS per activity, in two labelled trees; returns {label: folder}."""
    folders = {"motion": os.path.join(out, "clips", "motion"), "shape": os.path.join(out, "clips", "shape")}
    if all(os.path.isdir(f) for f in folders.values()):
        return folders
    data = make_clips(TEST_PER_CLASS * len(MOTIONS) * 3, 2 * 10 ** 6, FRAMES)
    picked = [i for m in range(len(MOTIONS)) for i in (data.motion == m).nonzero().flatten()[:TEST_PER_CLASS].tolist()]
    for k, i in enumerate(picked):
        frames = (data.clips[i].permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
        for label, names, ext in (("motion", MOTIONS, "mp4"), ("shape", SHAPES, "webp")):
            folder = os.path.join(folders[label], names[int(getattr(data, label)[i])])
            os.makedirs(folder, exist_ok=True)
            data_bytes = mp4_bytes(frames, 25.0) if ext == "mp4" else webp_bytes(frames, 25.0)
            with open(os.path.join(folder, f"clip_{k:03d}.{ext}"), "wb") as f:
                f.write(data_bytes)
    log(f"wrote {len(picked)} held-out clips under {out}/clips (MP4s by activity, lossless WebPs by shape)")
    return folders


def run(argv: list[str], log) -> None:
    log("$ neuron-atlas " + " ".join(argv))
    code = cli(argv)
    if code:
        raise SystemExit(code)


def order_table_of(store: Store, model: str) -> str | None:
    """The `video-order/` table the manifest records for `model`'s latest analysis."""
    runs = json.loads(store.read_bytes("manifest.json")).get("runs", {})
    found = [r for r in runs.values() if r.get("command") == "video --analyze-order" and r.get("model") == model
             and r.get("status") == "finished"]
    return max(found, key=lambda r: r.get("finished_at", ""))["table"] if found else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="video-demo-out")
    ap.add_argument("--docs", default="docs", help="where the strips go")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    log = lambda m: print(m, flush=True)  # noqa: E731
    weights = {name: train(args.out, name, label, steps, lr, log) for name, label, _, steps, lr in MODELS}
    folders = write_clips(args.out, log)
    atlas = os.path.join(args.out, "atlas")
    for name, label, _, _, _ in MODELS:
        run(["video", "--model", name, "--weights", weights[name], *SYNTH, "--out", atlas], log)
        run(["video", "--model", name, "--weights", weights[name], "--analyze-order", "--videos", folders[label],
             "--frames", str(FRAMES), "--out", atlas], log)
    store = Store(atlas)
    os.makedirs(args.docs, exist_ok=True)
    rows = []
    for name, _, names, _, _ in MODELS:
        sheet = os.path.join(args.docs, f"{name}.png")
        video_sheet(store, name, names).save(sheet)
        rows.append({**order_rows(store, name, names, order_table_of(store, name)), "frames": FRAMES})
        log(f"wrote {sheet}")
    table = order_markdown(rows)
    with open(os.path.join(args.out, "order-table.md"), "w") as f:
        f.write(table + "\n")
    log(table)
    log(f"video demo: {time.perf_counter() - t0:.0f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
