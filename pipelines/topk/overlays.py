"""The pictures that say where a unit fires in one of its top-k images: a heat map over the image.

`overlay` draws a map (the unit's stored activation map, or an attribution map) over the net's input view of
the image: the map is resized to the view (bilinear), coloured black -> red -> yellow -> white, blended over
the dimmed image in proportion to its value, and the unit's maximum is marked with a ring at that position
(the centre of its map cell, scaled to the view, as the heat map is). Pictures are at most `OVERLAY_SIZE`
pixels a side (site tiles are smaller), PNG-encoded quickly (compression level 1). Pure array code; the
workers call it, the driver writes.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["overlay", "Backdrop", "heat_colours", "OVERLAY_SIZE"]

OVERLAY_SIZE = 160


def heat_colours(m: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> uint8 [H, W, 3]: black -> red -> yellow -> white."""
    m = np.clip(m, 0, 1)[..., None]
    r = np.clip(3 * m, 0, 1)
    g = np.clip(3 * m - 1, 0, 1)
    b = np.clip(3 * m - 2, 0, 1)
    return (np.concatenate([r, g, b], -1) * 255).round().astype(np.uint8)


def _scaled(m: np.ndarray) -> np.ndarray:
    """A map scaled to [0, 1] over its own range (a map that is flat, or all NaN, becomes zeros)."""
    m = np.nan_to_num(np.asarray(m, np.float32), nan=0.0)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


class Backdrop:
    """The dimmed view that every overlay of one image is drawn on (resized once per image)."""

    def __init__(self, view: np.ndarray):
        h, w = view.shape[:2]
        self.scale = min(1.0, OVERLAY_SIZE / max(h, w))
        self.size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
        self.pixels = np.asarray(Image.fromarray(view).resize(self.size, Image.BILINEAR), np.float32) * 0.6


def overlay(view: np.ndarray | Backdrop, heat: np.ndarray, mark: tuple[float, float] | None) -> bytes:
    """PNG bytes: `heat` [h, w] (any range; scaled to its own min..max) over `view` uint8 [H, W, 3] (or its
    Backdrop), with a ring at `mark` (row, column in view pixels) when given."""
    back = view if isinstance(view, Backdrop) else Backdrop(view)
    m = np.asarray(Image.fromarray(_scaled(heat)).resize(back.size, Image.BILINEAR), np.float32)
    alpha = (0.15 + 0.75 * np.clip(m, 0, 1))[..., None]
    blended = (1 - alpha) * back.pixels + alpha * heat_colours(m)
    img = Image.fromarray(np.clip(blended, 0, 255).round().astype(np.uint8))
    if mark is not None:
        cy, cx = mark[0] * back.scale, mark[1] * back.scale
        r = max(3.0, 0.05 * max(back.size))
        draw = ImageDraw.Draw(img)
        draw.ellipse((cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1), outline=(0, 0, 0), width=1)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(0, 255, 255), width=2)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
