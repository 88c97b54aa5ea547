"""Objectives: small composable values mapping captured activations to one score per batch row.

An `Objective` wraps `acts -> Tensor[B]` and the set of layers it reads; it supports `+`, `-`, unary `-`,
`*` and `/` by a number, and carries a readable `description` that lands in the Parquet `objective` column
(after Lucid/Lucent's `wrap_objective`). `per_item` stacks one objective per batch row, which is how a
batch of different units is optimized together: row i's score depends only on row i's input. The factories'
objectives (and their negations) carry a `Term` describing them, so `per_item` scores a batch in a few
gathers, with the same values as row by row and, after its first call, no host-device copy or read-back.

Activations arrive channel-first whatever the net's layout (models/capture.py): a unit is `acts[layer][:, c]`
at `[y, x]` of a map or patch grid; a prefix token (row PREFIX_ROW, column k) is `acts[prefix_key(layer)][:, c, k]`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import torch

from models.layout import PREFIX_ROW, prefix_key
from models.units import position_text

__all__ = ["Objective", "Term", "Acts", "unit", "channel", "position_vector", "per_item", "softmax_unit", "blend",
           "ObjectiveSpec", "OBJECTIVE_KINDS"]

Acts = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Term:
    """What `per_item` can evaluate for many rows at once instead of row by row: a `unit` (channel at a
    position, or the channel itself without one), a `channel` mean, a `softmax` probability or a `blend` of
    two units at one position (`partner`, `gamma`), times `sign` (-1 for a negated objective)."""

    kind: str
    layer: str
    channel: int
    y: int | None = None
    x: int | None = None
    partner: int | None = None
    gamma: float = 0.0
    sign: float = 1.0


@dataclass(frozen=True)
class Objective:
    fn: Callable[[Acts], torch.Tensor]
    description: str
    layers: frozenset[str]
    term: Term | None = None  # set by the factories; lost by arithmetic other than negation

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def __add__(self, other: "Objective") -> "Objective":
        return Objective(lambda a: self(a) + other(a), f"{self.description} + {other.description}",
                         self.layers | other.layers)

    def __sub__(self, other: "Objective") -> "Objective":
        return Objective(lambda a: self(a) - other(a), f"{self.description} - {other.description}",
                         self.layers | other.layers)

    def __neg__(self) -> "Objective":
        term = None if self.term is None else replace(self.term, sign=-self.term.sign)
        return Objective(lambda a: -self(a), f"-({self.description})", self.layers, term)

    def __mul__(self, k: float) -> "Objective":
        return Objective(lambda a: self(a) * k, f"{k:g} * {self.description}", self.layers)

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> "Objective":
        return self * (1.0 / k)


def unit(layer: str, channel: int, y: int | None = None, x: int | None = None) -> Objective:
    """Activation of one unit: channel `channel` of `layer`, at (y, x) of a map or patch grid, or at prefix
    token x when y is PREFIX_ROW."""
    pos = " " + position_text(y, x) if y is not None else ""

    def fn(acts: Acts) -> torch.Tensor:
        if y == PREFIX_ROW:
            return acts[prefix_key(layer)][:, channel, x]
        a = acts[layer]
        return a[:, channel, y, x] if y is not None else a[:, channel]

    return Objective(fn, f"unit({layer}, {channel}{pos})", frozenset([layer]), Term("unit", layer, channel, y, x))


def position_vector(acts: Acts, layer: str, row: int, y: int | None, x: int | None) -> torch.Tensor:
    """Batch row `row`'s activation vector [C] of `layer` at a unit's position: a map's or patch grid's (y, x),
    a prefix token (y = PREFIX_ROW), or the mean over positions (patch tokens) for a unit without one."""
    if y == PREFIX_ROW:
        return acts[prefix_key(layer)][row, :, x]
    a = acts[layer][row]
    return a[:, y, x] if y is not None else a.reshape(a.shape[0], -1).mean(1)


def channel(layer: str, channel: int) -> Objective:
    """Mean over every position of channel `channel` of `layer` (Lucid's `channel`, what it draws for conv
    units): over a map's positions, over a token layer's patch tokens (not its prefix tokens); on a vector
    layer it is the unit's activation."""
    def fn(acts: Acts) -> torch.Tensor:
        a = acts[layer][:, channel]
        return a.flatten(1).mean(1) if a.dim() > 1 else a

    return Objective(fn, f"channel({layer}, {channel})", frozenset([layer]), Term("channel", layer, channel))


def per_item(objectives: Sequence[Objective]) -> Objective:
    """Row i of the batch is scored by objectives[i]; result has shape [len(objectives)].

    Objectives with a `Term` (unit, channel, softmax, blend, and their negations) are evaluated a group of rows
    at a time (rows of one kind, tensor, gamma and sign: a few gathers per group); any other objective runs on
    its own row. Index tensors are made on the activations' device at the first call and reused, so later
    calls copy nothing to the device.
    """
    objectives = list(objectives)
    layers = frozenset().union(*(o.layers for o in objectives))
    return Objective(_Batched(objectives), f"per_item[{len(objectives)}]", layers)


def _group_key(t: Term) -> tuple:
    """(computation, tensor key, how the position is indexed: None, "map" [y, x] or "prefix" [k], gamma, sign)."""
    kind = "pick" if t.kind in ("unit", "channel") else t.kind
    pinned = None if t.y is None or kind == "softmax" else "prefix" if t.y == PREFIX_ROW else "map"
    return (kind, prefix_key(t.layer) if pinned == "prefix" else t.layer, pinned,
            t.gamma if kind == "blend" else 0.0, t.sign)


class _Batched:
    """per_item's function: rows grouped by `_group_key` (a row without a term is a group of its own)."""

    def __init__(self, objectives: list[Objective]):
        self.objectives = objectives
        self.groups: dict[tuple, list[int]] = {}
        for i, o in enumerate(objectives):
            key = _group_key(o.term) if o.term is not None else ("row", i)
            self.groups.setdefault(key, []).append(i)
        order = [i for rows in self.groups.values() for i in rows]
        self.in_order = order == list(range(len(objectives)))
        self.inverse = [0] * len(order)  # row i's place among the groups' concatenated values
        for place, i in enumerate(order):
            self.inverse[i] = place
        self._on: dict[torch.device, tuple[list[tuple[torch.Tensor, ...]], torch.Tensor]] = {}

    def _indices(self, device: torch.device) -> tuple[list[tuple[torch.Tensor | None, ...]], torch.Tensor]:
        """Per group its `_group_indices` on `device` (() for a row of its own), and the inverse order."""
        if device not in self._on:
            per_group = [() if key[0] == "row" else
                         _group_indices(key, rows, [self.objectives[i].term for i in rows], device)
                         for key, rows in self.groups.items()]
            self._on[device] = per_group, torch.tensor(self.inverse, dtype=torch.long, device=device)
        return self._on[device]

    def __call__(self, acts: Acts) -> torch.Tensor:
        device = next(iter(acts.values())).device
        per_group, inverse = self._indices(device)
        parts = []
        for (key, rows), idx in zip(self.groups.items(), per_group):
            if key[0] == "row":
                i = rows[0]
                parts.append(self.objectives[i]({k: v[i:i + 1] for k, v in acts.items()}))
                continue
            vals = _evaluate(key[0], acts[key[1]], idx, key[3], len(rows) == len(self.objectives))
            parts.append(-vals if key[4] < 0 else vals)
        if len(parts) == 1 and self.in_order:
            return parts[0]
        out = torch.cat(parts)
        return out if self.in_order else out.index_select(0, inverse)


def _group_indices(key: tuple, rows: list[int], terms: list[Term], device: torch.device
                   ) -> tuple[torch.Tensor | None, ...]:
    """(rows, channels, partners (None but for a blend), *position: (y, x) of a map, (k,) of a prefix token)."""
    def index(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    pinned = key[2]
    pos = () if pinned is None else (index([t.x for t in terms]),) if pinned == "prefix" else (
        index([t.y for t in terms]), index([t.x for t in terms]))
    partners = index([t.partner for t in terms]) if key[0] == "blend" else None
    return (index(rows), index([t.channel for t in terms]), partners, *pos)


def _evaluate(kind: str, a: torch.Tensor, idx: tuple[torch.Tensor, ...], gamma: float, every_row: bool
              ) -> torch.Tensor:
    """One group's values [n] from its tensor `a` and index tensors (rows, channels, partners, *position)."""
    rows, channels, partners, *pos = idx

    def pick(ch: torch.Tensor) -> torch.Tensor:
        vals = a[(rows, ch, *pos)]
        return vals.flatten(1).mean(1) if vals.dim() > 1 else vals

    if kind == "pick":
        return pick(channels)
    if kind == "softmax":
        own = a if every_row else a.index_select(0, rows)
        return torch.softmax(own.flatten(1).float(), 1).gather(1, channels[:, None])[:, 0]
    va, vb = pick(channels), pick(partners)  # blend, as `blend` computes it
    return (va + vb) - (va - vb) ** 2 * gamma


def softmax_unit(layer: str, channel: int) -> Objective:
    """The class probability softmax(layer)[channel] (for a logit layer), instead of the logit."""
    def fn(acts: Acts) -> torch.Tensor:
        return torch.softmax(acts[layer].flatten(1).float(), 1)[:, channel]
    return Objective(fn, f"softmax({layer})[{channel}]", frozenset([layer]), Term("softmax", layer, channel))


def blend(a: Objective, b: Objective, gamma: float) -> Objective:
    """a + b - gamma * (a - b)^2: both units high and about equal (DGN-AM supplement, two-unit blends)."""
    gap = Objective(lambda acts: (a(acts) - b(acts)) ** 2, f"({a.description} - {b.description})^2",
                    a.layers | b.layers)
    out = a + b - gap * gamma
    ta, tb = a.term, b.term
    if ta is not None and tb is not None and ta.kind == tb.kind == "unit" and ta.sign == tb.sign == 1 \
            and (ta.layer, ta.y, ta.x) == (tb.layer, tb.y, tb.x):
        out = replace(out, term=Term("blend", ta.layer, ta.channel, ta.y, ta.x, tb.channel, gamma))
    return out


OBJECTIVE_KINDS = ("unit", "channel", "softmax", "blend")


@dataclass(frozen=True)
class ObjectiveSpec:
    """What an atlas item maximizes for its unit: `unit` (the activation at its position), `channel` (the
    spatial mean of its channel; its key has no position), `softmax` (the class probability), or `blend` with
    a partner channel of the same layer; `direction="min"` minimizes it (least-preferred inputs). Parsed from
    --objective unit | channel | softmax | blend:A,B:GAMMA and --direction."""

    kind: str = "unit"
    partner: int | None = None  # blend: the second channel
    gamma: float = 0.0
    direction: str = "max"

    def __post_init__(self):
        if self.kind not in OBJECTIVE_KINDS or self.direction not in ("max", "min"):
            raise ValueError(f"bad objective {self.kind!r} / direction {self.direction!r}")
        if self.kind == "blend" and self.partner is None:
            raise ValueError("a blend needs a partner channel")

    def _base(self, layer: str, ch: int, y: int | None, x: int | None) -> Objective:
        if self.kind == "softmax":
            return softmax_unit(layer, ch)
        if self.kind == "channel":
            return channel(layer, ch)
        if self.kind == "blend":
            return blend(unit(layer, ch, y, x), unit(layer, self.partner, y, x), self.gamma)
        return unit(layer, ch, y, x)

    def build(self, layer: str, channel: int, y: int | None = None, x: int | None = None) -> Objective:
        """The objective the loop maximizes (negated for direction min)."""
        obj = self._base(layer, channel, y, x)
        return -obj if self.direction == "min" else obj

    def describe(self, layer: str, channel: int, y: int | None = None, x: int | None = None) -> str:
        """The `objective` column: what the reported activations measure, with 'min ' for direction min."""
        text = self._base(layer, channel, y, x).description
        return f"min {text}" if self.direction == "min" else text

    @property
    def sign(self) -> float:
        """Multiplying the optimized value by this gives the reported one (the objective itself)."""
        return -1.0 if self.direction == "min" else 1.0

    def hyperparams(self) -> dict:
        return {} if self == ObjectiveSpec() else {"objective": self.kind, "partner": self.partner,
                                                  "gamma": self.gamma, "direction": self.direction}
