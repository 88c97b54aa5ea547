"""Inverse-set samples vs DGN-AM images of the same unit, measured in the same encoder space (issue 5).

    python -m benchmarks.inverse_vs_dgn --out /tmp/ivd [--unit 980 --z1 10 --z2 14 --n 100 --k 10] [inverse flags]

1. `neuron-atlas inverse --constraint classifier.1:UNIT:Z1:Z2 --n N --k K` with the default (shipped) prior;
2. every saved PNG is measured again with a fresh forward pass of MobileNetV2: its logit must lie in [Z1, Z2];
3. `neuron-atlas atlas --method dgn --seeds N` for the same unit (one image per seed, the same prior);
4. both image sets go through the same encoder E (the run row's encoder layer, flattened), and the mean
   pairwise Euclidean distance of each set is compared.
Prints a table and writes <out>/inverse_vs_dgn.json and <out>/inverse_vs_dgn.png (DGN-AM row on top,
inverse-set samples sorted by activation below).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import torch
from PIL import Image

from models.capture import Capture
from models.loading import load_net
from models.registry import resolve_model
from pipelines.inverse import read_inverse
from pipelines.sheet import contact_sheet
from pipelines.sink import PARTITIONING
from pipelines.storage import Store
from tasks.inverse import mean_pairwise_distance

LOGITS = "classifier.1"


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pipelines", *args], check=True)


def measure(net, pngs: list[Path], unit: int, encoder_layer: str) -> tuple[np.ndarray, torch.Tensor]:
    """Logit of `unit` and flattened encoder features of each PNG, from a fresh forward pass."""
    logits, feats = [], []
    with Capture(net.net, [LOGITS, encoder_layer], truncate=False) as capture, torch.no_grad():
        for i in range(0, len(pngs), 25):
            x = torch.tensor(np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255
                                       for p in pngs[i:i + 25]]).transpose(0, 3, 1, 2))
            acts = capture(net.to_input(x))
            logits.append(acts[LOGITS][:, unit].numpy())
            feats.append(acts[encoder_layer].flatten(1))
    return np.concatenate(logits), torch.cat(feats)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--unit", type=int, default=980)
    p.add_argument("--z1", type=float, default=10.0)
    p.add_argument("--z2", type=float, default=14.0)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--dgn-steps", type=int, default=200)
    args, extra = p.parse_known_args(argv)
    inv_out, dgn_out = args.out / "inverse-run", args.out / "dgn"
    cli("inverse", "--constraint", f"{LOGITS}:{args.unit}:{args.z1:g}:{args.z2:g}", "--n", str(args.n),
        "--k", str(args.k), "--out", str(inv_out), *extra)
    store = Store(str(inv_out))
    (run,) = read_inverse(store, "runs").to_pylist()
    samples = sorted(read_inverse(store, "samples").to_pylist(), key=lambda r: r["sample"])
    cli("atlas", "--method", "dgn", "--layers", LOGITS, "--units", str(args.unit), "--seeds", str(args.n),
        "--steps", str(args.dgn_steps), "--out", str(dgn_out))
    dgn_rows = ds.dataset(dgn_out / "units", format="parquet", partitioning=PARTITIONING).to_table().to_pylist()

    net = load_net(resolve_model("mobilenet_v2"))
    layer = run["encoder_layer"]
    inv_pngs = [inv_out / r["image"] for r in samples]
    dgn_pngs = [dgn_out / r["image"] for r in sorted(dgn_rows, key=lambda r: r["seed"])]
    inv_logit, inv_feat = measure(net, inv_pngs, args.unit, layer)
    dgn_logit, dgn_feat = measure(net, dgn_pngs, args.unit, layer)
    in_range = int(((inv_logit >= args.z1) & (inv_logit <= args.z2)).sum())
    report = {
        "constraint": f"{LOGITS}:{args.unit}:[{args.z1:g}, {args.z2:g}]", "encoder_layer": layer,
        "samples": len(inv_pngs), "in_range_remeasured": in_range, "status": run["status"],
        "seed_iterations": run["seed_iterations"], "seed_steps": run["seed_steps"],
        "sampling_steps": run["sampling_steps"], "run_row_diversity": run["diversity"],
        "inverse_diversity": mean_pairwise_distance(inv_feat), "dgn_images": len(dgn_pngs),
        "dgn_diversity": mean_pairwise_distance(dgn_feat),
        "inverse_logit": [float(inv_logit.min()), float(inv_logit.max())],
        "dgn_logit": [float(dgn_logit.min()), float(np.median(dgn_logit)), float(dgn_logit.max())],
    }
    for k, v in report.items():
        print(f"{k:>22}: {v}")
    verdict = "beats" if report["inverse_diversity"] > report["dgn_diversity"] else "LOSES TO"
    print(f"inverse-set diversity {report['inverse_diversity']:.1f} {verdict} DGN-AM's {report['dgn_diversity']:.1f} "
          f"in {layer}; {in_range}/{len(inv_pngs)} samples in range when re-measured")
    (args.out / "inverse_vs_dgn.json").write_text(json.dumps(report, indent=2))
    order = np.argsort(inv_logit)
    shown = [(p, v) for p, v in zip(dgn_pngs[:20], dgn_logit[:20])] + [(inv_pngs[i], inv_logit[i]) for i in order]
    titles = [(0, f"DGN-AM, {min(20, len(dgn_pngs))} of {len(dgn_pngs)} seeds (logit)"),
              (1, f"inverse set {args.z1:g} <= logit <= {args.z2:g}: {len(inv_pngs)} samples by logit")]
    contact_sheet([Image.open(p) for p, _ in shown], [f"{v:.1f}" for _, v in shown], columns=20, tile=64,
                  rows_titles=titles).save(args.out / "inverse_vs_dgn.png")
    return 0 if in_range == len(inv_pngs) else 1


if __name__ == "__main__":
    sys.exit(main())
