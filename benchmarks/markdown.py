"""The Markdown of `make bench` (BENCHMARKS.md) from the figures benchmarks/run.py measured (results.json)."""

from __future__ import annotations

from .facets_bench import facets_report
from .quality import quality_report
from .report_bench import report_lines
from .snapshots_bench import snapshots_report
from .step_bench import step_report
from .topk_bench import topk_report
from .transformer_check import transformers_report
from .video_bench import video_report

__all__ = ["report"]


def _scale_report(s: dict) -> list[str]:
    from .scale_bench import scale_report  # imported only for a run that has the section

    return scale_report(s)


# results.json key -> its section's Markdown, in the report's order
_SECTIONS = (("quality", quality_report), ("topk", topk_report), ("snapshots", snapshots_report),
             ("report", report_lines), ("video", video_report), ("scale", _scale_report), ("step", step_report),
             ("facets", facets_report), ("transformers", transformers_report))


def report(r: dict) -> str:
    m = r["machine"]
    carried = r.get("carried_over", [])
    lines = ["# Benchmarks", "",
             f"Measured by `python -m benchmarks.run{' --quick' if r['quick'] else ''}` (`make bench`) in one run on "
             f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), device "
             f"`{r['device']}`{', ' + m['gpu'] if 'gpu' in m else ''}. Dense fp32 matmul in the same run: "
             f"{r['matmul_flops'] / 1e9:.1f} GFLOP/s."
             + (f" Sections carried over from an earlier run (left out of this one with --skip-*): "
                f"{', '.join(carried)}." if carried else ""), "",
             "| workload | items | steps | batched items/s | one-at-a-time items/s | batched speed-up | "
             "GFLOP per item-step | achieved GFLOP/s | of matmul |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key in ("image_am", "dgn_am", "dgn_alexnet"):
        if key not in r:
            continue
        x = r[key]
        lines.append(f"| {x['name']} | {x['items']} | {x['steps']} | {x['batched_items_per_s']:.3f} | "
                     f"{x['single_items_per_s']:.3f} | {x['speedup_vs_single']:.2f}x | "
                     f"{x['flops_per_item_step'] / 1e9:.2f} | {x['achieved_flops'] / 1e9:.1f} | "
                     f"{x['fraction_of_matmul']:.0%} |")
    if "optimizations" in r:
        o = r["optimizations"]
        lines += ["", f"**What the model-level optimizations buy** (image AM, batched, same units): the plain "
                  f"torchvision module (NCHW, stock BatchNorm) takes {o['plain_s']:.1f} s, ours (channels_last, "
                  f"BatchNorm folded into the convolutions, each conv fused with its activation on CPUs) "
                  f"{o['optimized_s']:.1f} s: "
                  f"**{o['speedup']:.2f}x**."]
    if "lucent" in r:
        lu = r["lucent"]
        lines += ["", f"**Against Lucent** (torch-lucent 0.1.8, one unit at a time, matched work: same model and "
                  f"weights, 224 px, {lu['steps']} steps, same unit objectives at the same positions, Lucent's "
                  "transforms off and its normalization on, pixel parameterization without FFT/decorrelation; "
                  "ours: image-space AM with preset `none`): Lucent "
                  f"{lu['items_per_s']:.3f} items/s, ours batched {r['image_am']['batched_items_per_s']:.3f} "
                  f"items/s — **{lu['ours_speedup']:.2f}x**. Lucent runs the plain torchvision module with the "
                  "same weights, as its users load it; on our frozen-BatchNorm channels_last copy it takes "
                  f"{lu['seconds_on_our_frozen_model']:.1f} s, and ours is {lu['ours_speedup_same_model']:.2f}x "
                  "faster (truncation and batching alone)."]
    if "ray" in r:
        ra = r["ray"]
        lines += ["", f"**Through Ray** (`run_atlas`, local cluster, one actor, {ra['items']} items, "
                  f"{ra['steps']} steps, MobileNetV2 features.3, features.10, classifier.1): wall {ra['wall_s']:.1f} s, "
                  f"actors synthesizing {ra['synth_fraction']:.1%} of it — overhead "
                  f"{ra['overhead_fraction']:.1%} (Ray start-up, actor start, Parquet/PNG writes that "
                  "did not overlap compute)."]
    if "per_hour" in r:
        ph = r["per_hour"]
        lines += ["", f"**Units·seeds per hour**, DGN-AM DeePSiM-fc6 + AlexNet at 227 px, 200 steps, batch "
                  f"{ph['batch']}, on `{r['device']}`: **{ph['items_per_hour']:,.0f}** ({ph['items']} items in "
                  f"{ph['seconds']:.1f} s)."]
    if r["device"] == "cpu":
        lines += ["", "**GPU:** no GPU machine was lent to this task, so the GPU figures (units·seeds per hour "
                  "for DeePSiM-fc6 + AlexNet at 227 px and 200 steps, target ≥ 50,000 per hour on one H100-class "
                  "GPU; ≥ 10x Lucent) are not measured yet. On a GPU machine: "
                  "`make bench ARGS='--device cuda --per-hour 2048'`."]
    for key, section in _SECTIONS:
        if key in r:
            lines += section(r[key])
    if "dgn_fashion" in r:
        from .dgn_quality import table

        lines += ["", "**DGN-AM on Fashion-MNIST** (benchmarks/dgn_quality.py; README 'Learned priors' says what "
                  "each measure is): (a) judge probability over shifts and scalings, (b) realism against real "
                  "photos (real ≈ 1), (c) sharpness and (d) seed diversity relative to real photos, (e) the "
                  "smallest distance to a training photo (images closer than real photos' 5th percentile).", "",
                  table(r["dgn_fashion"])]
    lines += ["", f"Peak resident memory of the benchmark process: {r['peak_rss_mib']:.0f} MiB"
              + (f"; peak GPU memory {r['peak_gpu_mib']:.0f} MiB." if "peak_gpu_mib" in r else "."), ""]
    return "\n".join(lines)
