"""Pictures of a snapshot sweep (pure: rows and thumbnails in, PIL images out; tracking.py writes them).

- `filmstrip`: one unit's preferred input at every snapshot, one row per seed, each tile captioned with the
  step and the final activation (pipelines/sheet.contact_sheet draws it).
- `activation_plot`: one layer's final activation against the training step: a light line per unit (mean
  over seeds), a dark line for the layer's mean, and validation accuracy on a 0-1 axis at the right where
  the checkpoints had metrics sidecars.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from PIL import Image, ImageDraw

from ..sheet import contact_sheet

__all__ = ["filmstrip", "activation_plot", "TILE"]

TILE = 80  # px per snapshot in a filmstrip: 13 caption characters fit under it
_BLANK = Image.new("RGB", (8, 8), "white")


def filmstrip(title: str, steps: Sequence[int], seeds: Sequence[int],
              cells: Mapping[tuple[int, int], tuple[Image.Image, float]], tile: int = TILE) -> Image.Image:
    """`cells[(seed, step)] = (thumbnail, activation)`; a missing cell stays blank. Captions: `<step> a=<act>`."""
    images, labels = [], []
    for seed in seeds:
        for step in steps:
            cell = cells.get((seed, step))
            images.append(cell[0] if cell else _BLANK)
            labels.append(f"{step} a={cell[1]:.3g}" if cell else "")
    titles = [(i, f"{title} seed {seed}") for i, seed in enumerate(seeds)]
    return contact_sheet(images, labels, columns=max(1, len(steps)), tile=tile, rows_titles=titles)


def activation_plot(title: str, units: Mapping[str, Sequence[tuple[int, float]]],
                    accuracy: Sequence[tuple[int, float]] = (), size: tuple[int, int] = (640, 360)) -> Image.Image:
    """`units[name] = [(step, activation), ...]` (sorted by step); `accuracy = [(step, val_accuracy), ...]`."""
    w, h = size
    left, right, top, bottom = 56, 48 if accuracy else 12, 24, 30
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    points = [p for series in units.values() for p in series]
    steps = [s for s, _ in points] + [s for s, _ in accuracy]
    if not points:
        draw.text((left, top), f"{title}: no snapshots yet", fill="black")
        return img
    s0, s1 = min(steps), max(max(steps), min(steps) + 1)
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1.0

    def xy(step: float, value: float, vlo: float = lo, vhi: float = hi) -> tuple[float, float]:
        return (left + (w - left - right) * (step - s0) / (s1 - s0),
                h - bottom - (h - top - bottom) * (value - vlo) / (vhi - vlo))

    draw.rectangle([left, top, w - right, h - bottom], outline=(200, 200, 200))
    for series in units.values():
        if len(series) > 1:
            draw.line([xy(s, v) for s, v in series], fill=(170, 185, 225), width=1)
    by_step: dict[int, list[float]] = {}
    for s, v in points:
        by_step.setdefault(s, []).append(v)
    mean = [(s, sum(vs) / len(vs)) for s, vs in sorted(by_step.items())]
    _series(draw, [xy(s, v) for s, v in mean], (20, 40, 140))
    if accuracy:
        _series(draw, [xy(s, a, 0.0, 1.0) for s, a in accuracy], (220, 110, 20))
        draw.text((w - right + 4, top - 4), "1.0", fill=(220, 110, 20))
        draw.text((w - right + 4, h - bottom - 10), "0.0", fill=(220, 110, 20))
    draw.text((left, 6), f"{title}: activation_final (blue: mean of {len(units)} units, light: each unit)"
              + (", val accuracy (orange)" if accuracy else ""), fill="black")
    draw.text((4, top - 4), f"{hi:.3g}", fill="gray")
    draw.text((4, h - bottom - 10), f"{lo:.3g}", fill="gray")
    draw.text((left, h - bottom + 4), f"step {s0}", fill="gray")
    draw.text((w - right - 70, h - bottom + 4), f"step {s1}", fill="gray")
    return img


def _series(draw: ImageDraw.ImageDraw, pts: list[tuple[float, float]], colour: tuple[int, int, int]) -> None:
    if len(pts) > 1:
        draw.line(pts, fill=colour, width=2)
    for x, y in pts:
        draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=colour)
