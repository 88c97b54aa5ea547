"""Train the Fashion-MNIST classifiers (`fashion_cnn`, `fashion_resnet`, `fashion_vit`) and the benchmark's judge.

    python -m pipelines.fashion.train_nets --out models/nets [--nets fashion_cnn,fashion_resnet,fashion_vit,judge]

Reads the 60,000 training photos once (pipelines/idx.py), trains each net (tasks/classifier_train.py), scores
it on the 10,000 test photos, and writes `<out>/<name>.pt` (state dict) and `<out>/fashion.json` (the
command, epochs, seconds and test accuracy of each). A net under its target accuracy is still written, and
the run says so and exits 1.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

import torch

from models.fashion import FASHION, FashionCNN, FashionJudge, FashionResNet
from models.fashion_vit import FashionViT
from tasks.classifier_train import accuracy, train_classifier

from ..idx import idx_split

__all__ = ["NET_RECIPES", "load_split", "train_nets"]

# name -> (builder, epochs, lr, target test accuracy)
NET_RECIPES = {
    "fashion_cnn": (FashionCNN, 12, 3e-3, 0.92),
    "fashion_resnet": (FashionResNet, 10, 3e-3, 0.91),
    "fashion_vit": (FashionViT, 15, 1.5e-3, 0.88),
    "judge": (FashionJudge, 8, 2e-3, 0.0),
}


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [N, 1, 28, 28] and int64 labels [N] of `fashion-mnist:<split>`."""
    images, labels = idx_split(f"fashion-mnist:{split}").arrays()
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.copy())


def train_nets(out: str, names: list[str], seed: int = 0, epochs: int | None = None, limit: int | None = None,
               log=print) -> dict:
    """Train each named net, write its weights and the record under `out`; returns the record."""
    os.makedirs(out, exist_ok=True)
    x, y = load_split("train")
    xt, yt = load_split("test")
    if limit:
        x, y, xt, yt = x[:limit], y[:limit], xt[:limit], yt[:limit]
    record_path = os.path.join(out, "fashion.json")
    record = json.load(open(record_path)) if os.path.exists(record_path) else {}
    normalize = FASHION.module()
    for name in names:
        build, n_epochs, lr, target = NET_RECIPES[name]
        n_epochs = epochs or n_epochs
        torch.manual_seed(seed)
        net = build()
        log(f"training {name} ({sum(p.numel() for p in net.parameters()):,} parameters) for {n_epochs} epochs "
            f"on {len(x):,} images")
        t0 = time.perf_counter()
        history = train_classifier(net, x, y, normalize, epochs=n_epochs, lr=lr, seed=seed, log=log)
        acc = accuracy(net, xt, yt, normalize)
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
        with open(os.path.join(out, f"{name}.pt"), "wb") as f:
            f.write(buf.getvalue())
        record[name] = {"command": f"python -m pipelines.fashion.train_nets --nets {name} --seed {seed}"
                                   + (f" --epochs {epochs}" if epochs else "") + (f" --limit {limit}" if limit else ""),
                        "epochs": n_epochs, "lr": lr, "seed": seed, "train_images": len(x),
                        "test_accuracy": round(acc, 4), "target": target,
                        "seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
                        "history": history}
        log(f"{name}: test accuracy {acc:.4f} (target {target}), {record[name]['seconds']:.0f} s")
        with open(record_path, "w") as f:
            json.dump(record, f, indent=1)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="models/nets")
    ap.add_argument("--nets", default=",".join(NET_RECIPES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (tests)")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each split only (tests)")
    a = ap.parse_args(argv)
    names = [n for n in a.nets.split(",") if n]
    unknown = [n for n in names if n not in NET_RECIPES]
    if unknown:
        print(f"unknown --nets {unknown}; use {', '.join(NET_RECIPES)}", file=sys.stderr)
        return 2
    record = train_nets(a.out, names, a.seed, a.epochs, a.limit)
    short = [n for n in names if record[n]["test_accuracy"] < record[n]["target"]]
    if short:
        print(f"under target accuracy: {', '.join(short)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
