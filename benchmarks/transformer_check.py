"""Channel AM on real transformer architectures, checked by an independent forward hook.

    python -m benchmarks.transformer_check [--out transformer-check-out] [--steps 64] [--units 0:3]

For torchvision's `vit_b_16` (a token layer: `encoder.layers.encoder_layer_3.mlp.0`, 3,072 units over cls + 14x14)
and `swin_t` (a channels-last layer: `features.1.0.mlp.0`, 384 units at 56x56), with seeded random weights saved
as a `state_dict` and passed by `--weights` (no hub download):
1. `neuron-atlas atlas --objective channel` in the default style (nothing else set but --steps), timed;
2. the activation at the start and at the end of each item, from `units/`;
3. each unit's image read back from its PNG and run through the net with a plain forward hook that knows nothing of
   layouts: the channel's mean over patch tokens (ViT, class token left out) or positions (Swin). Each unit's own
   image must drive it more than any other unit's image does.
Writes OUT/transformer-check.json and prints one line per net.

`--speed N`: also the throughput of channel AM on each net in this process (the actor's own code, no Ray), the
default style at `--speed-steps` steps: N units as one batch against the same N one at a time, after a warm-up,
as items per second (the device is the actor's: a GPU where there is one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image

__all__ = ["NETS", "check", "main"]

# (import path, layer, how the raw output holds positions)
NETS = (
    ("torchvision.models:vit_b_16", "encoder.layers.encoder_layer_3.mlp.0", "tokens"),
    ("torchvision.models:swin_t", "features.1.0.mlp.0", "channels_last"),
)


def _raw_channel_means(net: torch.nn.Module, layer: str, kind: str, x: torch.Tensor) -> torch.Tensor:
    """[B, C]: each channel's mean over patch tokens ([B, N, C], the class token dropped) or over the positions of
    a channels-last map ([B, H, W, C]), from a forward hook on the module's raw output."""
    seen = {}
    handle = dict(net.named_modules())[layer].register_forward_hook(lambda _m, _i, o: seen.setdefault("o", o))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    out = seen["o"]
    return out[:, 1:].mean(1) if kind == "tokens" else out.flatten(1, 2).mean(1)


def check(model: str, layer: str, kind: str, out: str, steps: int, units: str) -> dict:
    import torchvision.models as tvm

    from models.preprocess import IMAGENET
    from pipelines.sink import read_units
    from pipelines.storage import Store

    name = model.split(":")[1]
    torch.manual_seed(0)
    net = getattr(tvm, name)().eval()
    weights = os.path.join(out, f"{name}-seed0.pt")
    os.makedirs(out, exist_ok=True)
    torch.save(net.state_dict(), weights)
    dest = os.path.join(out, name)
    cmd = [sys.executable, "-m", "pipelines", "atlas", "--model", model, "--weights", weights, "--layers", layer,
           "--units", units, "--objective", "channel", "--steps", str(steps), "--seeds", "1", "--out", dest]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{name}: atlas failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rows = sorted(read_units(Store(dest)).to_pylist(), key=lambda r: r["unit"])
    images = torch.stack([torch.from_numpy(np.asarray(Image.open(os.path.join(dest, r["image"])).convert("RGB"),
                                                      np.float32) / 255.0).permute(2, 0, 1) for r in rows])
    if tuple(images.shape[-2:]) != IMAGENET.size:
        images = torch.nn.functional.interpolate(images, size=IMAGENET.size, mode="bilinear", align_corners=False)
    x = IMAGENET.module()(images)
    means = _raw_channel_means(net, layer, kind, x)  # [image, channel]
    ids = [r["unit"] for r in rows]
    table = means[:, ids].numpy()  # [image of unit i, unit j]
    own = np.diag(table)
    others = np.where(np.eye(len(ids), dtype=bool), -np.inf, table).max(0)  # best other image, per unit
    return {"model": model, "layer": layer, "units": ids, "steps": steps, "wall_s": round(wall, 1),
            "items_per_s": round(len(rows) / wall, 3),
            "activation_start": [round(r["activation_start"], 4) for r in rows],
            "activation_final": [round(r["activation_final"], 4) for r in rows],
            "rises": all(r["activation_final"] > r["activation_start"] for r in rows),
            "hook_own": [round(float(v), 4) for v in own], "hook_best_other": [round(float(v), 4) for v in others],
            "own_image_drives_its_unit_most": bool((own > others).all()),
            "hook_matches_atlas": bool(np.allclose(own, [r["activation_final"] for r in rows], rtol=0.05, atol=0.02)),
            "command": " ".join(cmd[2:])}


def speed(model: str, layer: str, n: int, steps: int, device: str | None = None) -> dict:
    """Items/s of channel AM on `n` units as one batch and one at a time (module docstring), on `device` (None: a
    GPU where there is one)."""
    from models.units import Unit
    from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
    from tasks.image_am import ImageAMConfig
    from tasks.objectives import ObjectiveSpec

    from .timing import clock

    actor = SynthesisActor(NetSpec(model), device=device)  # as built: seeded by the actor, nothing downloaded
    cfg, obj = ImageAMConfig.build("lucid"), ObjectiveSpec("channel")
    items = [WorkItem(Unit(layer, c), 0) for c in range(n)]
    actor.run(Batch(tuple(items[:1]), cfg, 2, objective=obj))  # warm-up: allocations, the coarse-size check
    t0 = clock(actor.device)
    actor.run(Batch(tuple(items), cfg, steps, objective=obj))
    batched = clock(actor.device) - t0
    t0 = clock(actor.device)
    for item in items:
        actor.run(Batch((item,), cfg, steps, objective=obj))
    single = clock(actor.device) - t0
    return {"model": model, "layer": layer, "items": n, "steps": steps, "device": str(actor.device),
            "batched_items_per_s": round(n / batched, 4), "single_items_per_s": round(n / single, 4),
            "batched_speedup": round(single / batched, 2)}


def measure_transformers(device: str, n: int, steps: int, log=print) -> dict:
    """The bench's transformers section (benchmarks/run.py): `speed` on every net of NETS."""
    rows = []
    for model, layer, _ in NETS:
        rows.append(speed(model, layer, n, steps, device))
        log(f"transformers: {rows[-1]}")
    return {"speed": rows}


def transformers_report(t: dict) -> list[str]:
    """The BENCHMARKS.md section of `measure_transformers`' figures."""
    lines = ["", "## Transformers: channel AM on ViT-B/16 and Swin-T", "",
             "Seeded random weights (no download), the default style, `--objective channel` on a token layer (ViT) "
             "and a channels-last layer (Swin); the actor's own code in this process, after a warm-up "
             "(`benchmarks/transformer_check.py`; `python -m benchmarks.transformer_check` also checks the pictures "
             "with an independent hook, README 'Transformers').", "",
             "| net, layer | device | units | steps | batched items/s | one at a time items/s | batched speed-up |",
             "|---|---|---|---|---|---|---|"]
    for r in t["speed"]:
        lines.append(f"| `{r['model'].split(':')[1]}` `{r['layer']}` | {r['device']} | {r['items']} | {r['steps']} | "
                     f"{r['batched_items_per_s']:.3f} | {r['single_items_per_s']:.3f} | {r['batched_speedup']:.2f}x |")
    if t.get("note"):
        lines += ["", t["note"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="transformer-check-out")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--units", default="0:3")
    ap.add_argument("--nets", default=",".join(n[0].split(":")[1] for n in NETS))
    ap.add_argument("--speed", type=int, default=0, help="also time N units batched against one at a time")
    ap.add_argument("--speed-steps", type=int, default=16)
    ap.add_argument("--skip-check", action="store_true", help="only the speed measurement")
    a = ap.parse_args(argv)
    wanted = set(a.nets.split(","))
    nets = [(m, layer, kind) for m, layer, kind in NETS if m.split(":")[1] in wanted]
    results = [] if a.skip_check else [check(m, layer, kind, a.out, a.steps, a.units) for m, layer, kind in nets]
    speeds = [speed(m, layer, a.speed, a.speed_steps) for m, layer, _ in nets] if a.speed else []
    for r in speeds:
        print(f"{r['model']} {r['layer']} on {r['device']}: {r['items']} units x {r['steps']} steps: batched "
              f"{r['batched_items_per_s']} items/s, one at a time {r['single_items_per_s']} items/s "
              f"({r['batched_speedup']}x)")
    for r in results:
        print(f"{r['model']} {r['layer']}: start {r['activation_start']} -> final {r['activation_final']} "
              f"(rises: {r['rises']}); hook own {r['hook_own']} vs best other {r['hook_best_other']} "
              f"(own image wins: {r['own_image_drives_its_unit_most']}); {r['wall_s']} s")
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "transformer-check.json"), "w") as f:
        json.dump({"check": results, "speed": speeds}, f, indent=1)
    return 0 if all(r["rises"] and r["own_image_drives_its_unit_most"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
