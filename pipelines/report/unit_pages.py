"""The unit pages: one per (model, snapshot, layer, unit) that has anything to show.

A unit page shows every synthesized image of the unit side by side, grouped by method, objective, position
and hyperparameters (one figure per seed, with activation start, final and best, and the hyperparameters
as a table); the image its layer grid shows is marked. Independent seeds beside the same settings' seeds
optimized for diversity are "Facets"; images started from photos are "Caricatures", each beside its photo
(unit_groups); neither is repeated among the ordinary groups. Below come the sections `unit_sections` builds
whenever their outputs exist under OUT: top-k real images and activation statistics, nearest real images,
inverse sets, the unit across training snapshots, preferred videos. Previous/next links follow the layer's
unit order; the jump box takes any unit of the layer.
"""

from __future__ import annotations

from .choice import representative
from .layer_pages import layer_crumbs, unit_ranges
from .paths import Locator, unit_page
from .queries import AtlasData, LayerKey
from .render import Page
from .unit_groups import caricatures, facets, seed_groups
from .unit_sections import SnapshotIndex, inverse_section, nearest_section, snapshot_section, topk_section, \
    video_section

__all__ = ["unit_pages"]


def _sections(rows: list[dict], data: AtlasData, unit: int, locator: Locator) -> dict:
    """The unit's synthesized images: the ordinary groups, the facets and the caricatures (unit_groups)."""
    groups = seed_groups(rows, representative(rows), unit, locator)
    facet_list, rest = facets(groups)
    rest = [g for g in rest if g["start"] != "photo"]
    return {"groups": [{k: v for k, v in g.items() if k != "rows"} for g in rest], "facets": facet_list,
            "caricatures": caricatures(groups, data.inits, unit, locator)}


def unit_pages(data: AtlasData, key: LayerKey, locator: Locator, snapshots: SnapshotIndex,
               out_uri: str) -> list[Page]:
    """Every unit page of one layer, linked in unit order."""
    units = data.layer_units(key)
    jump = unit_ranges(units)
    crumbs = layer_crumbs(key)
    pages = []
    for i, unit in enumerate(units):
        rows = data.units.get(key, {}).get(unit, [])
        path = unit_page(key, unit)
        pages.append(Page(path, "unit.html", {
            "page": path, "key": key._asdict(), "unit": unit, "out": out_uri, "jump": jump,
            "crumbs": [*crumbs, {"label": f"unit {unit}", "path": path}],
            "prev": unit_page(key, units[i - 1]) if i > 0 else None,
            "next": unit_page(key, units[i + 1]) if i + 1 < len(units) else None,
            "prev_unit": units[i - 1] if i > 0 else None, "next_unit": units[i + 1] if i + 1 < len(units) else None,
            **_sections(rows, data, unit, locator),
            "topk": topk_section(data, key, unit, locator),
            "nearest": nearest_section(data, rows, locator),
            "inverse": inverse_section(data, key, unit, locator),
            "snapshots": snapshot_section(data, snapshots, key, unit, locator),
            "videos": video_section(data, key, unit, locator),
        }))
    return pages
