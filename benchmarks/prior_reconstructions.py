"""How faithful is a generator prior? Photos, then G(E(photo)) for each prior given (issue 4).

    python -m benchmarks.prior_reconstructions --out docs/mnv2-pool-reconstructions.png \
        [--weights LABEL=URI ...]     (default: the shipped mnv2-pool weights)

E is the generator entry's encoder layer (MobileNetV2's pooled features for mnv2-pool). A prior that
inverts E reproduces each photo's colours and layout; one that ignores its code draws the same picture
for every photo. Prints each prior's mean squared pixel error against the photos (at the generator's size).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.loading import load_net
from models.registry import resolve_model
from pipelines.photos import offline_photos, to_model_input
from pipelines.sheet import contact_sheet
from tasks.stats import encode

PHOTOS = ("skimage/astronaut.png", "skimage/chelsea.png", "skimage/coffee.png", "skimage/rocket.jpg",
          "skimage/horse.png", "sklearn/china.jpg", "sklearn/flower.jpg", "skimage/lfw_subset/3")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--generator", default="mnv2-pool")
    p.add_argument("--weights", action="append", default=[], metavar="LABEL=URI")
    p.add_argument("--tile", type=int, default=112)
    args = p.parse_args(argv)
    gen = resolve_model(args.generator)
    model, layer = gen.encoder
    net = load_net(resolve_model(model))
    photos = dict(offline_photos())
    x = torch.tensor(np.stack([to_model_input(photos[n], net.entry.preprocessing.size) for n in PHOTOS]))
    with torch.no_grad():
        code = torch.from_numpy(encode(net.net, net.to_input, x, layer)).reshape(-1, *gen.code_shape)
    priors = [w.split("=", 1) for w in args.weights] or [("shipped", gen.default_weights())]
    rows = [("photos", x)]
    small = F.interpolate(x, size=(gen.out_size, gen.out_size), mode="bilinear", antialias=True)
    for label, uri in priors:
        g = load_net(gen, uri)
        with torch.no_grad():
            rec = gen.to_image01(g.net(code)).clamp(0, 1)
        print(f"{label}: mean squared pixel error {float(((rec - small) ** 2).mean()):.4f} ({uri})")
        rows.append((label, rec))
    tiles = [Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
             for _, imgs in rows for img in imgs]
    sheet = contact_sheet(tiles, [""] * len(tiles), columns=len(PHOTOS), tile=args.tile,
                          rows_titles=[(r, label) for r, (label, _) in enumerate(rows)])
    sheet.save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
