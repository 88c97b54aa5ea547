"""Unit addressing: `(layer, channel, y, x)`, and the `--units` mini-language.

SPEC is a comma-separated list of items: `all`, a half-open range `0:64`, a channel `17`, or a channel
pinned to a position `12@6,6` (row 6, column 6 of a map, or of a token layer's patch grid) or to a prefix
token by name `12@cls` (models/layout.py: stored as row PREFIX_ROW, column = the token's index). Units of a
map or token layer without a position default to the centre position (H // 2, W // 2), a patch token for
transformers; vector units have no position (y = x = None). A unit is always a feature channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UserInputError
from .layers import LayerInfo
from .layout import PREFIX_ROW, prefix_index, prefix_name

__all__ = ["Unit", "UnitSelection", "parse_units", "resolve_units", "position_text"]

_ITEM = re.compile(r"\s*(?:(?P<all>all)|(?P<lo>\d+)\s*:\s*(?P<hi>\d+)|(?P<ch>\d+)"
                   r"(?:\s*@\s*(?:(?P<y>\d+)\s*,\s*(?P<x>\d+)|(?P<tok>[A-Za-z]\w*)))?)\s*(?:,|$)")
_EXAMPLES = "use e.g. 'all', '0:64', '3,17,42', '12@6,6' or '12@cls'"


@dataclass(frozen=True, order=True)
class Unit:
    layer: str
    channel: int
    y: int | None = None
    x: int | None = None

    def __str__(self) -> str:
        return f"{self.layer}:{self.channel}{position_text(self.y, self.x)}"


def position_text(y: int | None, x: int | None) -> str:
    """`@6,6`, `@cls` (a prefix token) or '' (no position): how a unit's position reads in specs and captions."""
    if y is None:
        return ""
    return f"@{prefix_name(x)}" if y == PREFIX_ROW else f"@{y},{x}"


@dataclass(frozen=True)
class UnitSelection:
    """One parsed item of SPEC: channels [lo, hi) or `all`, with an optional pinned position."""

    lo: int = 0
    hi: int | None = None  # None: up to the layer's unit count
    y: int | None = None
    x: int | None = None
    token: str | None = None  # a prefix token's name (`cls`) instead of (y, x)


def parse_units(spec: str) -> list[UnitSelection]:
    """Parse SPEC; a malformed spec raises UserInputError quoting the part that did not parse."""
    text = spec.strip()
    if not text:
        raise UserInputError(f"empty --units; {_EXAMPLES}")
    out: list[UnitSelection] = []
    pos = 0
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if not m or m.end() == pos:
            raise UserInputError(f"malformed --units {spec!r} at {text[pos:]!r}; {_EXAMPLES}")
        if m["all"]:
            out.append(UnitSelection())
        elif m["lo"] is not None:
            lo, hi = int(m["lo"]), int(m["hi"])
            if hi <= lo:
                raise UserInputError(f"empty unit range {lo}:{hi} in --units {spec!r}; the end is exclusive, "
                                     f"e.g. {lo}:{lo + 1}")
            out.append(UnitSelection(lo, hi))
        else:
            ch = int(m["ch"])
            y = int(m["y"]) if m["y"] is not None else None
            x = int(m["x"]) if m["x"] is not None else None
            out.append(UnitSelection(ch, ch + 1, y, x, m["tok"]))
        pos = m.end()
    return out


def resolve_units(selections: list[UnitSelection], info: LayerInfo, model_name: str) -> list[Unit]:
    """Expand selections against one layer, checking channel and position bounds; order kept, no repeats."""
    n = info.units
    units: list[Unit] = []
    for sel in selections:
        hi = n if sel.hi is None else sel.hi
        if sel.lo >= n or hi > n:
            bad = sel.lo if sel.lo >= n else hi - 1
            raise UserInputError(f"unit {bad} out of range for layer {info.name!r}, which has {n} units "
                                 f"(0..{n - 1}); see 'neuron-atlas layers --model {model_name}'")
        for ch in range(sel.lo, hi):
            units.append(Unit(info.name, ch, *_position(sel, info)))
    return list(dict.fromkeys(units))


def _position(sel: UnitSelection, info: LayerInfo) -> tuple[int | None, int | None]:
    if sel.token is not None:
        k = prefix_index(sel.token)
        names = [prefix_name(i) for i in range(info.prefix)]
        if k is None or k >= info.prefix:
            have = f"its prefix tokens are {', '.join(names)}" if names else "it has no prefix tokens"
            raise UserInputError(f"layer {info.name!r} has no token {sel.token!r} ({have}; positions "
                                 f"{info.positions}); use '@ROW,COL' for a patch token")
        return PREFIX_ROW, k
    spatial = info.spatial
    if spatial is None:
        if sel.y is not None:
            raise UserInputError(f"layer {info.name!r} has no spatial positions (output {list(info.shape)}); "
                                 f"drop the '@{sel.y},{sel.x}'")
        return None, None
    h, w = spatial
    if sel.y is None:
        return h // 2, w // 2
    if not (0 <= sel.y < h and 0 <= sel.x < w):
        raise UserInputError(f"position @{sel.y},{sel.x} out of range for layer {info.name!r}, whose maps are "
                             f"{h}x{w} (rows 0..{h - 1}, columns 0..{w - 1})")
    return sel.y, sel.x
