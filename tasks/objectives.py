"""Objectives: small composable values mapping captured activations to one score per batch row.

An `Objective` wraps `acts -> Tensor[B]` and the set of layers it reads; it supports `+`, `-`, unary `-`,
`*` and `/` by a number, and carries a readable `description` that lands in the Parquet `objective` column
(after Lucid/Lucent's `wrap_objective`). `per_item` stacks one objective per batch row, which is how a
batch of different units is optimized together: row i's score depends only on row i's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

__all__ = ["Objective", "Acts", "unit", "per_item"]

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
    """Activation of one unit: channel `channel` of `layer`, at (y, x) for conv outputs."""
    pos = f" @{y},{x}" if y is not None else ""

    def fn(acts: Acts) -> torch.Tensor:
        a = acts[layer]
        return a[:, channel, y, x] if y is not None else a[:, channel]

    obj = Objective(fn, f"unit({layer}, {channel}{pos})", frozenset([layer]))
    object.__setattr__(obj, "_unit", (layer, channel, y, x))  # lets per_item gather in one op
    return obj


def per_item(objectives: Sequence[Objective]) -> Objective:
    """Row i of the batch is scored by objectives[i]; result has shape [len(objectives)].

    Plain unit objectives are gathered with one indexing op per layer; others run on their own row.
    """
    objectives = list(objectives)
    layers = frozenset().union(*(o.layers for o in objectives))
    units = [getattr(o, "_unit", None) for o in objectives]

    if all(u is not None for u in units):
        groups: dict[str, list[int]] = {}
        for i, u in enumerate(units):
            groups.setdefault(u[0], []).append(i)

        index_cache: dict[tuple, tuple[torch.Tensor, ...]] = {}

        def gather(acts: Acts) -> torch.Tensor:
            parts = []
            for layer, rows in groups.items():
                a = acts[layer]
                key = (layer, a.device)
                if key not in index_cache:
                    idx = [torch.tensor(rows, device=a.device),
                           torch.tensor([units[i][1] for i in rows], device=a.device)]
                    if a.dim() == 4:
                        idx += [torch.tensor([units[i][2] for i in rows], device=a.device),
                                torch.tensor([units[i][3] for i in rows], device=a.device)]
                    index_cache[key] = tuple(idx)
                parts.append((rows, a[index_cache[key]]))
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
