"""Diversity: the seeds of one unit optimized together, pushed apart in their feature statistics.

Lucid's diversity objective (Olah et al. 2017, "Diversity"): each image's style is the Gram matrix of a
layer's activations (channels x channels, over positions), and the images of a group are penalized for the
cosine similarity of their Gram matrices. Here the groups are a unit's seeds within a batch (`groups_of`):
row i's penalty is `weight * scale / 2 * mean_j cos(G_i, G_j)` over the other rows j of its group, where
`scale` is the group's mean |objective| at that step (detached). The scale makes the weight relative: at
weight 1, seeds that share their style exactly give up half their activation, so `--diversity 1` means the
same on any net and any unit (Lucid's absolute 1e2 fits InceptionV1's mixed4a, nothing else). Measured on
MobileNetV2 logits (lucid style, 4 seeds; README): weight 1 keeps about 90 % of the activation and more than
doubles the distance between the seeds' deep features. Rows in
different groups never meet, so a unit's images depend on its own group only, whatever else is in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Hashable, Mapping, Sequence

import torch

from models.errors import UserInputError

if TYPE_CHECKING:
    from models.layers import LayerInfo

__all__ = ["DiversitySpec", "Diversity", "groups_of", "gram_cosine", "default_layer"]


@dataclass(frozen=True)
class DiversitySpec:
    """`--diversity WEIGHT[:LAYER]`: the weight and the layer whose Gram matrices are compared (None: the
    target layer when it has spatial maps, else the deepest layer before it that has them)."""

    weight: float
    layer: str | None = None

    def __post_init__(self):
        if not self.weight > 0:
            raise UserInputError(f"--diversity {self.weight} must be a positive weight (1 is a sensible strength)")

    def hyperparams(self, seeds: int) -> dict:
        """What the key records: the weight, the layer ('auto': by the rule above) and the group size (a
        seed's image depends on how many seeds share its group)."""
        return {"diversity": {"weight": self.weight, "layer": self.layer or "auto", "group": seeds}}


def default_layer(target: str, layers: Mapping[str, "LayerInfo"]) -> str:
    """The Gram layer for units of `target`: itself when its output has spatial maps ([C, H, W]), else the
    layer with them that runs last before it (models/layers.LayerInfo.order)."""
    if len(layers[target].shape) == 3:
        return target
    below = [i for i in layers.values() if i.order < layers[target].order and len(i.shape) == 3]
    if below:
        return max(below, key=lambda i: i.order).name
    raise UserInputError(f"--diversity needs a layer with spatial maps at or below {target!r}; name one with "
                         "--diversity WEIGHT:LAYER")


def groups_of(identities: Sequence[Hashable]) -> list[list[int]]:
    """Rows with equal identity (a unit) form one group, in first-seen order."""
    groups: dict[Hashable, list[int]] = {}
    for i, ident in enumerate(identities):
        groups.setdefault(ident, []).append(i)
    return list(groups.values())


def gram_cosine(acts: torch.Tensor, groups: Sequence[Sequence[int] | torch.Tensor]) -> torch.Tensor:
    """[B, C, H, W] -> [B]: each row's mean cosine similarity between its Gram matrix and those of the other
    rows of its group (0 for a row alone in its group). A group is a list of rows or, to spare a host-to-device
    copy per call, a long tensor of them on the activations' device.

    With F_i the [C, HW] activations of row i and G_i = F_i F_i^T, the inner product <G_i, G_j> equals
    ||F_i^T F_j||^2: a deep layer with more channels than positions (1280 x 7 x 7) is compared through the
    [HW, HW] products, the same value for a fraction of the C x C Gram matrices' cost (which doubled the
    MobileNetV2 step); a layer with more positions than channels through the Gram matrices themselves."""
    f = acts.float().flatten(2)  # [B, C, HW]
    out = torch.zeros(acts.shape[0], dtype=f.dtype, device=f.device)
    for rows in groups:
        if len(rows) < 2:
            continue
        idx = rows if isinstance(rows, torch.Tensor) else torch.tensor(rows, device=f.device)
        g = f.index_select(0, idx)
        if g.shape[1] <= g.shape[2]:
            gram = torch.bmm(g, g.transpose(1, 2)).flatten(1)
            inner = gram @ gram.T
        else:
            inner = torch.einsum("icn,jcm->ijnm", g, g).pow(2).sum((2, 3))
        norm = inner.diagonal().clamp_min(1e-20).sqrt()
        sim = inner / (norm[:, None] * norm[None, :])
        n = len(rows)
        out = out.index_copy(0, idx, (sim.sum(1) - sim.diagonal()) / (n - 1))
    return out


class Diversity:
    """The loop's per-row penalty (tasks/loop.optimize's `diversity`): (captured acts, the rows' objective
    values) -> [B]. Its index tensors are made on the activations' device at the first call and reused, so
    later steps copy nothing to the device and read nothing back."""

    def __init__(self, weight: float, layer: str, groups: Sequence[Sequence[int]]):
        self.weight, self.layer, self.groups = weight, layer, [list(g) for g in groups]
        group_of = [0] * sum(map(len, self.groups))
        for g, rows in enumerate(self.groups):
            for row in rows:
                group_of[row] = g
        self._group_of = group_of
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]] = {}

    def _indices(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(each row's group [B], each group's size [G] as floats, each group's rows) on `device`."""
        if device not in self._on:
            self._on[device] = (torch.tensor(self._group_of, dtype=torch.long, device=device),
                                torch.tensor([float(len(g)) for g in self.groups], device=device),
                                [torch.tensor(g, dtype=torch.long, device=device) for g in self.groups])
        return self._on[device]

    def __call__(self, acts: Mapping[str, torch.Tensor], objective: torch.Tensor) -> torch.Tensor:
        group_of, sizes, rows = self._indices(objective.device)
        magnitude = objective.detach().abs()
        sums = torch.zeros(len(self.groups), dtype=magnitude.dtype, device=magnitude.device)
        sums = sums.index_add(0, group_of, magnitude)
        scale = (sums / sizes.to(magnitude.dtype))[group_of]  # each row's group mean |objective|
        return self.weight / 2 * scale * gram_cosine(acts[self.layer], rows).to(objective.dtype)
