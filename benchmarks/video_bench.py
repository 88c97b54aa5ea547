"""Preferred-video memory and speed against frame count: `python -m benchmarks.video_bench [--frames 16,40,160]
[--steps 3] [--device cpu|cuda] [--method image|dgn] [--json FILE]` (also part of `make bench`; `make bench-video`).

Two CNN + LSTM models at 224 px, random weights (which set neither speed nor memory): `lrcn` (models/lrcn.py:
AlexNet fc6 per frame, LSTM, 101 classes, the paper's architecture) and `mnv2` (`mnv2_lstm` below: MobileNetV2's
features per frame, pooled, LSTM, 101 classes; a deeper CNN whose activations dwarf its input frames). One
video optimizes class 0's time-averaged score: with `--method image`, one pixel image per frame (image-space
AM, no views); with `--method dgn`, one DeePSiM-fc6 code per frame (random weights; 256 px renders cropped to
224), the paper's setting (hours per configuration on a CPU: for GPUs). For each frame count, two ways:
  - chunked: the per-frame CNN (and the generator) run 16 frames at a time under activation checkpointing, as
    `neuron-atlas video` does by default;
  - plain: one pass over every frame, every activation kept for the backward pass (`--no-checkpoint
    --chunk-frames` larger than the video).
Each (frames, way) runs in a fresh process, so its peak memory is its own: on a CPU the process's peak resident
set (and its growth over the loaded model), on CUDA torch.cuda.max_memory_allocated. Seconds per step are
measured between the ends of the first and the last step (step 0 warms up). Plain passes whose memory would
exceed `--plain-limit-gib` (extrapolated linearly from the measured ones) are not run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["measure_video", "video_report", "one_run"]

FRAMES = (16, 40, 160)
CHUNK = 16


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


MODELS = {"lrcn": ("lrcn", None), "mnv2": ("benchmarks.video_bench:mnv2_lstm", 224)}


def mnv2_lstm():
    """MobileNetV2 features per frame (global average pool, 1280-d), LSTM(256), 101 classes per frame."""
    from torch import nn
    from torchvision.models import mobilenet_v2

    class MNV2LSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.cnn = nn.Sequential(mobilenet_v2(weights=None).features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.lstm = nn.LSTM(1280, 256, batch_first=True)
            self.fc = nn.Linear(256, 101)

        def forward(self, clips):
            b, t = clips.shape[:2]
            h, _ = self.lstm(self.cnn(clips.flatten(0, 1)).reshape(b, t, -1))
            return self.fc(h)
    return MNV2LSTM()


def one_run(frames: int, way: str, steps: int, device: str, method: str, model: str = "lrcn") -> dict:
    """One configuration in this process; returns seconds per step and peak memory."""
    import torch

    from models.units import Unit
    from tasks.dgn import DGNConfig
    from tasks.image_am import ImageAMConfig
    from tasks.loop import optimize
    from tasks.objectives import per_item, unit
    from tasks.video import pool_time, video_parameterization
    from tasks.video.actor import VideoActor, VideoNetSpec
    from tasks.video.forward import VideoForward

    from .timing import clock, sync

    dgn = method == "dgn"
    name, size = MODELS[model]
    actor = VideoActor(VideoNetSpec(name, weights="random", input_size=size,
                                    generator="deepsim-fc6" if dgn else None,
                                    generator_weights="random" if dgn else None), device=device)
    cfg = DGNConfig(upper=6.0) if dgn else ImageAMConfig.build("yosinski", preset="none")
    chunked = way == "chunked"
    chunk = CHUNK if chunked else None
    param = video_parameterization(lambda fs: actor.parameterization(cfg, fs), [0], frames, chunk=chunk,
                                   use_checkpoint=chunked)
    objective = per_item([unit("fc", Unit("fc", 0).channel)])
    if actor.device.type == "cuda":
        sync(actor.device)
        torch.cuda.reset_peak_memory_stats(actor.device)
    start_mib = _rss_mib()
    ends: list[float] = []

    def tick(_step: int) -> None:
        ends.append(clock(actor.device))

    with VideoForward(actor.target.net, actor.video_net, ["fc"], chunk=chunk, use_checkpoint=chunked) as vf:
        optimize(param, objective, lambda x: pool_time(vf(actor._clips(x, frames)), "mean"), steps, cfg.rule,
                 progress=tick)
    row = {"model": model, "frames": frames, "way": way, "method": method, "device": device, "steps": steps,
           "s_per_step": (ends[-1] - ends[0]) / max(1, len(ends) - 1),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "start_rss_mib": start_mib}
    row["growth_mib"] = row["peak_rss_mib"] - start_mib
    if actor.device.type == "cuda":
        row["peak_gpu_mib"] = torch.cuda.max_memory_allocated(actor.device) / 2 ** 20
    return row


def _child(model: str, frames: int, way: str, steps: int, device: str, method: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.video_bench", "--one", f"{model}:{frames}:{way}", "--steps", str(steps),
           "--device", device, "--method", method]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        return {"model": model, "frames": frames, "way": way,
                "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_video(frames=FRAMES, steps: int = 3, device: str = "cpu", method: str = "image",
                  plain_limit_gib: float = 12.0, log=print, models=tuple(MODELS)) -> dict:
    """Every (model, frames, way) in a fresh process; returns {'rows': [...], ...} for `video_report`."""
    rows = []
    for model, way, n in ((m, w, n) for m in models for w in ("chunked", "plain") for n in frames):
        measured = [r for r in rows if (r["model"], r["way"]) == (model, way) and "s_per_step" in r]
        if way == "plain" and measured:
            per_frame = max(r.get("peak_gpu_mib", r["growth_mib"]) / r["frames"] for r in measured)
            if per_frame * n / 1024 > plain_limit_gib:
                rows.append({"model": model, "frames": n, "way": way,
                             "skipped": f"~{per_frame * n / 1024:.0f} GiB estimated"})
                log(f"video bench: {model} plain {n} frames skipped ({rows[-1]['skipped']})")
                continue
        t0 = time.perf_counter()
        row = _child(model, n, way, steps, device, method)
        rows.append(row)
        log(f"video bench: {model} {way} {n} frames: " + (row.get("error") or
            f"{row['s_per_step']:.2f} s/step, peak RSS {row['peak_rss_mib']:.0f} MiB (+{row['growth_mib']:.0f} "
            f"MiB over the loaded model)" + (f", peak GPU {row['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in row
                                             else "")) + f" [{time.perf_counter() - t0:.0f} s]")
    return {"rows": rows, "steps": steps, "device": device, "method": method, "chunk": CHUNK}


def video_report(r: dict) -> list[str]:
    """Markdown lines: the frames table."""
    gpu = r["device"].startswith("cuda")
    what = ("one DeePSiM-fc6 code per frame (random weights)" if r["method"] == "dgn" else
            "one pixel image per frame (image-space AM)")
    lines = ["", "## Preferred videos: memory and speed against frame count (`neuron-atlas video`)", "",
             "CNN + LSTM models at 224 px (random weights): `lrcn`, AlexNet fc6 per frame (LRCN's architecture), "
             f"and `mnv2`, MobileNetV2 features per frame; {what}, on `{r['device']}`; `benchmarks/video_bench.py`, "
             f"each configuration in a fresh process, {r['steps']} steps (seconds per step from the steps after the "
             f"first). Chunked = the per-frame CNN in chunks of {r['chunk']} frames under activation "
             "checkpointing (the default); plain = one pass, every activation kept.", "",
             "| model | frames | way | s / step | peak " + ("GPU memory MiB" if gpu else "resident MiB (growth "
                                                            "over the loaded model)") + " |", "|---|---|---|---|---|"]
    for row in sorted(r["rows"], key=lambda x: (x.get("model", ""), x["frames"], x["way"])):
        head = f"| {row.get('model', 'lrcn')} | {row['frames']} | {row['way']}"
        if "error" in row or "skipped" in row:
            lines.append(f"{head} | not run: {row.get('error') or row['skipped']} | |")
            continue
        mem = f"{row['peak_gpu_mib']:.0f}" if gpu else f"{row['peak_rss_mib']:.0f} (+{row['growth_mib']:.0f})"
        lines.append(f"{head} | {row['s_per_step']:.2f} | {mem} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", default=",".join(map(str, FRAMES)))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--method", choices=["image", "dgn"], default="image")
    ap.add_argument("--plain-limit-gib", type=float, default=12.0)
    ap.add_argument("--quick", action="store_true", help="16 and 40 frames, 2 steps")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--models", default=",".join(MODELS), help="lrcn, mnv2 or both")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # MODEL:FRAMES:WAY, run in this process (the child)
    args = ap.parse_args(argv)
    if args.one:
        model, n, way = args.one.split(":")
        print(json.dumps(one_run(int(n), way, args.steps, args.device, args.method, model)))
        return 0
    frames = (16, 40) if args.quick else tuple(int(f) for f in args.frames.split(","))
    r = measure_video(frames, 2 if args.quick else args.steps, args.device, args.method, args.plain_limit_gib,
                      models=tuple(args.models.split(",")))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    print("\n".join(video_report(r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
