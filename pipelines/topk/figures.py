"""Pictures of dataset examples, drawn with pipelines/sheet.contact_sheet.

`neighbour_sheet`: one synthesized image beside its nearest real image in each space, labelled with the
space and the distance (the DGN-AM supplement's Fig. S22). `topk_figure`: for chosen units, the preferred
input from `units/` beside the unit's top-k real crops from `topk/examples` (Fig. S23):

    python -m pipelines.topk.figures topk OUT DEST LAYER:UNIT[,LAYER:UNIT...]
    python -m pipelines.topk.figures nearest OUT DEST TEXT[,TEXT...]   (the sheets whose path holds TEXT)
"""

from __future__ import annotations

import io
import sys
from typing import Sequence

from PIL import Image

from ..sheet import contact_sheet
from ..sink import read_units
from ..storage import Store
from .topk_out import read_topk

__all__ = ["neighbour_sheet", "topk_figure"]

_BLANK = (8, 8)


def neighbour_sheet(synthetic: Image.Image, neighbours: Sequence[tuple[str, float | None, Image.Image | None]],
                    title: str, tile: int = 128, columns: int = 11) -> Image.Image:
    """[synthetic | nearest real image per space], wrapped after `columns` tiles; `neighbours` holds
    (space, distance, image) per space."""
    images = [synthetic] + [img if img is not None else Image.new("RGB", _BLANK, "lightgrey")
                            for _, _, img in neighbours]
    labels = ["synthetic"] + [f"{space} {d:.4g}" if d is not None else f"{space}: none" for space, d, _ in neighbours]
    return contact_sheet(images, labels, columns=min(columns, len(images)), tile=tile, rows_titles=[(0, title)])


def _png(store: Store, rel: str | None) -> Image.Image:
    if rel is None:
        return Image.new("RGB", _BLANK, "lightgrey")
    return Image.open(io.BytesIO(store.read_bytes(rel))).convert("RGB")


def topk_figure(store: Store, units: Sequence[tuple[str, int]], tile: int = 112, maps: bool = True) -> Image.Image:
    """One row per (layer, unit): its preferred input (seed 0 of the first method found) and its top-k crops;
    with `maps`, below it the rows of the examples' activation-map and attribution overlays that exist."""
    synth = {}
    for r in sorted(read_units(store).to_pylist(), key=lambda r: (r["seed"], r["method"])):
        synth.setdefault((r["layer"], r["unit"]), r)
    examples: dict[tuple[str, int], list[dict]] = {}
    for r in sorted(read_topk(store).to_pylist(), key=lambda r: r["rank"]):
        examples.setdefault((r["layer"], r["unit"]), []).append(r)
    k = max((len(v) for v in examples.values()), default=0)
    images, labels, titles = [], [], []
    for layer, unit in units:
        s, ex = synth.get((layer, unit)), examples.get((layer, unit), [])
        titles.append((len(images) // (1 + k), f"{layer} unit {unit}: preferred input | top {len(ex)} real images "
                                    f"(crop = receptive field of the maximum)"))
        images.append(_png(store, s["image"] if s else None))
        labels.append(f"{s['method']} a={s['activation_final']:.1f}" if s else "no preferred input")
        for r in ex + [None] * (k - len(ex)):
            images.append(_png(store, r["image"] if r else None))
            labels.append(f"a={r['activation']:.1f} {r['label'] or ''}".strip() if r else "")
        for column, what in (("overlay", "where it fires: its activation map over each image, maximum ringed"),
                             ("attribution", "where its activation comes from: gradient x input, smoothed")):
            if maps and any(r.get(column) for r in ex):
                titles.append((len(images) // (1 + k), what))
                images.append(Image.new("RGB", _BLANK, "white"))
                labels.append("")
                for r in ex + [None] * (k - len(ex)):
                    images.append(_png(store, r.get(column) if r else None))
                    labels.append("")
    return contact_sheet(images, labels, columns=1 + k, tile=tile, rows_titles=titles)


def stacked(pictures: Sequence[Image.Image]) -> Image.Image:
    """The pictures one below the other, on white."""
    out = Image.new("RGB", (max(p.width for p in pictures), sum(p.height for p in pictures)), "white")
    y = 0
    for p in pictures:
        out.paste(p, (0, y))
        y += p.height
    return out


def _units(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        layer, _, unit = item.strip().rpartition(":")
        out.append((layer, int(unit)))
    return out


def main(argv: Sequence[str]) -> None:
    if len(argv) != 4 or argv[0] not in ("topk", "nearest"):
        sys.exit(__doc__.split("\n\n")[-1])
    kind, out, dest, which = argv
    store = Store(out)
    if kind == "topk":
        picture = topk_figure(store, _units(which))
    else:
        sheets = store.find("nearest/sheets", ".png")
        picture = stacked([_png(store, next(p for p in sheets if text in p)) for text in which.split(",")])
    picture.save(dest)
    print(dest)


if __name__ == "__main__":
    main(sys.argv[1:])
