"""neuron-atlas benchmark: `python -m benchmarks.run [--quick] [--out BENCHMARKS.md] [--device cpu|cuda]`.

Measures in one run, on one machine, on MobileNetV2 with its real ImageNet weights over a mixed-layer set
(early `features.3`, middle `features.10`, output `classifier.1`):
  1. units·seeds per second for image-space AM and DGN-AM, batched vs one item at a time (same code);
  2. the same units against Lucent at matched work (see benchmarks/lucent_peer.py for what is matched);
  3. DGN-AM with the DeePSiM-fc6 generator + AlexNet at 227 px (random weights): batched vs one at a time;
  4. FLOPs per optimization step (torch.utils.flop_counter.FlopCounterMode) and achieved FLOP/s as a
     fraction of the dense fp32 matmul FLOP/s measured in this run;
  5. pipeline overhead through Ray on a 200-item run (wall time the actor was not synthesizing), peak memory;
  6. readable pictures (benchmarks/quality.py): ten classes by every method, scored for view robustness,
     contrast and colourfulness, with a contact sheet, and the lucid style's speed against Lucent's
     render_vis at matched work, end to end;
  7. the top-k benchmark (benchmarks/topk_bench.py) and the report benchmark (benchmarks/report_bench.py: a
     10,000-unit layer's site generation and its page in headless Chromium), unless --skip-topk/--skip-report;
  8. preferred videos (benchmarks/video_bench.py): peak memory and seconds per step of LRCN at 224 px against
     frame count (16, 40, 160), chunked + checkpointed vs plain, unless --skip-video;
  9. DGN-AM on Fashion-MNIST (benchmarks/dgn_quality.py): the judge, realism, sharpness, diversity and copying
     measures of DGN-AM on both Fashion nets, its ablations and image AM against real photos, unless
     --skip-dgn;
  10. the pipeline at a million items (benchmarks/scale_bench.py), unless --skip-scale;
  11. the optimization step itself (benchmarks/step_bench.py): subnormal flushing, coarse views, torch.compile;
  12. facets (benchmarks/facets_bench.py): diversity, caricatures and DGN-AM from a photo, unless --skip-facets;
  13. transformers (benchmarks/transformer_check.py): channel AM on ViT-B/16 and Swin-T (seeded random weights),
      a batch of units against the same units one at a time, unless --skip-transformers.
Writes a Markdown report (benchmarks/markdown.py) and a JSON file with every figure. A section left out with
--skip-* keeps the figures of the previous JSON file, marked in the report as carried over from an earlier run.
It is a command and a report, not a test. `--device cuda` on a machine without CUDA stops at once with one line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from models.capture import Capture
from models.units import Unit
from pipelines.cluster import Placement
from pipelines.runner import atlas_batch_size
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.dgn import DGNConfig
from tasks.image_am import ImageAMConfig

from .facets_bench import measure_facets
from .lucent_peer import lucent_available, lucent_device, plain_model, time_lucent
from .markdown import report
from .quality import measure_quality
from .report_bench import measure_report
from .snapshots_bench import measure_snapshots
from .step_bench import measure_step
from .timing import clock
from .topk_bench import measure_topk
from .video_bench import measure_video

MIXED = (("features.3", 12), ("features.10", 12), ("classifier.1", 12))


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def matmul_flops(device: torch.device, n: int = 2048, seconds: float = 2.0) -> float:
    """Dense fp32 matmul FLOP/s on `device` (best of repeated n×n products)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = clock(device)
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * n ** 3 / (clock(device) - t0))
    return best


def mixed_units(layers, per_layer: int, actor: SynthesisActor) -> list[Unit]:
    units = []
    for layer, _ in layers:
        info = actor.target.layers[layer]
        sp = info.spatial
        units += [Unit(layer, c, *(sp[0] // 2, sp[1] // 2) if sp else (None, None)) for c in range(per_layer)]
    return units


def _by_layer(units: list[Unit]) -> dict[str, list[Unit]]:
    groups: dict[str, list[Unit]] = {}
    for u in units:
        groups.setdefault(u.layer, []).append(u)
    return groups


def time_ours(actor: SynthesisActor, units: list[Unit], cfg, steps: int, batch_size: int) -> float:
    """Seconds to optimize every unit (seed 0), batches of `batch_size` that never mix layers."""
    by_layer = _by_layer(units)
    t0 = clock(actor.device)
    for group in by_layer.values():
        for i in range(0, len(group), batch_size):
            actor.run(Batch(tuple(WorkItem(u, 0) for u in group[i:i + batch_size]), cfg, steps))
    return clock(actor.device) - t0


def step_flops(actor: SynthesisActor, units: list[Unit], cfg) -> float:
    """FLOPs of one optimization step (render, truncated forward, backward) for the batch `units`."""
    param, objective = actor.setup(Batch(tuple(WorkItem(u, 0) for u in units), cfg, 1))
    p = param.params.requires_grad_(True)
    with Capture(actor.target.net, objective.layers) as cap, FlopCounterMode(display=False) as fc:
        act = objective(cap(actor.model_input(param.render(p))))
        total = act - param.penalty(p) if param.penalty is not None else act
        total.sum().backward()
    return float(fc.get_total_flops())


def compare(name: str, actor: SynthesisActor, units: list[Unit], cfg, steps: int, batch: int, peak: float,
            log) -> dict:
    """Batched vs one-at-a-time through the same code, with FLOP/s of the batched step: each layer warmed up at
    both batch sizes, then the two ways alternately twice, the best of each (this VM's timings wander by tens of
    per cent between runs)."""
    for group in _by_layer(units).values():  # warm-up: every layer's shapes at both batch sizes
        for size in (batch, 1):
            actor.run(Batch(tuple(WorkItem(u, 0) for u in group[:size]), cfg, 1))
    t_batched = t_single = float("inf")
    for _ in range(2):
        t_batched = min(t_batched, time_ours(actor, units, cfg, steps, batch))
        t_single = min(t_single, time_ours(actor, units, cfg, steps, 1))
    by_layer = _by_layer(units)
    flops = sum(step_flops(actor, g[:batch], cfg) * (len(g) / len(g[:batch])) for g in by_layer.values())
    achieved = flops * steps / t_batched
    row = {"name": name, "items": len(units), "steps": steps, "batch": batch,
           "batched_s": t_batched, "single_s": t_single,
           "batched_items_per_s": len(units) / t_batched, "single_items_per_s": len(units) / t_single,
           "speedup_vs_single": t_single / t_batched, "flops_per_item_step": flops / len(units),
           "achieved_flops": achieved, "fraction_of_matmul": achieved / peak}
    log(f"{name}: batched {row['batched_items_per_s']:.3f} items/s, one-at-a-time "
        f"{row['single_items_per_s']:.3f} items/s ({row['speedup_vs_single']:.2f}x); "
        f"{achieved / 1e9:.1f} GFLOP/s = {row['fraction_of_matmul']:.0%} of matmul")
    return row


def ablation(actor: SynthesisActor, units: list[Unit], cfg, steps: int, batch: int, ours_s: float, log) -> dict:
    """The same batched run on the plain torchvision module (NCHW, stock BatchNorm, no fusion): what
    channels_last, the BatchNorms folded into the convolutions and the fused conv + activation buy. The
    actor optimizes through `synthesis_net` (its cached folded copies), so that is what is swapped; the plain
    module is loaded onto the actor's device, as everything the actor runs must be."""
    plain = plain_model("mobilenet_v2", actor.target.weights_uri, actor.device).requires_grad_(False)
    for m in plain.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    actor.synthesis_net = lambda layers: plain  # both shadow the methods for this instance
    actor.model_input = actor.target.normalize  # NCHW input
    try:
        t_plain = time_ours(actor, units, cfg, steps, batch)
    finally:
        del actor.synthesis_net, actor.model_input
    log(f"plain model (NCHW, stock BatchNorm, unfused): {t_plain:.1f} s vs {ours_s:.1f} s ({t_plain / ours_s:.2f}x)")
    return {"plain_s": t_plain, "optimized_s": ours_s, "speedup": t_plain / ours_s}


def ray_overhead(items: int, steps: int, device: torch.device, log) -> dict:
    """A real `atlas` run through Ray (local cluster, one actor on `device`'s kind): wall time vs time inside
    synthesis."""
    from pipelines.runner import run_atlas
    from pipelines.spec import AtlasSpec, plan

    sel = (("features.3", "all"), ("features.10", "all"), ("classifier.1", "0:12")) if items >= 200 else (
        ("features.3", "0:8"), ("features.10", "0:8"), ("classifier.1", "0:4"))
    with tempfile.TemporaryDirectory() as out:
        spec = AtlasSpec(net=NetSpec("mobilenet_v2"), config=ImageAMConfig.from_preset("lowfreq"),
                         layers=tuple(layer for layer, _ in sel), layer_units=sel, seeds=2, steps=steps, out=out,
                         placement=Placement(address="local-ray", device=device.type))
        s = run_atlas(plan(spec), log=lambda m: None)
    row = {"items": s.done, "steps": steps, "wall_s": s.wall_s, "synth_s": s.synth_s,
           "synth_fraction": s.synth_fraction, "overhead_fraction": 1 - s.synth_fraction}
    log(f"ray: {s.done} items in {s.wall_s:.1f} s, synthesizing {s.synth_fraction:.1%} of wall time")
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a ~2-minute version with fewer units and steps")
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--json", default="benchmarks/results.json")
    ap.add_argument("--device", default=None)
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--per-hour", type=int, default=0, metavar="N",
                    help="also time N items of DeePSiM-fc6 + AlexNet 227 px at 200 steps (batch 64) and report "
                         "units·seeds per hour: the GPU target (use with --device cuda)")
    ap.add_argument("--skip-quality", action="store_true", help="skip the readable-pictures comparison")
    ap.add_argument("--quality-only", action="store_true", help="only the readable-pictures comparison")
    ap.add_argument("--sheet", default="docs/quality-sheet.png", help="where the quality contact sheet goes")
    ap.add_argument("--skip-topk", action="store_true", help="skip the top-k dataset-examples benchmark")
    ap.add_argument("--skip-snapshots", action="store_true", help="skip the snapshot-sweep overhead benchmark")
    ap.add_argument("--skip-video", action="store_true",
                    help="skip the preferred-video benchmark (memory and seconds per step at 16, 40, 160 frames)")
    ap.add_argument("--skip-dgn", action="store_true", help="skip the DGN-AM Fashion-MNIST measurements")
    ap.add_argument("--skip-scale", action="store_true", help="skip the million-item benchmark (make bench-scale)")
    ap.add_argument("--skip-report", action="store_true",
                    help="skip the report benchmark (a 10,000-unit layer's site and its page in headless Chromium)")
    ap.add_argument("--skip-step", action="store_true", help="skip the step section (torch.compile and friends)")
    ap.add_argument("--skip-transformers", action="store_true",
                    help="skip channel AM on ViT-B/16 and Swin-T (batched against one at a time)")
    ap.add_argument("--skip-facets", action="store_true",
                    help="skip diversity, caricatures and DGN-AM from a photo (with their contact sheets)")
    args = ap.parse_args(argv)
    q = args.quick
    log = lambda m: print(m, flush=True)  # noqa: E731
    if (args.device or "").startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks: --device cuda but this machine has no CUDA device; nothing was measured (run it where "
              "`python -c 'import torch; print(torch.cuda.is_available())'` prints True)", flush=True)
        return 0
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:  # one name for it: the actors and Lucent say cuda:N
        device = torch.device("cuda", torch.cuda.current_device())
    per_layer, steps, batch = (4, 5, 4) if q else (8, 20, atlas_batch_size(None, device.type == "cuda"))
    results: dict = {"machine": machine(), "quick": q, "device": str(device)}
    peak = matmul_flops(device)
    results["matmul_flops"] = peak
    log(f"machine: {results['machine']}; fp32 matmul {peak / 1e9:.1f} GFLOP/s")

    if args.quality_only:
        return _finish(args, results, log, quality=True)
    mnv2 = SynthesisActor(NetSpec("mobilenet_v2", generator="deepsim-fc6", generator_weights="random"),
                          device=str(device))
    units = mixed_units(MIXED, per_layer, mnv2)
    plain = ImageAMConfig.from_preset("none")
    results["image_am"] = compare("image AM, MobileNetV2 mixed layers", mnv2, units, plain, steps, batch, peak, log)
    dgn = DGNConfig(upper=6.0)
    results["dgn_am"] = compare("DGN-AM (DeePSiM-fc6), MobileNetV2 mixed layers", mnv2, units, dgn, steps,
                                batch, peak, log)
    results["optimizations"] = ablation(mnv2, units, plain, steps, batch, results["image_am"]["batched_s"], log)
    if lucent_available() and lucent_device() != device:
        log(f"lucent runs on {lucent_device()}, not on {device}; skipping the peer (it would not be matched work)")
    elif lucent_available():
        targets = [(u.layer, u.channel, u.y, u.x) for u in units]
        t_lucent = time_lucent(plain_model("mobilenet_v2", mnv2.target.weights_uri, device), targets, steps)
        t_lucent_ours = time_lucent(mnv2.target.net, targets, steps)
        ours = results["image_am"]["batched_s"]
        results["lucent"] = {"items": len(units), "steps": steps, "seconds": t_lucent,
                             "items_per_s": len(units) / t_lucent, "ours_speedup": t_lucent / ours,
                             "seconds_on_our_frozen_model": t_lucent_ours,
                             "ours_speedup_same_model": t_lucent_ours / ours}
        log(f"lucent: {len(units) / t_lucent:.3f} items/s; ours batched is {t_lucent / ours:.2f}x faster "
            f"({t_lucent_ours / ours:.2f}x when Lucent runs our frozen channels_last model)")
    else:
        log("lucent not installed (make bench installs it into .bench-deps); skipping the peer")
    del mnv2

    alex = SynthesisActor(NetSpec("alexnet", weights="random", input_size=227, generator="deepsim-fc6",
                                  generator_weights="random"), device=str(device))
    alex_units = mixed_units((("features.10", 0), ("classifier.6", 0)), per_layer, alex)
    results["dgn_alexnet"] = compare("DGN-AM DeePSiM-fc6 + AlexNet 227 px", alex, alex_units, replace(dgn),
                                     steps, batch, peak, log)
    if args.per_hour:
        hour_units = [Unit("classifier.6", c % 1000) for c in range(args.per_hour)]
        alex.run(Batch(tuple(WorkItem(u, 0) for u in hour_units[:2]), dgn, 2))  # warm-up
        t = time_ours(alex, hour_units, dgn, 200, 64)
        results["per_hour"] = {"items": len(hour_units), "steps": 200, "batch": 64, "seconds": t,
                               "items_per_hour": len(hour_units) / t * 3600}
        log(f"DeePSiM-fc6 + AlexNet, 200 steps: {len(hour_units) / t * 3600:,.0f} units·seeds per hour")
    del alex

    if not args.skip_ray:
        results["ray"] = ray_overhead(40 if q else 200, 5 if q else 20, device, log)
    _topk(args, results, device, log)
    if not args.skip_report:
        results["report"] = measure_report(1_000 if args.quick else 10_000, log)
    if not args.skip_snapshots:
        results["snapshots"] = measure_snapshots(args.quick, log)
    if not args.skip_video:
        results["video"] = measure_video((16, 40) if args.quick else (16, 40, 160), 2 if args.quick else 3,
                                         str(device), log=log)
    if not args.skip_dgn:
        from .dgn_quality import measure as measure_dgn

        results["dgn_fashion"], _ = measure_dgn(2 if args.quick else 8, log=log, device=str(device))
    if not args.skip_scale:
        from .scale_bench import measure_scale

        results["scale"] = measure_scale(args.quick, log=log)
    if not args.skip_step:
        results["step"] = measure_step(str(device), log)
    if not args.skip_facets:
        results["facets"] = measure_facets(log, steps=8 if q else 256, device=str(device))
    if not args.skip_transformers:
        from .transformer_check import measure_transformers
        results["transformers"] = measure_transformers(str(device), 2 if q else 4, 4 if q else 16, log)
    return _finish(args, results, log, quality=not args.skip_quality and lucent_available())


def _topk(args, results: dict, device: torch.device, log) -> None:
    """Top-k dataset examples against the toolbox's plain loop (benchmarks/topk_bench.py), unless --skip-topk."""
    if not args.skip_topk:
        results["topk"] = measure_topk(32 if args.quick else 128, log, device=str(device))


SCALE_JSON = "benchmarks/scale.json"
SECTIONS = ("quality", "topk", "report", "snapshots", "video", "dgn_fashion", "scale", "step", "ray", "facets",
            "transformers")


def _finish(args, results: dict, log, quality: bool) -> int:
    """Optionally the quality comparison, then peak memory and the two report files; a section this run did not
    measure keeps the previous JSON file's figures (listed under `carried_over`)."""
    if quality:
        with tempfile.TemporaryDirectory() as work:
            results["quality"] = measure_quality(work, args.sheet, log)
    try:
        with open(args.json) as f:
            previous = json.load(f)
    except (OSError, ValueError):
        previous = {}
    if "scale" not in previous and os.path.exists(SCALE_JSON):  # make bench-scale writes its own file
        with open(SCALE_JSON) as f:
            previous["scale"] = json.load(f)
    for key in SECTIONS:
        if key not in results and key in previous:
            results[key] = previous[key]
            results.setdefault("carried_over", []).append(key)
    device = torch.device(results["device"])
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        results["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    with open(args.out, "w") as f:
        f.write(report(results))  # benchmarks/markdown.py
    log(f"wrote {args.out} and {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
