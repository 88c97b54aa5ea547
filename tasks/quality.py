"""Numbers for how readable a synthesized picture is, beside how high it drives its unit.

- `rms_contrast`: standard deviation of the grey image in [0, 1] (Rec. 601 luma). Flat grey fields score ~0;
  natural photos ~0.2-0.25.
- `colourfulness`: Hasler & Suesstrunk (2003), on 0-255 RGB: sigma_rgyb + 0.3 * mu_rgyb with rg = R - G and
  yb = (R + G) / 2 - B. Greyscale scores 0; natural photos ~30-60.
- `view_probability`: the mean softmax probability of a class over fixed random views (random resized crop,
  then Gaussian blur): a logit reached through fragile high-frequency patterns does not survive them, an
  image of the object does.

All take uint8 RGB arrays [H, W, 3] (as saved) or batches of them; nothing here reads files.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["rms_contrast", "colourfulness", "fixed_views", "view_probability"]


def rms_contrast(image: np.ndarray) -> float:
    """Std of the Rec. 601 luma of a uint8 RGB image, on a [0, 1] scale."""
    x = np.asarray(image, dtype=np.float64) / 255.0
    grey = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    return float(grey.std())


def colourfulness(image: np.ndarray) -> float:
    """Hasler & Suesstrunk's colourfulness M of a uint8 RGB image (0 for greyscale)."""
    x = np.asarray(image, dtype=np.float64)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


def fixed_views(n: int, seed: int = 0, scale: tuple[float, float] = (0.35, 1.0),
                ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> list[tuple[float, float, float, float]]:
    """`n` random-resized-crop boxes (top, left, height, width) as fractions of the image, drawn once from
    `seed` so that every image is scored on the same views (torchvision's RandomResizedCrop sampling)."""
    g = torch.Generator().manual_seed(seed)
    boxes = []
    while len(boxes) < n:
        area = float(torch.empty(1).uniform_(*scale, generator=g))
        log_r = torch.empty(1).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=g)
        r = math.exp(float(log_r))
        w, h = math.sqrt(area * r), math.sqrt(area / r)
        if w <= 1 and h <= 1:
            top = float(torch.rand(1, generator=g)) * (1 - h)
            left = float(torch.rand(1, generator=g)) * (1 - w)
            boxes.append((top, left, h, w))
    return boxes


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.device)
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@torch.no_grad()
def view_probability(logits_of: Callable[[torch.Tensor], torch.Tensor], image: np.ndarray, klass: int,
                     views: Sequence[tuple[float, float, float, float]], size: int = 224,
                     sigma: float = 2.0) -> float:
    """Mean softmax probability of `klass` over `views` of `image` (each cropped, resized to `size` and
    blurred with `sigma`); `logits_of` maps [N, C, size, size] images in [0, 1] to logits [N, classes]. A
    greyscale `image` [H, W] becomes one channel."""
    a = np.array(image, dtype=np.float32)
    x = torch.from_numpy(a[..., None] if a.ndim == 2 else a).permute(2, 0, 1).div(255).unsqueeze(0)
    h, w = x.shape[-2:]
    crops = []
    for top, left, bh, bw in views:
        t, l_ = int(round(top * h)), int(round(left * w))
        ch, cw = max(1, int(round(bh * h))), max(1, int(round(bw * w)))
        crop = x[..., t:t + ch, l_:l_ + cw]
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
    batch = _blur(torch.cat(crops), sigma)
    return float(torch.softmax(logits_of(batch).float(), 1)[:, klass].mean())
