"""The index page (every model and snapshot with its layers and counts, and the manifest's run summary) and
the query page (DuckDB and pandas over this OUT's real paths).

Counts per snapshot and layer: units (with anything to show), seeds and methods (distinct values in
`units/`), synthesized images (`units/` rows), and whether top-k, nearest, inverse-set, snapshot and video
outputs exist. Under each layer's row, a strip of its strongest units (`best_tiles`: the grid's thumbnails of
the units with the highest final activation), each linking its unit page. The run summary lists each entry of
`manifest.json`: command, model, weights and their digests, method, layers, item counts, status, times and
package versions.
"""

from __future__ import annotations

from collections import defaultdict

from .choice import least_preferred, representative, strength
from .paths import INDEX, QUERY, Locator, layer_page, snapshot_anchor, unit_page
from .queries import AtlasData, LayerKey
from .render import Page, fmt_number

__all__ = ["index_page", "query_page", "best_tiles", "STRIP_TILES"]

STRIP_TILES = 8  # tiles under each layer's row of the index


def best_tiles(data: AtlasData, key: LayerKey, locator: Locator, count: int = STRIP_TILES) -> list[dict]:
    """The layer's strongest units: each unit's grid image (`choice.representative`), least-preferred ones
    left out, the `count` highest final activations first (ties: the lower unit), as thumbnails."""
    reps = [(u, representative(rows)) for u, rows in data.units.get(key, {}).items()]
    preferred = [(u, r) for u, r in reps if r is not None and not least_preferred(r)]
    best = sorted(preferred, key=lambda ur: (-strength(ur[1]), ur[0]))[:count]
    return [{"unit": u, "page": unit_page(key, u), "thumb": locator.thumb(r["image"]),
             "activation": r.get("activation_final"),
             "alt": f"unit {u}, preferred input, activation {fmt_number(r.get('activation_final'))}"} for u, r in best]


def _layer_row(data: AtlasData, key: LayerKey, locator: Locator) -> dict:
    rows = [r for rs in data.units.get(key, {}).values() for r in rs]
    return {"layer": key.layer, "path": layer_page(key), "units": len(data.layer_units(key)), "images": len(rows),
            "seeds": len({r["seed"] for r in rows}), "methods": sorted({str(r["method"]) for r in rows}),
            "topk": sum(1 for k, _ in data.topk if k == key), "inverse": sum(1 for k, _ in data.inverse if k == key),
            "videos": sum(1 for k, _ in data.videos if k == key), "strip": best_tiles(data, key, locator)}


def _runs(manifest: dict) -> list[dict]:
    out = []
    for run_id, r in sorted(manifest.get("runs", {}).items(), key=lambda kv: str(kv[1].get("started_at", ""))):
        layers = r.get("layers")
        out.append({
            "id": run_id, "command": r.get("command") or ("inverse" if r.get("method") == "inverse" else "atlas"),
            "model": r.get("model"), "snapshot": r.get("snapshot"), "method": r.get("method"),
            "layers": ", ".join(layers) if isinstance(layers, list) else ", ".join(f"{k} ({v})" for k, v in (
                layers or {}).items()) if isinstance(layers, dict) else layers,
            "work": next((r[k] for k in ("items", "runs", "queries", "images_read") if r.get(k) is not None), None),
            "status": r.get("status"),
            "started": r.get("started_at"), "finished": r.get("finished_at"),
            "digests": [[k, str(r[k])] for k in ("weights", "weights_sha256", "generator", "generator_weights",
                                                  "generator_sha256", "bounds", "images") if r.get(k) is not None],
            "versions": ", ".join(f"{k} {v}" for k, v in sorted((r.get("versions") or {}).items()))})
    return out


def index_page(data: AtlasData, out_uri: str, locator: Locator) -> Page:
    snapshots: dict[tuple[str, str], list[LayerKey]] = defaultdict(list)
    for key in data.layers():
        snapshots[(key.model, key.snapshot)].append(key)
    models: dict[str, list[dict]] = defaultdict(list)
    for (model, snapshot), keys in sorted(snapshots.items()):
        layers = [_layer_row(data, k, locator) for k in keys]
        rows = [r for k in keys for rs in data.units.get(k, {}).values() for r in rs]
        models[model].append({
            "name": snapshot, "anchor": snapshot_anchor(model, snapshot), "layers": layers,
            "units": sum(layer["units"] for layer in layers), "images": len(rows),
            "seeds": len({r["seed"] for r in rows}), "methods": sorted({str(r["method"]) for r in rows})})
    return Page(INDEX, "index.html", {
        "page": INDEX, "out": out_uri, "crumbs": [{"label": "atlas", "path": INDEX}], "prev": None, "next": None,
        "models": [{"name": m, "snapshots": s} for m, s in sorted(models.items())], "runs": _runs(data.manifest),
        "notes": data.notes, "has": _has(data), "thumb_px": locator.thumb_px})


def _has(data: AtlasData) -> dict:
    return {"units": bool(data.units), "topk": bool(data.topk or data.stats), "nearest": bool(data.neighbours),
            "inverse": bool(data.inverse), "tracking": bool(data.tracking), "videos": bool(data.videos)}


def query_page(data: AtlasData, location: str) -> Page:
    """The query page for OUT at `location` (an absolute local path or a URI); its example layer and unit
    are the first ones with synthesized images (or any)."""
    keys = sorted(data.units) or data.layers()
    key = keys[0]
    units = sorted(data.units.get(key, {})) or data.layer_units(key)
    return Page(QUERY, "query.html", {
        "page": QUERY, "out": location, "s3": location.startswith(("s3://", "s3a://")),
        "crumbs": [{"label": "atlas", "path": INDEX}, {"label": "querying the results", "path": QUERY}],
        "prev": None, "next": None, "has": _has(data), "example": {**key._asdict(), "unit": units[0],
                                                                     "page": unit_page(key, units[0])}})
