"""The unit pages: one per (model, snapshot, layer, unit) that has anything to show.

A unit page shows every synthesized image of the unit side by side, grouped by method, objective, position
and hyperparameters (one figure per seed, with activation start, final and best, and the hyperparameters
as a table); the image its layer grid shows is marked. Below come the sections `unit_sections` builds
whenever their outputs exist under OUT: top-k real images and activation statistics, nearest real images,
inverse sets, the unit across training snapshots, preferred videos. Previous/next links follow the layer's
unit order; the jump box takes any unit of the layer.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict

from .choice import representative
from .layer_pages import layer_crumbs, unit_ranges
from .paths import Locator, unit_page
from .queries import AtlasData, LayerKey
from .render import Page, fmt_number
from .unit_sections import SnapshotIndex, inverse_section, nearest_section, snapshot_section, topk_section, \
    video_section

__all__ = ["unit_pages", "hyperparam_items"]


def hyperparam_items(text: str | None) -> list[list[str]]:
    """The `hyperparams` JSON text as sorted [name, value] pairs (values that are not scalars as JSON)."""
    if not text:
        return []
    try:
        params = json.loads(text)
    except json.JSONDecodeError:
        return [["hyperparams", text]]
    if not isinstance(params, dict):
        return [["hyperparams", text]]
    return [[k, v if isinstance(v, str) else json.dumps(v)] for k, v in sorted(params.items())]


def _groups(rows: list[dict], chosen: dict | None, unit: int, locator: Locator) -> list[dict]:
    """Rows by (method, objective, position, hyperparams); seeds in order within each."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        grouped[(str(r["method"]), str(r.get("objective") or ""), r.get("y"), r.get("x"),
                 str(r.get("hyperparams") or ""))].append(r)
    out = []
    for (method, objective, y, x, hp), items in sorted(grouped.items(), key=lambda kv: (
            kv[0][0], kv[0][1], kv[0][2] is not None, kv[0][2] or 0, kv[0][3] or 0, kv[0][4])):
        figures = []
        for r in sorted(items, key=lambda r: (r["seed"], str(r["image"]))):
            figures.append({
                "seed": r["seed"], "image": locator.file(r["image"]), "start": r.get("activation_start"),
                "final": r.get("activation_final"), "best": r.get("activation_best"), "steps": r.get("steps"),
                "chosen": r is chosen,
                "alt": (f"unit {unit}, seed {r['seed']}, {method}: activation {fmt_number(r.get('activation_start'))}"
                        f" at the start, {fmt_number(r.get('activation_final'))} final")})
        out.append({"method": method, "objective": objective, "position": None if y is None else [y, x],
                    "hp8": hashlib.sha256(hp.encode()).hexdigest()[:8], "hyperparams": hyperparam_items(hp),
                    "figures": figures})
    return out


def unit_pages(data: AtlasData, key: LayerKey, locator: Locator, snapshots: SnapshotIndex,
               out_uri: str) -> list[Page]:
    """Every unit page of one layer, linked in unit order."""
    units = data.layer_units(key)
    jump = unit_ranges(units)
    crumbs = layer_crumbs(key)
    pages = []
    for i, unit in enumerate(units):
        rows = data.units.get(key, {}).get(unit, [])
        chosen = representative(rows)
        path = unit_page(key, unit)
        pages.append(Page(path, "unit.html", {
            "page": path, "key": key._asdict(), "unit": unit, "out": out_uri, "jump": jump,
            "crumbs": [*crumbs, {"label": f"unit {unit}", "path": path}],
            "prev": unit_page(key, units[i - 1]) if i > 0 else None,
            "next": unit_page(key, units[i + 1]) if i + 1 < len(units) else None,
            "prev_unit": units[i - 1] if i > 0 else None, "next_unit": units[i + 1] if i + 1 < len(units) else None,
            "groups": _groups(rows, chosen, unit, locator),
            "topk": topk_section(data, key, unit, locator),
            "nearest": nearest_section(data, rows, locator),
            "inverse": inverse_section(data, key, unit, locator),
            "snapshots": snapshot_section(data, snapshots, key, unit, locator),
            "videos": video_section(data, key, unit, locator),
        }))
    return pages
