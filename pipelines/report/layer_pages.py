"""The layer pages: a grid of every unit of one (model, snapshot, layer), `page_size` units per page.

Each tile links the unit's page and shows a thumbnail with the unit number and activation: the synthesized
image chosen by `choice.representative`; for a unit with no synthesized image, its strongest real image
(top-k), the frame strip of its preferred video or its first inverse-set sample, marked as such. Pages are
plain HTML (no script needed to read them); thumbnails beyond the first screens load lazily, so a
10,000-unit layer opens at once on any page.
"""

from __future__ import annotations

from typing import Iterable

from .choice import RULE, least_preferred, representative
from .paths import INDEX, Locator, layer_page, snapshot_anchor, unit_page
from .queries import AtlasData, LayerKey
from .render import Page, fmt_number

__all__ = ["layer_pages", "unit_ranges", "layer_crumbs", "pager"]

EAGER_TILES = 48  # tiles whose thumbnails load at once; the rest load as they scroll into view


def unit_ranges(units: Iterable[int]) -> str:
    """Sorted units as compact ranges, '0-63,100,128-255' (what the jump box accepts)."""
    out: list[str] = []
    start = prev = None
    for u in sorted(units):
        if prev is not None and u == prev + 1:
            prev = u
            continue
        if start is not None:
            out.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = u
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(out)


def layer_crumbs(key: LayerKey) -> list[dict]:
    """Breadcrumbs down to the layer (site-root paths)."""
    return [{"label": "atlas", "path": INDEX},
            {"label": f"{key.model} / {key.snapshot}", "path": f"{INDEX}#{snapshot_anchor(key.model, key.snapshot)}"},
            {"label": key.layer, "path": layer_page(key)}]


def pager(key: LayerKey, current: int, count: int, window: int = 3) -> list[dict]:
    """Page links: the first, the last and `window` either side of the current one (None marks a gap)."""
    shown = sorted({1, count, *range(max(1, current - window), min(count, current + window) + 1)})
    out: list[dict] = []
    for n in shown:
        if out and n != out[-1]["no"] + 1:
            out.append({"no": None, "path": None, "current": False})
        out.append({"no": n, "path": layer_page(key, n), "current": n == current})
    return out


def _tile(data: AtlasData, key: LayerKey, unit: int, locator: Locator) -> dict:
    rep = representative(data.units.get(key, {}).get(unit, []))
    tile = {"unit": unit, "page": unit_page(key, unit), "kind": "none", "thumb": None, "activation": None,
            "note": "nothing to show"}
    if rep is not None:
        least = least_preferred(rep)
        tile.update(kind="least" if least else "synthetic", thumb=locator.thumb(rep["image"]),
                    activation=rep["activation_final"], note=f"seed {rep['seed']}, {rep['method']}"
                    + (", least-preferred" if least else ""))
    elif (real := next((e for e in data.topk.get((key, unit), []) if e["image"]), None)) is not None:
        tile.update(kind="real", thumb=locator.thumb(real["image"]), activation=real["activation"],
                    note="strongest real image")
    elif (video := next((v for v in data.videos.get((key, unit), []) if v.get("strip")), None)) is not None:
        tile.update(kind="video", thumb=locator.thumb(video["strip"]), activation=video.get("activation_final"),
                    note=f"preferred video, seed {video.get('seed')}")
    elif (sample := next((s for r in data.inverse.get((key, unit), []) for s in r["samples"]), None)) is not None:
        tile.update(kind="inverse", thumb=locator.thumb(sample["image"]), activation=None, note="inverse-set sample")
    what = {"synthetic": "preferred input", "least": "least-preferred input", "real": "strongest real image",
            "video": "preferred video's frames", "inverse": "inverse-set sample", "none": "no image"}[tile["kind"]]
    tile["alt"] = f"unit {unit}, {what}" + (f", activation {fmt_number(tile['activation'])}"
                                           if tile["activation"] is not None else "")
    return tile


def layer_pages(data: AtlasData, key: LayerKey, locator: Locator, page_size: int, out_uri: str) -> list[Page]:
    """The pages of one layer's grid, `page_size` units each."""
    units = data.layer_units(key)
    rows = [r for rs in data.units.get(key, {}).values() for r in rs]
    count = max(1, -(-len(units) // page_size))
    common = {"key": key._asdict(), "crumbs": layer_crumbs(key), "rule": RULE, "thumb_px": locator.thumb_px,
              "unit_count": len(units), "page_count": count, "jump": unit_ranges(units), "out": out_uri,
              "seeds": len({r["seed"] for r in rows}), "methods": sorted({str(r["method"]) for r in rows}),
              "eager": EAGER_TILES}
    pages = []
    for n in range(1, count + 1):
        chunk = units[(n - 1) * page_size:n * page_size]
        pages.append(Page(layer_page(key, n), "layer.html", {
            **common, "page": layer_page(key, n), "page_no": n, "pager": pager(key, n, count),
            "prev": layer_page(key, n - 1) if n > 1 else None, "next": layer_page(key, n + 1) if n < count else None,
            "first": chunk[0] if chunk else None, "last": chunk[-1] if chunk else None,
            "tiles": [_tile(data, key, u, locator) for u in chunk]}))
    return pages
