"""Estimate the natural-image magnitude spectra that MACO keeps fixed (tasks/maco.py), from the offline photos.

    python -m pipelines.spectra [--out models/spectra] [--size 224]

Every bundled photo (skimage's ~20 photos and scikit-learn's two, pipelines/photos.py; not the 25 px faces, whose
upsampling would hold no high frequencies) is centre-cropped to a square and resized to `--size` pixels;
`natural-rgb.npy` is their mean magnitude spectrum [3, S, S//2+1] in the decorrelated colour space,
`natural-grey.npy` that of their Rec. 601 luma [1, S, S//2+1]. Writes a JSON record of the command and the photos
used beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

from tasks.maco import natural_magnitude

from .photos import offline_photos

__all__ = ["estimate", "main"]


def _square(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return np.asarray(Image.fromarray(img[top:top + s, left:left + s]).resize((size, size), Image.BICUBIC))


def estimate(size: int = 224) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(RGB magnitude [3, S, S//2+1], grey magnitude [1, S, S//2+1], the photos' names)."""
    photos = offline_photos(faces=False)
    x = torch.from_numpy(np.stack([_square(img, size) for _, img in photos])).permute(0, 3, 1, 2).float() / 255.0
    luma = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (natural_magnitude(x).numpy().astype(np.float32), natural_magnitude(luma).numpy().astype(np.float32),
            [name for name, _ in photos])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="models/spectra")
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args(argv)
    rgb, grey, names = estimate(a.size)
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, "natural-rgb.npy"), rgb)
    np.save(os.path.join(a.out, "natural-grey.npy"), grey)
    with open(os.path.join(a.out, "spectra.json"), "w") as f:
        json.dump({"command": f"python -m pipelines.spectra --size {a.size}", "size": a.size, "photos": len(names),
                   "sources": sorted({n.split("/")[0] + "/" + n.split("/")[1] for n in names})}, f, indent=1)
    print(f"{len(names)} photos -> {a.out}/natural-rgb.npy {rgb.shape}, natural-grey.npy {grey.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
