"""Objectives: small composable values mapping captured activations to one score per batch row.

An `Objective` wraps `acts -> Tensor[B]` and the set of layers it reads; it supports `+`, `-`, unary `-`,
`*` and `/` by a number, and carries a readable `description` that lands in the Parquet `objective` column
(after Lucid/Lucent's `wrap_objective`). `per_item` stacks one objective per batch row, which is how a
batch of different units is optimized together: row i's score depends only on row i's input.

Activations arrive channel-first whatever the net's layout (models/capture.py): a unit is `acts[layer][:, c]`
at `[y, x]` of a map or patch grid; a prefix token (row PREFIX_ROW, column k) is `acts[prefix_key(layer)][:, c, k]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from models.layout import PREFIX_ROW, prefix_key
from models.units import position_text

__all__ = ["Objective", "Acts", "unit", "channel", "position_vector", "per_item", "softmax_unit", "blend",
           "ObjectiveSpec", "OBJECTIVE_KINDS"]

Acts = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Objective:
    fn: Callable[[Acts], torch.Tensor]
    description: str
    layers: frozenset[str]

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    def __add__(self, other: "Objective") -> "Objective":
        return Objective(lambda a: self(a) + other(a), f"{self.description} + {other.description}",
                         self.layers | other.layers)

    def __sub__(self, other: "Objective") -> "Objective":
        return Objective(lambda a: self(a) - other(a), f"{self.description} - {other.description}",
                         self.layers | other.layers)

    def __neg__(self) -> "Objective":
        return Objective(lambda a: -self(a), f"-({self.description})", self.layers)

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

    obj = Objective(fn, f"unit({layer}, {channel}{pos})", frozenset([layer]))
    object.__setattr__(obj, "_unit", (layer, channel, y, x))  # lets per_item gather in one op
    return obj


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

    obj = Objective(fn, f"channel({layer}, {channel})", frozenset([layer]))
    object.__setattr__(obj, "_unit", (layer, channel, None, None))
    return obj


def per_item(objectives: Sequence[Objective]) -> Objective:
    """Row i of the batch is scored by objectives[i]; result has shape [len(objectives)].

    Plain unit and channel objectives are gathered with one indexing op per layer; others run on their own row.
    """
    objectives = list(objectives)
    layers = frozenset().union(*(o.layers for o in objectives))
    units = [getattr(o, "_unit", None) for o in objectives]

    if all(u is not None for u in units):
        # (tensor key, how the position is indexed: None, "map" [y, x] or "prefix" [k]) -> rows
        groups: dict[tuple[str, str | None], list[int]] = {}
        for i, u in enumerate(units):
            kind = None if u[2] is None else "prefix" if u[2] == PREFIX_ROW else "map"
            groups.setdefault((prefix_key(u[0]) if kind == "prefix" else u[0], kind), []).append(i)

        index_cache: dict[tuple, tuple[torch.Tensor, ...]] = {}

        def gather(acts: Acts) -> torch.Tensor:
            parts = []
            for (layer, pinned), rows in groups.items():
                a = acts[layer]
                key = (layer, pinned, a.device)
                if key not in index_cache:
                    idx = [torch.tensor(rows, device=a.device),
                           torch.tensor([units[i][1] for i in rows], device=a.device)]
                    if pinned == "map":
                        idx += [torch.tensor([units[i][2] for i in rows], device=a.device),
                                torch.tensor([units[i][3] for i in rows], device=a.device)]
                    elif pinned == "prefix":
                        idx.append(torch.tensor([units[i][3] for i in rows], device=a.device))
                    index_cache[key] = tuple(idx)
                vals = a[index_cache[key]]
                parts.append((rows, vals.flatten(1).mean(1) if vals.dim() > 1 else vals))
            if len(parts) == 1:
                return parts[0][1]
            out = torch.empty(len(objectives), dtype=parts[0][1].dtype, device=parts[0][1].device)
            for rows, vals in parts:
                out[torch.tensor(rows, device=out.device)] = vals
            return out

        fn = gather
    else:
        def fn(acts: Acts) -> torch.Tensor:
            return torch.cat([o({k: v[i:i + 1] for k, v in acts.items()}) for i, o in enumerate(objectives)])

    return Objective(fn, f"per_item[{len(objectives)}]", layers)


def softmax_unit(layer: str, channel: int) -> Objective:
    """The class probability softmax(layer)[channel] (for a logit layer), instead of the logit."""
    def fn(acts: Acts) -> torch.Tensor:
        return torch.softmax(acts[layer].flatten(1).float(), 1)[:, channel]
    return Objective(fn, f"softmax({layer})[{channel}]", frozenset([layer]))


def blend(a: Objective, b: Objective, gamma: float) -> Objective:
    """a + b - gamma * (a - b)^2: both units high and about equal (DGN-AM supplement, two-unit blends)."""
    gap = Objective(lambda acts: (a(acts) - b(acts)) ** 2, f"({a.description} - {b.description})^2",
                    a.layers | b.layers)
    return a + b - gap * gamma


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
