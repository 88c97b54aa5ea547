"""Preferred videos: the video parameterization, time pooling and the temporal smoothness penalty.

A video item is T frames, each with its own parameters: one generator code per frame for DGN-AM (the DGN-AM
supplement's LRCN setting) or one image per frame for image-space AM. `video_parameterization` wraps any
per-frame Parameterization (tasks/dgn.py, tasks/image_am.py) into one whose rows are videos, so the ONE
optimization loop (tasks/loop.py) runs it unchanged:
- params `[B, T, ...]`; frame t of the item with seed s starts from its own seed `frame_seed(s, t)`, so
  frames start independently and an item's start depends on its seed alone;
- render -> the frames `[B*T, 3, H, W]` (row b*T + t), frame t drawn from its own parameters only; the
  generator runs `chunk` frames at a time under activation checkpointing when gradients are on; `source`,
  where the per-frame parameterization has one, the frames as drawn before upsampling, the same way;
- penalty -> the per-frame penalty summed over frames, plus `smoothness` x the mean squared change between
  consecutive frames ([0, 1] pixels, averaged over pixels and frame pairs); off (0) by default, as in the paper;
- project -> the per-frame projection (code clipping and decay, pixel regularizers) on every frame.
Normalized ascent divides a video's step by the mean |gradient| over all its frames (a row is a video).

Time pooling (`pool_time`): a unit's activation on a clip is its per-frame activation averaged over the
frames (`mean`, as LRCN averages its per-frame predictions) or taken at the last frame (`last`); a clip-level
layer (one value per clip) is itself under both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch.utils.checkpoint import checkpoint

from models.errors import UserInputError

from ..loop import Parameterization

__all__ = ["VideoConfig", "TIME_POOLS", "frame_seed", "frame_seeds", "video_parameterization", "pool_time",
           "temporal_change"]

TIME_POOLS = ("mean", "last")


@dataclass(frozen=True)
class VideoConfig:
    """Video settings. `frames`, `time_pool`, `smoothness`, `shuffles`, `order_seed` and `fps` change what a
    run writes, so they are hyperparameters (part of every key); `chunk` and `checkpoint` only trade memory
    for time and are not."""

    frames: int = 160
    time_pool: str = "mean"
    smoothness: float = 0.0
    shuffles: int = 8  # frame-order analysis: shuffled permutations per video
    order_seed: int = 0
    fps: float = 25.0
    chunk: int = 16  # frames per checkpointed chunk of the per-frame CNN and the generator
    checkpoint: bool = True

    def __post_init__(self):
        if self.frames < 1:
            raise UserInputError(f"--frames {self.frames} must be at least 1")
        if self.time_pool not in TIME_POOLS:
            raise UserInputError(f"unknown --time-pool {self.time_pool!r}; use one of {', '.join(TIME_POOLS)}")
        if self.smoothness < 0:
            raise UserInputError(f"--temporal-smoothness {self.smoothness:g} must be at least 0")
        if self.shuffles < 0:
            raise UserInputError(f"--shuffles {self.shuffles} must be at least 0")
        if not self.fps > 0:
            raise UserInputError(f"--fps {self.fps:g} must be above 0")
        if self.chunk < 1:
            raise UserInputError(f"--chunk-frames {self.chunk} must be at least 1")

    def hyperparams(self) -> dict:
        hp = {"frames": self.frames, "time_pool": self.time_pool, "shuffles": self.shuffles, "fps": self.fps}
        if self.smoothness:
            hp["temporal_smoothness"] = self.smoothness
        if self.order_seed:
            hp["order_seed"] = self.order_seed
        return hp


def frame_seed(seed: int, frame: int) -> int:
    """The initialisation seed of frame `frame` of the item with seed `seed` (distinct for frames < 1,000,033)."""
    return (seed * 1_000_033 + frame) % (2 ** 63)


def frame_seeds(seeds: list[int], frames: int) -> list[int]:
    """Per-frame seeds of a batch, row b*T + t."""
    return [frame_seed(s, t) for s in seeds for t in range(frames)]


def temporal_change(frames: torch.Tensor) -> torch.Tensor:
    """[B, T, 3, H, W] -> [B]: mean squared change between consecutive frames (0 for one frame)."""
    if frames.shape[1] < 2:
        return frames.new_zeros(frames.shape[0])
    return (frames[:, 1:] - frames[:, :-1]).pow(2).flatten(2).mean(2).mean(1)


def video_parameterization(make_frames: Callable[[list[int]], Parameterization], seeds: list[int], frames: int,
                           *, smoothness: float = 0.0, chunk: int | None = None,
                           use_checkpoint: bool = False) -> Parameterization:
    """Wrap the per-frame parameterization `make_frames(frame seeds)` into one video per row; see the module
    docstring. `chunk` and `use_checkpoint` bound the generator's memory; they do not change the frames."""
    inner = make_frames(frame_seeds(seeds, frames))
    b, t = len(seeds), frames
    rest = tuple(inner.params.shape[1:])
    params = inner.params.detach().reshape(b, t, *rest).clone()
    last: dict = {}

    def flat(p: torch.Tensor) -> torch.Tensor:
        return p.reshape(b * t, *rest)

    def frames_of(draw: Callable[[torch.Tensor], torch.Tensor], p: torch.Tensor) -> torch.Tensor:
        rows = flat(p)
        if chunk and use_checkpoint and torch.is_grad_enabled() and rows.requires_grad and b * t > chunk:
            return torch.cat([checkpoint(draw, part, use_reentrant=False) for part in rows.split(chunk)])
        if chunk and b * t > chunk:
            return torch.cat([draw(part) for part in rows.split(chunk)])
        return draw(rows)

    def render(p: torch.Tensor) -> torch.Tensor:
        x = frames_of(inner.render, p)
        last.update(p=p, version=p._version, x=x)  # the loop renders, then asks for the penalty: reuse it
        return x

    source = None
    if inner.source is not None:  # frames drawn small (Lucid's fourier_size): the views sample them as drawn
        def source(p: torch.Tensor) -> torch.Tensor:
            return frames_of(inner.source, p)

    penalty = None
    if smoothness or inner.penalty is not None:
        def penalty(p: torch.Tensor) -> torch.Tensor:
            total = inner.penalty(flat(p)).view(b, t).sum(1) if inner.penalty is not None else 0.0
            if smoothness:
                same = last.get("p") is p and last.get("version") == p._version
                x = last["x"] if same else render(p)
                total = total + smoothness * temporal_change(x.view(b, t, *x.shape[1:]))
            return total

    project = None
    if inner.project is not None:
        def project(p: torch.Tensor, grad: torch.Tensor, step: int) -> None:
            inner.project(flat(p), flat(grad), step)

    return Parameterization(params, render, penalty, project, source)


def pool_time(acts: Mapping[str, torch.Tensor], mode: str) -> dict[str, torch.Tensor]:
    """{layer: [B, T, ...]} -> {layer: [B, ...]}: the mean over time, or the last time step."""
    if mode not in TIME_POOLS:
        raise ValueError(f"unknown time pool {mode!r}")
    return {k: (v.mean(1) if mode == "mean" else v[:, -1]) for k, v in acts.items()}
