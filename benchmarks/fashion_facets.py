"""The facet and caricature sheets on Fashion-MNIST (`python -m benchmarks.fashion_facets [DEST_DIR]`): DGN-AM
with the shipped `fashion-fc` prior on `fashion_cnn`'s ten logits, 4 seeds, independent against `--diversity 1`,
and DGN-AM started from real test photos' codes (`--init`): a photo of each class driven to its own logit and
to the next class's. Needs Debian's dataset-fashion-mnist (`make fashion-data`). Prints the figures it draws.
"""

from __future__ import annotations

import itertools
import os
import sys

import numpy as np
import torch
from PIL import Image

from models.units import Unit
from pipelines.fashion.train_nets import load_split
from pipelines.spec import read_bounds
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.dgn import DGNConfig

CLASSES = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
LOGITS = "classifier.6"
SEEDS = 4


def _actor() -> tuple[SynthesisActor, DGNConfig, int]:
    actor = SynthesisActor(NetSpec("fashion_cnn", generator="fashion-fc"))
    actor.code_upper, _ = read_bounds(actor.generator.entry.default_bounds(), {})
    settings = dict(actor.generator.entry.dgn_defaults)
    steps = int(settings.pop("steps", 200))
    return actor, DGNConfig(**settings), steps


def _tile(img: np.ndarray, size: int = 56) -> Image.Image:
    return Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).convert("L").resize((size, size))


def main(dest: str = "docs") -> None:
    actor, cfg, steps = _actor()
    rows = {}
    for name, div in (("independent", None), ("diversity", (1.0, None))):
        spread, acts = [], []
        for c in range(10):
            results = actor.run(Batch(tuple(WorkItem(Unit(LOGITS, c), s) for s in range(SEEDS)), cfg, steps,
                                      diversity=div)).results
            images = np.stack([r.image for r in results]).astype(np.float32) / 255
            spread.append(np.mean([np.sqrt(((images[i] - images[j]) ** 2).mean())
                                   for i, j in itertools.combinations(range(SEEDS), 2)]))
            acts.append(np.mean([r.act_final for r in results]))
            rows[name, c] = [r.image for r in results]
        print(f"fashion DGN-AM, {name}: pixel distance between seeds {np.mean(spread):.3f}, "
              f"mean logit {np.mean(acts):.1f}")
    sheet = Image.new("L", (56 * (2 * SEEDS + 1), 56 * 10), 255)
    for c in range(10):
        for s, img in enumerate(rows["independent", c]):
            sheet.paste(_tile(img), (56 * s, 56 * c))
        for s, img in enumerate(rows["diversity", c]):
            sheet.paste(_tile(img), (56 * (SEEDS + 1 + s), 56 * c))
    sheet.save(os.path.join(dest, "fashion-diversity-sheet.png"))
    x, y = load_split("test")
    pick = [int(torch.nonzero(y == c)[0]) for c in range(10)]
    photos = (x[pick].float() / 255).numpy()
    items = tuple(WorkItem(Unit(LOGITS, c), 0) for c in range(10)) + \
        tuple(WorkItem(Unit(LOGITS, (c + 1) % 10), 0) for c in range(10))
    results = actor.run(Batch(items, cfg, steps, init=tuple(photos) * 2)).results
    start = actor.parameterization(cfg, [0] * 10, torch.from_numpy(photos))
    with torch.no_grad():
        rendered = start.render(start.params).clamp(0, 1).numpy()
    rms = np.sqrt(((rendered - photos) ** 2).reshape(10, -1).mean(1))
    print(f"fashion DGN-AM from a photo's code: the start picture is {rms.mean():.3f} RMS from the photo")
    car = Image.new("L", (56 * 4, 56 * 10), 255)
    for c in range(10):
        for col, img in enumerate(((photos[c].transpose(1, 2, 0) * 255).astype(np.uint8),
                                   (rendered[c].transpose(1, 2, 0) * 255).round().astype(np.uint8),
                                   results[c].image, results[10 + c].image)):
            car.paste(_tile(img), (56 * col, 56 * c))
        print(f"  {CLASSES[c]}: own logit {results[c].act_start:.1f} -> {results[c].act_final:.1f}; "
              f"{CLASSES[(c + 1) % 10]} {results[10 + c].act_start:.1f} -> {results[10 + c].act_final:.1f}")
    car.save(os.path.join(dest, "fashion-caricature-sheet.png"))


if __name__ == "__main__":
    main(*sys.argv[1:])
