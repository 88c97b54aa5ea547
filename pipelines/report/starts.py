"""How a synthesized image started, read from its `units/` row's `hyperparams` (the key's canonical JSON):

  - "noise": an independent seed, optimized from random noise on its own (the ordinary atlas run);
  - "diverse": from noise, with the unit's seeds optimized as one group under a diversity penalty
    (`--diversity W`: `"diversity": {"weight": W, "layer": ..., "group": N}`, tasks/diversity.py);
  - "photo": from a real photo (`--init URI`: `"init": [digest per seed]`, pipelines/init_photos.py), a
    caricature; seed s started from the photo whose digest is `init[s]`, stored as `inits/<digest>.png`.
Text that is not a JSON object reads as {} (a "noise" start); parsed texts are cached, never to be mutated.
"""

from __future__ import annotations

import json
from functools import lru_cache

__all__ = ["params_of", "start_of", "diversity_of", "init_digest", "without_diversity"]


@lru_cache(maxsize=4096)
def _parse(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def params_of(row: dict) -> dict:
    """The row's hyperparameters as a dict (shared: do not mutate)."""
    return _parse(str(row.get("hyperparams") or ""))


def start_of(row: dict) -> str:
    """'photo', 'diverse' or 'noise' (the module docstring)."""
    params = params_of(row)
    if params.get("init"):
        return "photo"
    return "diverse" if isinstance(params.get("diversity"), dict) else "noise"


def diversity_of(row: dict) -> dict | None:
    """The `diversity` entry ({"weight", "layer", "group"}) of a 'diverse' row, else None."""
    value = params_of(row).get("diversity")
    return value if isinstance(value, dict) else None


def init_digest(row: dict) -> str | None:
    """The digest of the photo the row's seed started from; None when the row has none or its seed is out
    of the list's range."""
    digests = params_of(row).get("init")
    seed = row.get("seed")
    if not isinstance(digests, list) or not isinstance(seed, int) or not 0 <= seed < len(digests):
        return None
    return str(digests[seed])


def without_diversity(row: dict) -> dict:
    """The row's hyperparameters less the `diversity` entry: what an independent-seeds run of the same
    settings records."""
    return {k: v for k, v in params_of(row).items() if k != "diversity"}
