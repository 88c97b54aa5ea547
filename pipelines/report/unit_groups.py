"""A unit's synthesized images as its page shows them: groups of seeds, facets and caricatures.

`seed_groups` groups a unit's `units/` rows by (method, objective, position, hyperparameters), seeds in
order within each, and tags each group with how its images started (`starts.start_of`). From those groups:
  - `facets`: when the unit has both independent seeds ("noise") and seeds optimized as one group under a
    diversity penalty ("diverse"), each diverse group stands beside the independent group of the same
    method, objective and position whose hyperparameters, less `diversity`, are the same (else the one that
    differs in the fewest, the differing names listed): one facet, a column of images per group;
  - `caricatures`: the groups that started from photos, each image beside its start photo
    (`inits/<digest>.png`, linked only when it exists under OUT) with the activation there and at the end.
Groups in neither stay in the page's ordinary "Preferred inputs" section, so an image is shown once.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict

from models.layout import PREFIX_ROW, prefix_name

from ..init_photos import init_path
from .paths import Locator
from .render import fmt_number
from .starts import diversity_of, init_digest, start_of, without_diversity

__all__ = ["hyperparam_items", "seed_groups", "facets", "caricatures"]


def position_label(y, x) -> str | None:
    """How a unit's position reads on the site: '(6, 6)' on a map or patch grid, 'the cls token' for a prefix one."""
    if y is None:
        return None
    return f"the {prefix_name(int(x))} token" if int(y) == PREFIX_ROW else f"({int(y)}, {int(x)})"


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


def _figure(r: dict, chosen: dict | None, unit: int, method: str, locator: Locator) -> dict:
    return {"seed": r["seed"], "image": locator.file(r["image"]), "start": r.get("activation_start"),
            "final": r.get("activation_final"), "best": r.get("activation_best"), "steps": r.get("steps"),
            "chosen": r is chosen,
            "alt": (f"unit {unit}, seed {r['seed']}, {method}: activation {fmt_number(r.get('activation_start'))}"
                    f" at the start, {fmt_number(r.get('activation_final'))} final")}


def seed_groups(rows: list[dict], chosen: dict | None, unit: int, locator: Locator) -> list[dict]:
    """Rows by (method, objective, position, hyperparams); seeds in order within each. Each group holds its
    `rows` (sorted like its `figures`) and its `start` ('noise', 'diverse' or 'photo')."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        grouped[(str(r["method"]), str(r.get("objective") or ""), r.get("y"), r.get("x"),
                 str(r.get("hyperparams") or ""))].append(r)
    out = []
    for (method, objective, y, x, hp), items in sorted(grouped.items(), key=lambda kv: (
            kv[0][0], kv[0][1], kv[0][2] is not None, kv[0][2] or 0, kv[0][3] or 0, kv[0][4])):
        items = sorted(items, key=lambda r: (r["seed"], str(r["image"])))
        out.append({"method": method, "objective": objective, "position": position_label(y, x),
                    "hp8": hashlib.sha256(hp.encode()).hexdigest()[:8], "hyperparams": hyperparam_items(hp),
                    "start": start_of(items[0]), "rows": items,
                    "figures": [_figure(r, chosen, unit, method, locator) for r in items]})
    return out


def _slot(group: dict) -> tuple:
    return group["method"], group["objective"], group["position"]


def _differing(a: dict, b: dict) -> list[str]:
    """Hyperparameter names (less `diversity`) whose values differ between two groups' first rows."""
    pa, pb = without_diversity(a["rows"][0]), without_diversity(b["rows"][0])
    return sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))


def _weight(group: dict) -> float | None:
    weight = (diversity_of(group["rows"][0]) or {}).get("weight")
    return float(weight) if isinstance(weight, (int, float)) and not isinstance(weight, bool) else None


def _column(group: dict, label: str, differs: list[str]) -> dict:
    return {"label": label, "hp8": group["hp8"], "hyperparams": group["hyperparams"], "differs": differs,
            "figures": group["figures"]}


def facets(groups: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the facets, the groups left for the ordinary section): see the module docstring. A facet holds its
    method, objective, position and `columns` (label, hp8, hyperparams, differs, figures): the independent
    seeds first, then each diversity weight's group in ascending weight."""
    independent = [g for g in groups if g["start"] == "noise"]
    partners: dict[int, list[tuple[dict, list[str]]]] = defaultdict(list)
    for g in (g for g in groups if g["start"] == "diverse"):
        candidates = [(_differing(ind, g), i) for i, ind in enumerate(independent) if _slot(ind) == _slot(g)]
        if candidates:
            differs, i = min(candidates, key=lambda c: (len(c[0]), c[1]))
            partners[i].append((g, differs))
    out, paired = [], set()
    for i, pairs in sorted(partners.items()):
        ind = independent[i]
        pairs.sort(key=lambda p: (_weight(p[0]) is None, _weight(p[0]) or 0.0, p[0]["hp8"]))
        columns = [_column(ind, "independent seeds", [])]
        for g, differs in pairs:
            weight = _weight(g)
            columns.append(_column(g, "with diversity" if weight is None else f"with diversity {weight:g}", differs))
            paired.add(id(g))
        paired.add(id(ind))
        out.append({"method": ind["method"], "objective": ind["objective"], "position": ind["position"],
                    "columns": columns})
    return out, [g for g in groups if id(g) not in paired]


def caricatures(groups: list[dict], inits: set[str], unit: int, locator: Locator) -> list[dict]:
    """The groups that started from photos, each figure with its start photo (`photo`: a site path, or None
    when the photo is not under OUT) and the photo's digest."""
    out = []
    for g in (g for g in groups if g["start"] == "photo"):
        figures = []
        for r, f in zip(g["rows"], g["figures"]):
            digest = init_digest(r)
            path = init_path(digest) if digest else None
            figures.append({**f, "digest": digest, "photo": locator.file(path) if path in inits else None,
                            "photo_alt": f"start photo {(digest or '')[:8]} of seed {r['seed']}, as the net saw it",
                            "alt": f"unit {unit}, caricature of photo {(digest or '')[:8]} (seed {r['seed']}, "
                                   f"{g['method']}): activation {fmt_number(r.get('activation_final'))} final"})
        out.append({**{k: g[k] for k in ("method", "objective", "position", "hp8", "hyperparams")},
                    "figures": figures})
    return out
