"""Contact sheets: many synthesized images on one labelled PNG, for people who would rather look than read.

`python -m pipelines.sheet OUT [DEST]` draws every image of the `units/` dataset under OUT, one row per
layer (at most `per_layer` images each), labelled with unit, seed and final activation.
"""

from __future__ import annotations

import io
import sys
from typing import Sequence

from PIL import Image, ImageDraw

from .sink import read_units
from .storage import Store

__all__ = ["contact_sheet", "atlas_sheet"]


def contact_sheet(images: Sequence[Image.Image], labels: Sequence[str], columns: int = 8, tile: int = 128,
                  rows_titles: Sequence[tuple[int, str]] = ()) -> Image.Image:
    """Tiles of `tile` px with a caption line under each; `rows_titles` puts (row, text) headers in."""
    label_h, title_h = 14, 18
    titles = dict(rows_titles)
    n_rows = max(1, -(-len(images) // columns))
    height = n_rows * (tile + label_h) + title_h * len(titles)
    sheet = Image.new("RGB", (columns * tile, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for r in range(n_rows):
        if r in titles:
            draw.text((4, y + 3), titles[r], fill="black")
            y += title_h
        for c in range(columns):
            i = r * columns + c
            if i >= len(images):
                break
            sheet.paste(images[i].convert("RGB").resize((tile, tile)), (c * tile, y))
            draw.text((c * tile + 3, y + tile + 1), labels[i][: tile // 6], fill="black")
        y += tile + label_h
    return sheet


def atlas_sheet(store: Store, per_layer: int = 16, columns: int = 8) -> Image.Image:
    """One sheet of the atlas under `store`: a header and up to `per_layer` images for each layer."""
    rows = read_units(store).to_pylist()
    by_layer: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["layer"], r["unit"], r["seed"])):
        by_layer.setdefault(r["layer"], []).append(r)
    images, labels, titles = [], [], []
    for layer, items in by_layer.items():
        items = items[:per_layer]
        pad = (-len(items)) % columns
        titles.append((len(images) // columns, f"{items[0]['model']} / {layer} ({items[0]['method']})"))
        for r in items:
            images.append(Image.open(io.BytesIO(store.read_bytes(r["image"]))))
            labels.append(f"u{r['unit']} s{r['seed']} a={r['activation_final']:.1f}")
        images.extend([Image.new("RGB", (8, 8), "white")] * pad)
        labels.extend([""] * pad)
    return contact_sheet(images, labels, columns=columns, rows_titles=titles)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "./atlas-out"
    dest = sys.argv[2] if len(sys.argv) > 2 else f"{out.rstrip('/')}/contact_sheet.png"
    atlas_sheet(Store(out)).save(dest)
    print(dest)
