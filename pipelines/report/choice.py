"""Which of a unit's synthesized images a layer grid shows: the rule, in one place.

A unit may have many rows in `units/` (seeds, methods, hyperparameters, pinned positions). Its tile shows one:
  1. rows that maximize the unit from noise come first; caricatures (rows that started from a photo,
     `--init`: starts.start_of) only when the unit has no such row, so a photo's strong start never
     outranks the unit's own preferred inputs; rows whose objective starts with 'min ' (least-preferred
     inputs, `--direction min`) are used only when the unit has no other;
  2. among those, the highest `activation_final` (measured on the saved PNG) wins: the strongest preferred
     input; for least-preferred rows, the lowest; a missing or NaN activation never wins;
  3. ties go to the lowest seed, then the method name, then the hyperparameters text, then the image path,
     so the choice does not depend on the order rows were read in.
"""

from __future__ import annotations

import math
from typing import Sequence

from .starts import start_of

__all__ = ["representative", "strength", "least_preferred", "RULE"]

RULE = ("Each tile shows one seed of the unit: the preferred input with the highest final activation "
        "(measured on the saved PNG); ties go to the lowest seed, then method. Caricatures (started from a "
        "photo) are shown only for units with no image started from noise, least-preferred inputs only for "
        "units that have nothing else.")


def least_preferred(row: dict) -> bool:
    """Whether the row minimized its unit (`--direction min`: the objective starts with 'min ')."""
    return str(row.get("objective") or "").startswith("min ")


def strength(row: dict) -> float:
    """How strongly the row stands for its unit under the rule: the final activation, negated for a
    least-preferred input; -inf when missing or NaN."""
    v = row.get("activation_final")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return -math.inf
    return -float(v) if least_preferred(row) else float(v)


def representative(rows: Sequence[dict]) -> dict | None:
    """The row the grid shows for one unit (the module's rule); None when `rows` is empty."""
    if not rows:
        return None
    maximizing = [r for r in rows if not least_preferred(r)]
    from_noise = [r for r in maximizing if start_of(r) != "photo"]
    pool = from_noise or maximizing or list(rows)
    return min(pool, key=lambda r: (-strength(r), r.get("seed") if r.get("seed") is not None else math.inf,
                                    str(r.get("method")), str(r.get("hyperparams")), str(r.get("image"))))
