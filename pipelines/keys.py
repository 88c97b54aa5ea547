"""Work-item keys and the object names derived from them.

A key is (model, snapshot, layer, unit, y, x, seed, method, hyperparams). Every output name is a pure
function of the key (or of a batch's keys), so a retried or resumed run overwrites, never duplicates.
User strings are sanitized before they become path segments: no '..', no absolute paths, no separators.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import astuple, dataclass
from typing import Iterable

from models.errors import UserInputError
from models.layout import PREFIX_ROW, prefix_name

__all__ = ["ItemKey", "position_segment", "hyperparams_json", "safe_segment", "batch_digest", "KEY_COLUMNS"]

KEY_COLUMNS = ("model", "snapshot", "layer", "unit", "y", "x", "seed", "method", "hyperparams")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_segment(text: str, what: str = "name") -> str:
    """`text` as one path segment: unsafe characters become '_'; empty, '.' and '..' are refused."""
    seg = _UNSAFE.sub("_", str(text))
    if seg in ("", ".", "..") or seg.startswith(".."):
        raise UserInputError(f"{what} {text!r} cannot name an output path; use letters, digits, '.', '_' or '-'")
    return seg


def position_segment(y: int | None, x: int | None) -> str:
    """A unit's position in a file name: `_<y>_<x>`, `_<token>` for a prefix token (`_cls`), '' for none."""
    if y is None:
        return ""
    return f"_{prefix_name(x)}" if y == PREFIX_ROW else f"_{y}_{x}"


def hyperparams_json(params: dict) -> str:
    """Canonical JSON (sorted keys, compact): equal settings give equal text, hence equal keys."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, order=True)
class ItemKey:
    model: str
    snapshot: str
    layer: str
    unit: int
    y: int | None
    x: int | None
    seed: int
    method: str
    hyperparams: str

    def as_tuple(self) -> tuple:
        return astuple(self)

    @property
    def hp_digest(self) -> str:
        return hashlib.sha256(self.hyperparams.encode()).hexdigest()[:8]

    @property
    def image_path(self) -> str:
        """images/<model>/<snapshot>/<layer>/<unit>[_<y>_<x>|_cls]_s<seed>_<method>-<hp8>.png, relative to --out."""
        pos = position_segment(self.y, self.x)
        name = f"{self.unit}{pos}_s{self.seed}_{self.method}-{self.hp_digest}.png"
        return "/".join(["images", safe_segment(self.model, "model"), safe_segment(self.snapshot, "snapshot"),
                         safe_segment(self.layer, "layer"), name])

    def partition(self) -> str:
        """Hive partition directory under a dataset root: model=.../snapshot=.../layer=..."""
        return (f"model={safe_segment(self.model, 'model')}/snapshot={safe_segment(self.snapshot, 'snapshot')}"
                f"/layer={safe_segment(self.layer, 'layer')}")


def batch_digest(keys: Iterable[ItemKey]) -> str:
    """A digest of a set of keys: the Parquet part name of the batch that wrote exactly those keys."""
    h = hashlib.sha256()
    for k in sorted(keys):
        h.update(repr(k.as_tuple()).encode())
    return h.hexdigest()[:20]
