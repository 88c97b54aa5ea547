"""DGN-AM with a generator prior vs the best offline photo, per ImageNet class of MobileNetV2 (issue 4).

    python -m benchmarks.prior_vs_photos --out /tmp/pvp [--generator-weights URI --bounds URI] [--image]

Runs `neuron-atlas atlas --method dgn` (and with --image also `--method image`) for the classes below,
1 seed, 200 steps, then measures every saved PNG again with a fresh forward pass and compares its logit
with the highest logit any offline photo reaches for that class. Writes a table (stdout and
<out>/prior_vs_photos.json) and, with --image, the side-by-side picture <out>/dgn_vs_image.png.
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
from PIL import Image, ImageDraw

from models.loading import load_net
from models.registry import resolve_model
from pipelines.photos import offline_photos, to_model_input
from pipelines.sink import PARTITIONING

CLASSES = (285, 504, 948, 967, 980, 947, 999, 812, 417, 530)
NAMES = {285: "Egyptian cat", 504: "coffee mug", 948: "Granny Smith", 967: "espresso", 980: "volcano",
         947: "mushroom", 999: "toilet tissue", 812: "space shuttle", 417: "balloon", 530: "digital clock"}


def best_photo_logits(net, classes) -> dict[int, tuple[float, str]]:
    photos = offline_photos()
    x = torch.tensor(np.stack([to_model_input(p, net.entry.preprocessing.size) for _, p in photos]))
    with torch.no_grad():
        logits = torch.cat([net.net(net.to_input(x[i:i + 32])) for i in range(0, len(x), 32)])
    return {c: (float(logits[:, c].max()), photos[int(logits[:, c].argmax())][0]) for c in classes}


def atlas(out: Path, method: str, extra: list[str], steps: int) -> dict[int, Path]:
    cmd = [sys.executable, "-m", "pipelines", "atlas", "--layers", "classifier.1",
           "--units", ",".join(map(str, CLASSES)), "--seeds", "1", "--steps", str(steps), "--method", method,
           "--out", str(out), *extra]
    subprocess.run(cmd, check=True)
    rows = ds.dataset(out / "units", format="parquet", partitioning=PARTITIONING).to_table().to_pylist()
    return {r["unit"]: out / r["image"] for r in rows if r["method"] == method}


def logit_of(net, png: Path, c: int) -> float:
    img = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32) / 255
    with torch.no_grad():
        return float(net.net(net.to_input(torch.tensor(img.transpose(2, 0, 1))[None]))[0, c])


def side_by_side(rows: list[dict], dest: Path, tile: int = 112) -> None:
    sheet = Image.new("RGB", (len(rows) * tile, 2 * tile + 58), "white")
    draw = ImageDraw.Draw(sheet)
    for i, r in enumerate(rows):
        for j, key in enumerate(("dgn", "image")):
            sheet.paste(Image.open(r[f"{key}_png"]).convert("RGB").resize((tile, tile)), (i * tile, 14 + j * (tile + 14)))
            draw.text((i * tile + 2, 14 + j * (tile + 14) + tile), f"{r[key]:.1f}", fill="black")
        draw.text((i * tile + 2, 1), NAMES[r["class"]][:18], fill="black")
        draw.text((i * tile + 40, 2 * tile + 44), f"photo {r['photo']:.1f}", fill="gray")
    sheet.save(dest)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--image", action="store_true", help="also run image-space AM and draw the side-by-side")
    args, extra = p.parse_known_args(argv)
    net = load_net(resolve_model("mobilenet_v2"))
    photo = best_photo_logits(net, CLASSES)
    dgn = atlas(args.out, "dgn", extra, args.steps)
    image = atlas(args.out, "image", [], args.steps) if args.image else {}
    rows = []
    for c in CLASSES:
        row = {"class": c, "name": NAMES[c], "photo": photo[c][0], "photo_name": photo[c][1],
               "dgn": logit_of(net, dgn[c], c), "dgn_png": str(dgn[c])}
        if c in image:
            row.update(image=logit_of(net, image[c], c), image_png=str(image[c]))
        rows.append(row)
    wins = sum(r["dgn"] > r["photo"] for r in rows)
    print(f"{'class':>6} {'name':<14} {'best photo':>18} {'DGN-AM':>7} {'image AM':>9}")
    for r in rows:
        print(f"{r['class']:>6} {r['name']:<14} {r['photo']:>7.2f} ({r['photo_name'][:9]:>9}) {r['dgn']:>7.2f} "
              f"{r.get('image', float('nan')):>9.2f} {'beats' if r['dgn'] > r['photo'] else 'LOSES'}")
    print(f"DGN-AM beats the best offline photo for {wins} of {len(rows)} classes")
    (args.out / "prior_vs_photos.json").write_text(json.dumps({"wins": wins, "rows": rows}, indent=2))
    if image:
        side_by_side(rows, args.out / "dgn_vs_image.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
