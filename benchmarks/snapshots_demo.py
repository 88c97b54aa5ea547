"""The snapshot demo (`make snapshots-demo`, `python -m benchmarks.snapshots_demo [--out DIR]`), offline.

1. Starts `neuron-atlas snapshots --follow --until-idle` on `<out>/checkpoints`: the 10 logits (`fc2`) of
   benchmarks/digits.DigitsCNN, 2 seeds, the lucid style rendered at 32 px with the standard transforms.
   With `--tensorboard <out>/tensorboard`: each snapshot's images, activations and filmstrip as TensorBoard
   events at its training step, in the run `neuron-atlas` beside the trainer's own.
2. Meanwhile trains the CNN from scratch on scikit-learn's digits (upsampled to 32 px), saving every `--every`
   steps with the package's trainer helper (pipelines/snapshots/trainer.py: metrics sidecar with
   `val_accuracy`, the checkpoint, then its marker) and logging its loss and validation accuracy to
   `<out>/tensorboard` with torch.utils.tensorboard, as a trainer does.
3. Trains an independent copy of the net (another seed, more steps) and waits for the watcher to stop.
4. Scores every snapshot's class images for recognizability: the probability that the copy gives each image
   its intended class (its unit's digit), averaged over the 10 classes and both seeds; also the same over
   8 fixed random crops, blurred (tasks/quality.view_probability, the atlas's readability measure).
5. Reports the Spearman correlation between validation accuracy and recognizability across the snapshots
   (scipy), and draws `<out>/filmstrips.png` (seed 0 of every class at every snapshot) beside the
   watcher's own tracking outputs under `<out>/atlas/tracking/`. Figures go to `<out>/demo.json`.
6. With `--tensorboard-shot PNG`: TensorBoard's images dashboard over `<out>/tensorboard` after an early
   snapshot and at the end, side by side (benchmarks/tensorboard_shot.py; the README's picture).
The paper's claim (DGN-AM supplement): image quality tracks validation accuracy. No threshold is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from pipelines.snapshots.trainer import save_checkpoint

from .digits import MEAN, SIZE, STD, train, recognizability

REPO = Path(__file__).resolve().parents[1]
MODEL = "benchmarks.digits:DigitsCNN"
TAGS = r"fc2/u[0-9]/s0$"  # the screenshot's tag filter: every digit's first seed


def watcher_command(out: Path, idle: float) -> list[str]:
    return [sys.executable, "-m", "pipelines", "snapshots", "--model", MODEL, "--input-size", str(SIZE),
            "--channels", "1", "--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD)),
            "--checkpoints", str(out / "checkpoints"), "--follow", "--interval", "2", "--until-idle", str(idle),
            "--layers", "fc2", "--units", "all", "--seeds", "2", "--style", "lucid", "--fourier-size", str(SIZE),
            "--transforms", "standard", "--steps", "256", "--coarse", "none", "--lr", "0.05", "--lr-end", "0.05",
            "--batch-size", "20",
            "--tensorboard", str(out / "tensorboard"), "--out", str(out / "atlas")]


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def score(table: list[dict], out: Path, copy: torch.nn.Module) -> list[dict]:
    """Per snapshot: step, val_accuracy, recognizability (plain and over blurred views), mean activation."""
    from tasks.quality import fixed_views, view_probability
    from benchmarks.digits import _normalize

    views = fixed_views(8, seed=0)
    per: dict[int, list[dict]] = {}
    for r in table:
        per.setdefault(r["step"], []).append(r)
    rows = []
    for step, rs in sorted(per.items()):
        images = np.stack([np.asarray(Image.open(out / "atlas" / r["image"]).convert("L")) for r in rs])
        classes = [r["unit"] for r in rs]
        plain = recognizability(copy, images, classes)
        robust = [view_probability(lambda x: copy(_normalize(x)), img, c, views, size=SIZE, sigma=0.5)
                  for img, c in zip(images, classes)]
        rows.append({"step": step, "val_accuracy": rs[0]["val_accuracy"], "recognizability": float(plain.mean()),
                     "view_recognizability": float(np.mean(robust)),
                     "activation_final": float(np.mean([r["activation_final"] for r in rs]))})
    return rows


def filmstrips(table: list[dict], out: Path, dest: Path) -> None:
    """Seed 0 of every class (rows) at every snapshot (columns), captioned with step and activation."""
    from pipelines.sheet import contact_sheet

    rows = sorted((r for r in table if r["seed"] == 0), key=lambda r: (r["unit"], r["step"]))
    steps = sorted({r["step"] for r in rows})
    acc = {r["step"]: r["val_accuracy"] for r in rows}
    images = [Image.open(out / "atlas" / r["image"]).convert("RGB") for r in rows]
    labels = [f"{r['step']} a={r['activation_final']:.1f}" for r in rows]
    titles = [(0, "digits CNN fc2, seed 0; columns: steps " + ", ".join(f"{s} ({acc[s]:.0%})" for s in steps))]
    titles += [(u, f"unit {u} (digit {u})") for u in range(1, 10)]
    contact_sheet(images, labels, columns=len(steps), tile=64, rows_titles=titles).save(dest)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="snapshots-demo", help="working folder (checkpoints, atlas, figures)")
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=20, help="checkpoint every N training steps")
    ap.add_argument("--copy-steps", type=int, default=400, help="training steps of the independent copy")
    ap.add_argument("--idle", type=float, default=30.0, help="the watcher's --until-idle")
    ap.add_argument("--tensorboard-shot", metavar="PNG", help="also save TensorBoard's images dashboard after an "
                    "early snapshot and at the end (needs chromium: make browser)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = open(out / "watcher.log", "w")
    watcher = subprocess.Popen(watcher_command(out, args.idle), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    print(f"watcher started (log: {out / 'watcher.log'}); training the digits CNN, a checkpoint every "
          f"{args.every} steps", flush=True)
    torch.set_num_threads(1)  # leave a core to the watcher
    t_train = time.perf_counter()
    board = SummaryWriter(str(out / "tensorboard"))  # the trainer's own log directory

    def on_checkpoint(step: int, net: torch.nn.Module, acc: float) -> None:
        save_checkpoint(net.state_dict(), str(out / "checkpoints"), step, metrics={"val_accuracy": acc})
        board.add_scalar("val/accuracy", acc, step)
        board.flush()
        print(f"  step {step}: val accuracy {acc:.3f}", flush=True)

    train(args.train_steps, seed=0, every=args.every, on_checkpoint=on_checkpoint,
          on_loss=lambda step, loss: board.add_scalar("train/loss", loss, step))
    board.close()
    train_s = time.perf_counter() - t_train
    copy = train(args.copy_steps, seed=1)
    print("independent copy trained; waiting for the watcher (--until-idle)", flush=True)
    rc = watcher.wait()
    log.close()
    if rc != 0:
        print((out / "watcher.log").read_text()[-3000:], file=sys.stderr)
        return rc
    tracking = next((out / "atlas" / "tracking").glob("*/*/steps.parquet"))
    table = pq.read_table(tracking).to_pylist()
    rows = score(table, out, copy)
    filmstrips(table, out, out / "filmstrips.png")
    acc = [r["val_accuracy"] for r in rows]
    result = {"snapshots": rows,
              "spearman_accuracy_recognizability": spearman(acc, [r["recognizability"] for r in rows]),
              "spearman_accuracy_view_recognizability": spearman(acc, [r["view_recognizability"] for r in rows]),
              "spearman_accuracy_activation": spearman(acc, [r["activation_final"] for r in rows]),
              "train_s": train_s, "wall_s": time.perf_counter() - t0,
              "watcher_summary": (out / "watcher.log").read_text().strip().splitlines()[-1]}
    (out / "demo.json").write_text(json.dumps(result, indent=2))
    for r in rows:
        print(f"  step {r['step']:4d}: val accuracy {r['val_accuracy']:.3f}, recognizability {r['recognizability']:.3f}"
              f" (views {r['view_recognizability']:.3f}), mean logit {r['activation_final']:.2f}")
    print(f"Spearman(val accuracy, recognizability) over {len(rows)} snapshots: "
          f"{result['spearman_accuracy_recognizability']:.3f} (over blurred views: "
          f"{result['spearman_accuracy_view_recognizability']:.3f}; with the mean logit: "
          f"{result['spearman_accuracy_activation']:.3f})")
    print(f"demo wall time {result['wall_s']:.0f} s; filmstrips {out / 'filmstrips.png'}, tracking outputs "
          f"{tracking.parent}, figures {out / 'demo.json'}; TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    if args.tensorboard_shot:
        from .tensorboard_shot import two_steps

        print(f"TensorBoard screenshot: {two_steps(out / 'tensorboard', Path(args.tensorboard_shot), 60, TAGS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
