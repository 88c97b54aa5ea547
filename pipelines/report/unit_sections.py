"""The optional sections of a unit page, each built only from outputs that exist under OUT (else empty):

  - `topk_section`: per top-k run (image set), the unit's activation statistics and its top-k real images
    (the crops `neuron-atlas topk` saved) with activation and source, and the other views of them that it
    drew (`overlay`: where a conv unit fires; `attribution`: gradient x input), which a toggle switches to;
  - `nearest_section`: per synthesized image of the unit and nearest run, the sheet and the neighbours table;
  - `inverse_section`: every inverse-set run that constrains the unit: ranges, status, sheet and samples;
  - `snapshot_section`: the unit across training snapshots, a filmstrip (one image per snapshot, chosen
    by `choice.representative`) and an activation-vs-step plot; from `tracking/` rows when the `snapshots`
    command wrote them (with `val_accuracy` when present, and its `filmstrip`/`plot` files when its rows
    name them), else from `units/` whenever the unit appears in two or more snapshots of the layer;
  - `video_section`: preferred videos (`videos/` rows: the `video` file, its `strip` when named, frames, fps
    and every other numeric column, such as the frame-order scores).
Image paths are resolved through the page's `paths.Locator`; plots are SVG geometry computed here.
"""

from __future__ import annotations

from collections import defaultdict

from ..topk.topk_out import QUANTILE_COLUMNS
from .choice import representative
from .media import content_type
from .paths import Locator, unit_page
from .queries import AtlasData, LayerKey
from .render import fmt_number

__all__ = ["TOPK_VIEWS", "topk_section", "nearest_section", "inverse_section", "snapshot_section", "video_section",
           "SnapshotIndex", "plot_geometry"]

SAMPLES_SHOWN = 24
TOPK_VIEWS = (("crop", "crops"), ("map", "activation maps"), ("attribution", "attribution"))
_VIEW_COLUMNS = (("crop", "image"), ("map", "overlay"), ("attribution", "attribution"))
_STATS = ("count", "mean", "std", "min", *QUANTILE_COLUMNS, "max", "positive_share")
_VIDEO_KNOWN = {"model", "snapshot", "layer", "unit", "y", "x", "seed", "steps", "activation_start",
                "activation_final", "activation_best"}


def _name(source: str) -> str:
    return source.rsplit("/", 1)[-1].rsplit(":", 1)[-1] if source else ""


def _example(e: dict, unit: int, locator: Locator) -> dict:
    """One top-k example: its crop and, where `topk` drew them, its activation-map and attribution overlays
    (`views`: view name -> site path, the crop's always first)."""
    views = {v: locator.file(e[c]) for v, c in _VIEW_COLUMNS if e.get(c)} if e["image"] else {}
    return {"rank": e["rank"], "activation": e["activation"], "source": e["source"], "name": _name(e["source"]),
            "label": e.get("label"), "box": e.get("box"), "image": views.get("crop"), "views": views,
            "alt": f"real image ranked {e['rank'] + 1} for unit {unit}: {_name(e['source'])}, "
                   f"activation {fmt_number(e['activation'])}"}


def topk_section(data: AtlasData, key: LayerKey, unit: int, locator: Locator) -> list[dict]:
    """Per top-k run: its examples, statistics, and `views` ([name, label] of each view of the examples that
    some example has: crops, then activation maps and attributions when drawn; more than one: a toggle)."""
    stats = {s["run_id"]: s for s in data.stats.get((key, unit), [])}
    runs: dict[str, list[dict]] = defaultdict(list)
    for e in data.topk.get((key, unit), []):
        runs[e["run_id"]].append(e)
    out = []
    for run_id in sorted(set(runs) | set(stats)):
        rows, st = runs.get(run_id, []), stats.get(run_id)
        examples = [_example(e, unit, locator) for e in rows]
        out.append({
            "run_id": run_id, "images": (rows[0] if rows else st)["images"], "k": rows[0]["k"] if rows else None,
            "stats": [[c, st[c]] for c in _STATS if c in st] if st else [], "examples": examples,
            "views": [[v, label] for v, label in TOPK_VIEWS if any(v in e["views"] for e in examples)]})
    return out


def nearest_section(data: AtlasData, rows: list[dict], locator: Locator) -> list[dict]:
    out = []
    for r in sorted(rows, key=lambda r: (r["seed"], str(r["method"]), str(r["image"]))):
        runs: dict[str, list[dict]] = defaultdict(list)
        for n in data.neighbours.get(r["image"], []):
            runs[n["nearest_run"]].append(n)
        for run_id, ns in sorted(runs.items()):
            sheet = data.sheets.get((run_id, r["image"]))
            out.append({"seed": r["seed"], "method": r["method"], "run": run_id[:8], "images": ns[0]["images"],
                        "sheet": locator.file(sheet) if sheet else None,
                        "alt": f"seed {r['seed']} beside its nearest real image in each space",
                        "rows": [{"space": n["space"], "rank": n["rank"], "distance": n["distance"],
                                  "source": n["source"], "name": _name(n["source"])} for n in ns]})
    return out


def inverse_section(data: AtlasData, key: LayerKey, unit: int, locator: Locator) -> list[dict]:
    out = []
    for run in data.inverse.get((key, unit), []):
        samples = run["samples"]
        ranges = [f"{c} in [{fmt_number(a)}, {fmt_number(b)}]"
                  for c, a, b in zip(run["constraints"], run["z1"], run["z2"])]
        out.append({
            "run_id": run["run_id"], "constraints": ranges, "status": run["status"], "count": len(samples),
            "in_range": sum(1 for s in samples if s["in_range"]), "diversity": run.get("diversity"),
            "diversity_space": run.get("diversity_space"), "sheet": locator.file(run["sheet"]) if run.get("sheet")
            else None, "more": max(0, len(samples) - SAMPLES_SHOWN),
            "samples": [{"sample": s["sample"], "image": locator.file(s["image"]),
                         "activation": ", ".join(fmt_number(a) for a in s["activation"]),
                         "alt": f"inverse-set sample {s['sample']}, activation "
                                f"{', '.join(fmt_number(a) for a in s['activation'])}"}
                        for s in samples[:SAMPLES_SHOWN]]})
    return out


class SnapshotIndex:
    """The snapshots of each (model, layer) in `units/`, sorted (snapshot labels are zero-padded steps)."""

    def __init__(self, data: AtlasData):
        by_layer: dict[tuple[str, str], list[str]] = defaultdict(list)
        for k in data.units:
            by_layer[(k.model, k.layer)].append(k.snapshot)
        self.by_layer = {k: sorted(v) for k, v in by_layer.items()}

    def snapshots(self, model: str, layer: str) -> list[str]:
        return self.by_layer.get((model, layer), [])


def plot_geometry(points: list[tuple[float, float]], accuracy: list[float | None] | None = None,
                  width: int = 480, height: int = 160) -> dict:
    """SVG coordinates of an activation-vs-step line (and an accuracy line on a 0-1 scale when given)."""
    left, right, top, bottom = 56, 16, 12, 28
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)

    def sx(x: float) -> float:
        return round(left + (x - x0) / ((x1 - x0) or 1) * (width - left - right), 1)

    def sy(y: float, lo: float = y0, hi: float = y1) -> float:
        return round(top + (hi - y) / ((hi - lo) or 1) * (height - top - bottom), 1)

    dots = [{"cx": sx(x), "cy": sy(y), "label": f"step {fmt_number(x)}: {fmt_number(y)}"} for x, y in points]
    acc = [(sx(x), sy(a, 0.0, 1.0)) for (x, _), a in zip(points, accuracy or []) if a is not None]
    return {"width": width, "height": height, "left": left, "right": width - right, "top": top,
            "bottom": height - bottom, "line": " ".join(f"{d['cx']},{d['cy']}" for d in dots), "dots": dots,
            "accuracy": " ".join(f"{x},{y}" for x, y in acc), "y_min": fmt_number(y0), "y_max": fmt_number(y1),
            "x_min": fmt_number(x0), "x_max": fmt_number(x1)}


def _step(snapshot: str, row: dict | None) -> float | None:
    if row is not None and row.get("step") is not None:
        return float(row["step"])
    return float(snapshot) if snapshot.isdigit() else None


def snapshot_section(data: AtlasData, index: SnapshotIndex, key: LayerKey, unit: int, locator: Locator
                     ) -> dict | None:
    tracked = data.tracking.get((key.model, key.layer, unit)) or data.tracking.get((None, key.layer, unit)) or []
    per_snapshot: dict[str, list[dict]] = defaultdict(list)
    for r in tracked:
        per_snapshot[str(r["snapshot"])].append(r)
    if not tracked:
        for s in index.snapshots(key.model, key.layer):
            rows = data.units[LayerKey(key.model, s, key.layer)].get(unit)
            if rows:
                per_snapshot[s] = rows
    if len(per_snapshot) < 2:
        return None
    strip = []
    for s, rows in per_snapshot.items():
        rep = representative(rows)
        other = LayerKey(key.model, s, key.layer)
        strip.append({"snapshot": s, "step": _step(s, rep), "activation": rep.get("activation_final"),
                      "accuracy": rep.get("val_accuracy"), "thumb": locator.thumb(rep["image"]),
                      "page": unit_page(other, unit) if unit in data.units.get(other, {}) else None,
                      "current": s == key.snapshot,
                      "alt": f"unit {unit} at snapshot {s}, activation {fmt_number(rep.get('activation_final'))}"})
    strip.sort(key=lambda p: (p["step"] is None, p["step"] or 0, p["snapshot"]))
    have = [p for p in strip if p["activation"] is not None]
    xs = [p["step"] if all(q["step"] is not None for q in have) else i for i, p in enumerate(have)]
    plot = plot_geometry([(x, p["activation"]) for x, p in zip(xs, have)],
                         [p["accuracy"] for p in have] if any(p["accuracy"] is not None for p in have) else None
                         ) if len(have) >= 2 else None
    files = {f"{c}_file": locator.file(tracked[0][c]) for c in ("filmstrip", "plot") if tracked and tracked[0].get(c)}
    return {"strip": strip, "plot": plot, "source": "tracking" if tracked else "units", **files}


def video_section(data: AtlasData, key: LayerKey, unit: int, locator: Locator) -> list[dict]:
    out = []
    for r in sorted(data.videos.get((key, unit), []), key=lambda r: (r.get("seed") or 0, str(r.get("method")))):
        extras = [[k, v] for k, v in sorted(r.items()) if k not in _VIDEO_KNOWN and k not in ("frames", "fps")
                  and isinstance(v, (int, float)) and not isinstance(v, bool)]
        out.append({"video": locator.file(r["video"]), "type": content_type(r["video"]),
                    "strip": locator.file(r["strip"]) if r.get("strip") else None, "seed": r.get("seed"),
                    "method": r.get("method"), "frames": r.get("frames"), "fps": r.get("fps"),
                    "activation": r.get("activation_final"), "figures": extras,
                    "alt": f"unit {unit}, preferred video, seed {r.get('seed')}"})
    return out
