"""Frame-order analysis: does a unit's score depend on the order of the frames it is shown?

The DGN-AM supplement found that LRCN barely changes its decision when a real video's frames are shuffled.
`order_scores` makes that a number for any clips and any per-clip score: the score as given, with the
frames reversed, and with the frames shuffled by `shuffles` fixed permutations (seeded; the same permutations
for every clip, so the result of a clip never depends on the other clips in its batch). A model that needs
frame order (direction of motion) loses score under both; a model that does not, keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["OrderScores", "permutations", "order_scores"]


@dataclass
class OrderScores:
    """Per clip: `score` [B] as given, `reversed` [B], `shuffled` [B, K] (one column per permutation), and
    the same for the arg-max of the model's decision when the caller scores one (`top*`, else None)."""

    score: torch.Tensor
    reversed: torch.Tensor
    shuffled: torch.Tensor
    top: torch.Tensor | None = None
    top_reversed: torch.Tensor | None = None
    top_shuffled: torch.Tensor | None = None

    def row(self, i: int) -> dict:
        """Clip i's numbers as plain floats: score, reversed, shuffled mean / std / min, and decisions."""
        sh = self.shuffled[i].double()
        out = {"score": float(self.score[i]), "score_reversed": float(self.reversed[i]),
               "score_shuffled_mean": float(sh.mean()) if sh.numel() else float("nan"),
               "score_shuffled_std": float(sh.std(unbiased=False)) if sh.numel() else float("nan"),
               "score_shuffled_min": float(sh.min()) if sh.numel() else float("nan")}
        if self.top is not None:
            same = (self.top_shuffled[i] == self.top[i]).double()
            out.update(predicted=int(self.top[i]), predicted_reversed=int(self.top_reversed[i]),
                       predicted_shuffled=[int(k) for k in self.top_shuffled[i]],
                       predicted_shuffled_same=float(same.mean()) if same.numel() else float("nan"))
        return out


def permutations(frames: int, shuffles: int, seed: int = 0) -> list[torch.Tensor]:
    """`shuffles` random orders of `frames` frames from one seeded generator (never the identity when another
    order exists)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(shuffles):
        perm = torch.randperm(frames, generator=g)
        while frames > 1 and bool((perm == torch.arange(frames)).all()):
            perm = torch.randperm(frames, generator=g)
        out.append(perm)
    return out


@torch.no_grad()
def order_scores(score: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
                 clips: torch.Tensor, shuffles: int, seed: int = 0) -> OrderScores:
    """Score `clips` [B, T, ...] as given, reversed and under `shuffles` permutations.

    `score(clips)` returns [B] scores, or ([B] scores, [B, C] decision scores) to also compare arg-maxes."""
    t = clips.shape[1]
    variants = [clips, clips.flip(1)] + [clips[:, p.to(clips.device)] for p in permutations(t, shuffles, seed)]
    scores, tops = [], []
    for v in variants:
        out = score(v)
        s, d = out if isinstance(out, tuple) else (out, None)
        scores.append(s.detach().float().cpu())
        tops.append(d.argmax(-1).cpu() if d is not None else None)
    shuffled = torch.stack(scores[2:], 1) if shuffles else scores[0].new_zeros(scores[0].shape[0], 0)
    result = OrderScores(scores[0], scores[1], shuffled)
    if tops[0] is not None:
        result.top, result.top_reversed = tops[0], tops[1]
        result.top_shuffled = torch.stack(tops[2:], 1) if shuffles else tops[0].new_zeros(tops[0].shape[0], 0)
    return result
