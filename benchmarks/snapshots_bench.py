"""Snapshot-sweep overhead: `python -m benchmarks.snapshots_bench [--quick]` (also part of `make bench`).

Runs `snapshots` sweeps in process (pipelines/snapshots/sweep.Sweep on a local Ray cluster, one actor) over
checkpoints written here, and splits the time: synthesis (what the actors spent optimizing) against the
per-snapshot overhead: listing the prefix and reading sidecars, reading each checkpoint on the driver and
fitting it to the architecture, the actor loading the snapshot's weights (the "actor switch": build, load,
freeze, trace) and refreshing the tracking table, filmstrips and plots. Target: overhead <= 10 % of
synthesis. Two workloads:
  - digits: the demo's CNN (benchmarks/digits.py, 0.2 MB checkpoints), 16 snapshots, its 10 logits x 2 seeds,
    lucid style at 32 px, 256 steps: the demo's settings, where synthesis per snapshot is shortest;
  - mobilenet_v2: 12 snapshots (the embedded ImageNet weights plus seeded noise, 14 MB each), 5 logits
    x 1 seed, yosinski style, 16 steps (a short run, to keep `make bench` short: real sweeps use 200-512
    steps, and the overhead share falls in proportion).
Ray start-up and actor start happen once per sweep, not per snapshot; they are reported apart.
`measure_snapshots` returns the figures, `snapshots_report` the Markdown lines.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

__all__ = ["measure_snapshots", "snapshots_report"]


def _write(folder: Path, steps: list[int], state_of) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for step in steps:
        path = folder / f"ckpt_{step:06d}.pt"
        torch.save(state_of(step), path)
        path.with_name(path.name + ".json").write_text(json.dumps({"val_accuracy": step / max(steps)}))
        path.with_name(path.name + ".done").touch()


def _noisy(state: dict, step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    return {k: v + 0.01 * v.float().std().nan_to_num() * torch.randn(v.shape, generator=g) if v.is_floating_point()
            else v for k, v in state.items()}


def _sweep(name: str, atlas, folder: Path, log) -> dict:
    from pipelines.snapshots.follow import watch
    from pipelines.snapshots.sweep import SnapshotSpec, Sweep

    t0 = time.perf_counter()
    sweep = Sweep(SnapshotSpec(atlas=atlas, checkpoints=str(folder), interval=1.0), log=lambda m: None)
    watch(sweep.round, follow=False, interval=1.0, log=lambda m: None)
    wall = time.perf_counter() - t0
    if sweep.pool:
        sweep.pool.pool.stop()  # free the CPUs for the next workload's actor
    t, n = sweep.totals.timings, sweep.totals.snapshots
    row = {"name": name, "snapshots": n, "items": sweep.totals.items, "steps": atlas.steps, "wall_s": wall,
           "synthesis_s": t.synthesis, "listing_s": t.listing, "checkpoint_reads_s": t.validate,
           "weight_loads_s": t.load, "tracking_s": t.tracking, "overhead_s": t.overhead,
           "overhead_share": t.overhead / t.synthesis, "per_snapshot_overhead_s": t.overhead / n,
           "per_snapshot_synthesis_s": t.synthesis / n,
           "startup_s": wall - t.synthesis - t.overhead}  # Ray, actor start, planning, writes not overlapped
    log(f"snapshots {name}: {n} snapshots, {row['items']} items; per snapshot {row['per_snapshot_synthesis_s']:.2f} s "
        f"synthesis, {row['per_snapshot_overhead_s']:.3f} s overhead = {row['overhead_share']:.1%} (listing "
        f"{t.listing:.2f} s, checkpoint reads {t.validate:.2f} s, actor weight loads {t.load:.2f} s, tracking "
        f"{t.tracking:.2f} s); wall {wall:.1f} s")
    return row


def measure_snapshots(quick: bool, log=print) -> dict:
    """Both workloads of the module docstring (`quick`: fewer snapshots and steps); returns their figures."""
    from models.registry import resolve_model
    from models.weights import read_weights
    from pipelines.spec import AtlasSpec
    from tasks.actor import NetSpec
    from tasks.image_am import ImageAMConfig

    from .digits import MEAN, SIZE, STD, train

    out: dict = {"quick": quick, "workloads": []}
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        n_digits = 10 if quick else 16
        nets: dict[int, dict] = {}
        train(20 * (n_digits - 1), every=20, on_checkpoint=lambda s, net, _: nets.__setitem__(
            s, {k: v.clone() for k, v in net.state_dict().items()}))
        _write(root / "digits", sorted(nets), nets.__getitem__)
        digits = AtlasSpec(net=NetSpec("benchmarks.digits:DigitsCNN", input_size=SIZE, mean=MEAN, std=STD),
                           config=ImageAMConfig.build("lucid", fourier_size=SIZE, transforms="standard"),
                           layers=("fc2",), units="all", seeds=2, steps=128 if quick else 256, batch_size=20,
                           out=str(root / "out-digits"))
        out["workloads"].append(_sweep("digits CNN", digits, root / "digits", log))

        n_mnv2 = 10 if quick else 12
        base = read_weights(resolve_model("mobilenet_v2").default_weights()).state_dict
        _write(root / "mnv2", [1000 * i for i in range(n_mnv2)], lambda s: _noisy(base, s))
        mnv2 = AtlasSpec(net=NetSpec("mobilenet_v2"), config=ImageAMConfig.build("yosinski"),
                         layers=("classifier.1",), units="285,504" if quick else "285,504,948,967,980", seeds=1,
                         steps=8 if quick else 16,
                         out=str(root / "out-mnv2"))
        out["workloads"].append(_sweep("MobileNetV2", mnv2, root / "mnv2", log))
    return out


def snapshots_report(r: dict) -> list[str]:
    lines = ["", "## Snapshot sweeps", "",
             f"`python -m benchmarks.snapshots_bench{' --quick' if r['quick'] else ''}`: one `snapshots` sweep per "
             "workload, in process with one actor (since this run, in the driver's own process: no Ray for one local actor). Overhead per snapshot = listing the prefix "
             "and reading sidecars + reading the checkpoint on the driver and fitting it to the architecture + the "
             "actor loading its weights (build, load, freeze, trace: the actor switch) + refreshing the tracking "
             "table, filmstrips and plots. Target: at most 10 % of synthesis time.", "",
             "| workload | snapshots | items | steps | synthesis s / snapshot | overhead s / snapshot | overhead share "
             "| listing s | checkpoint reads s | weight loads s | tracking s | once per sweep (Ray, actor start) s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in r["workloads"]:
        lines.append(f"| {w['name']} | {w['snapshots']} | {w['items']} | {w['steps']} | "
                     f"{w['per_snapshot_synthesis_s']:.2f} | {w['per_snapshot_overhead_s']:.3f} | "
                     f"**{w['overhead_share']:.1%}** | {w['listing_s']:.2f} | {w['checkpoint_reads_s']:.2f} | "
                     f"{w['weight_loads_s']:.2f} | {w['tracking_s']:.2f} | {w['startup_s']:.1f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    r = measure_snapshots(args.quick, log=lambda m: print(m, flush=True))
    print("\n".join(snapshots_report(r)))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
