"""Which of a unit's synthesized images a layer grid shows: the rule, in one place.

A unit may have many rows in `units/` (seeds, methods, hyperparameters, pinned positions). Its tile shows one:
  1. rows that maximize the unit come first; rows whose objective starts with 'min ' (least-preferred
     inputs, `--direction min`) are used only when the unit has no other;
  2. among those, the highest `activation_final` (measured on the saved PNG) wins: the strongest preferred
     input; for least-preferred rows, the lowest; a missing or NaN activation never wins;
  3. ties go to the lowest seed, then the method name, then the hyperparameters text, then the image path,
     so the choice does not depend on the order rows were read in.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["representative", "RULE"]

RULE = ("Each tile shows one seed of the unit: the preferred input with the highest final activation "
        "(measured on the saved PNG); ties go to the lowest seed, then method. Least-preferred inputs are "
        "shown only for units that have nothing else.")


def _is_min(row: dict) -> bool:
    return str(row.get("objective") or "").startswith("min ")


def _score(row: dict) -> float:
    v = row.get("activation_final")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return -math.inf
    return -float(v) if _is_min(row) else float(v)


def representative(rows: Sequence[dict]) -> dict | None:
    """The row the grid shows for one unit (the module's rule); None when `rows` is empty."""
    if not rows:
        return None
    maximizing = [r for r in rows if not _is_min(r)]
    pool = maximizing or list(rows)
    return min(pool, key=lambda r: (-_score(r), r.get("seed") if r.get("seed") is not None else math.inf,
                                    str(r.get("method")), str(r.get("hyperparams")), str(r.get("image"))))
