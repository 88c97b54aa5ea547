"""`make dgn-demo`: DGN-AM as the paper does it, end to end on Fashion-MNIST, with the commands a user would
run on ImageNet with a GPU.

`python -m pipelines.fashion.demo [--out dgn-demo-out] [--retrain] [--docs docs]` runs, in one process (one
Ray start), through the real CLI:
1. with `--retrain` only: trains `fashion_cnn`, `fashion_resnet` and the judge from scratch
   (pipelines/fashion/train_nets.py), measures the fc6 code bounds (`neuron-atlas stats`) and trains the
   `fashion-fc` prior (`neuron-atlas train-generator`) into OUT/retrained/, and uses those from then on;
   otherwise the shipped weights (models/nets/, models/priors/);
2. `atlas --method dgn` for every logit of both nets (4 seeds each), 8 units of the fc7-like layer and 8
   channels of the last conv layer of `fashion_cnn`; the same logits by `--style lucid` and `--style yosinski`;
3. `nearest` of every synthesized image among the 60,000 training photos, in pixels and in each net's code
   (fc6; the resnet's pooled features): the paper's memorization check; and the site (`report`);
4. the measurement harness (benchmarks/dgn_quality.py): the table (OUT/quality.md, OUT/quality.json) and the
   contact sheet (OUT/quality-sheet.png, also DOCS/dgn-fashion-sheet.png with --docs).
Every step skips what an earlier run already finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from models.fashion import NETS
from models.generators import PRIORS

from ..cli import main as cli

__all__ = ["main", "atlas_runs"]

SEEDS = "4"


def atlas_runs(weights: dict[str, list[str]], gen: list[str]) -> list[list[str]]:
    """The `atlas` invocations of step 2 (flags after `atlas`), given each net's and the prior's weight flags."""
    cnn, resnet = weights["fashion_cnn"], weights["fashion_resnet"]
    return [
        ["--model", "fashion_cnn", *cnn, "--method", "dgn", *gen, "--layers", "classifier.6", "--units", "all",
         "--seeds", SEEDS],
        ["--model", "fashion_resnet", *resnet, "--method", "dgn", *gen, "--layers", "fc", "--units", "all",
         "--seeds", SEEDS],
        ["--model", "fashion_cnn", *cnn, "--method", "dgn", *gen, "--layers", "classifier.5", "--units", "0:8",
         "--seeds", "2"],
        ["--model", "fashion_cnn", *cnn, "--method", "dgn", *gen, "--layers", "features.10", "--units", "0:8",
         "--seeds", "2"],
        ["--model", "fashion_cnn", *cnn, "--style", "lucid", "--layers", "classifier.6", "--units", "all",
         "--seeds", "2"],
        ["--model", "fashion_cnn", *cnn, "--style", "yosinski", "--layers", "classifier.6", "--units", "all",
         "--seeds", "2"],
    ]


def _run(argv: list[str], log) -> None:
    log("$ neuron-atlas " + " ".join(argv))
    code = cli(argv)
    if code:
        raise SystemExit(f"'neuron-atlas {argv[0]}' failed with exit status {code}")


def retrain(out: str, log, steps: int = 4000, limit: int | None = None) -> tuple[str, str]:
    """Step 1 (module docstring); returns (nets folder, prior folder)."""
    from .train_nets import NET_RECIPES, train_nets

    nets, prior = os.path.join(out, "retrained", "nets"), os.path.join(out, "retrained", "prior")
    # the nets this demo uses (fashion_vit, trained apart, takes an hour on 2 cores)
    todo = [n for n in NET_RECIPES if n != "fashion_vit" and not os.path.exists(os.path.join(nets, f"{n}.pt"))]
    if todo:
        train_nets(nets, todo, epochs=1 if limit else None, limit=limit, log=log)
    images = "fashion-mnist:train"
    if not os.path.exists(os.path.join(prior, "bounds.npy")):
        _run(["stats", "--generator", "fashion-fc", "--weights", os.path.join(nets, "fashion_cnn.pt"),
              "--images", images, "--out", prior, "--shard-size", "10000"], log)
    if not os.path.exists(os.path.join(prior, "generator.pt")):
        _run(["train-generator", "--generator", "fashion-fc", "--encoder-weights",
              os.path.join(nets, "fashion_cnn.pt"), "--comparator-layer", "features.10", "--images", images,
              "--augment", "flip", "--out", prior, "--steps", str(steps), "--batch-size", "64",
              "--checkpoint-every", "250"], log)
    return nets, prior


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="./dgn-demo-out")
    ap.add_argument("--retrain", action="store_true", help="train the nets, the judge and the prior from scratch")
    ap.add_argument("--docs", help="also write the contact sheet as DOCS/dgn-fashion-sheet.png")
    ap.add_argument("--seeds", type=int, default=8, help="seeds per class in the measurement harness")
    ap.add_argument("--generator-steps", type=int, default=4000, help="with --retrain: train-generator --steps")
    ap.add_argument("--limit", type=int, help="with --retrain: train the nets one epoch on the first N photos (tests)")
    ap.add_argument("--steps", type=int, help="override every synthesis's step count (tests)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    nets, prior = retrain(a.out, log, a.generator_steps, a.limit) if a.retrain else (str(NETS), str(PRIORS))
    weights = {n: ["--weights", os.path.join(nets, f"{n}.pt")] for n in ("fashion_cnn", "fashion_resnet")}
    prior_files = (os.path.join(prior, "generator.pt"), os.path.join(prior, "bounds.npy")) if a.retrain else \
        (os.path.join(prior, "fashion-fc.pt"), os.path.join(prior, "fashion-fc-bounds.npy"))
    gen = ["--generator", "fashion-fc", "--generator-weights", prior_files[0], "--bounds", prior_files[1]]
    atlas = os.path.join(a.out, "atlas")
    steps = ["--steps", str(a.steps)] if a.steps else []
    for run in atlas_runs(weights, gen):
        _run(["atlas", *run, *steps, "--out", atlas], log)
    for model, code in (("fashion_cnn", "classifier.2"), ("fashion_resnet", "avgpool")):
        _run(["nearest", "--atlas", atlas, "--images", "fashion-mnist:train", "--model", model, *weights[model],
              "--spaces", f"pixel,{code}", "--k", "3", "--shard-size", "5000"], log)
    _run(["report", atlas], log)

    from benchmarks.dgn_quality import measure, sheet, table

    scores, images = measure(a.seeds, log=log, nets_dir=nets, prior_files=prior_files, steps=a.steps)
    text = table(scores)
    with open(os.path.join(a.out, "quality.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(a.out, "quality.json"), "w") as f:
        json.dump(scores, f, indent=1)
    picture = sheet(images, a.seeds)
    picture.save(os.path.join(a.out, "quality-sheet.png"))
    if a.docs:
        picture.save(os.path.join(a.docs, "dgn-fashion-sheet.png"))
    print(text)
    print(f"dgn-demo: {time.perf_counter() - t0:.0f} s; atlas and site in {atlas} (site/index.html), table in "
          f"{a.out}/quality.md, sheet in {a.out}/quality-sheet.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
