"""Supervised training of a small video classifier on procedural clips (tasks/video/activities.py), for the demo.

Every step draws a fresh batch of clips from its own seed (an endless, never repeated training set, so the
small models cannot memorize it), normalizes each frame with the model's preprocessing, and takes one Adam
step on the cross-entropy of the clip's score: the model's `[B, C]` output, or the mean over frames of a
`[B, T, C]` output (LRCN's averaging). `accuracy` scores held-out clips the same way. Pure tensors in,
a trained module and numbers out.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .activities import Clips, make_clips

__all__ = ["clip_logits", "train_video_classifier", "accuracy", "first_classes"]


def clip_logits(net: nn.Module, clips01: torch.Tensor, normalize: nn.Module) -> torch.Tensor:
    """[B, T, 3, H, W] in [0, 1] -> [B, C]: the clip score (per-frame scores averaged)."""
    b, t = clips01.shape[:2]
    x = normalize(clips01.flatten(0, 1)).reshape(clips01.shape)
    out = net(x)
    return out.mean(1) if out.dim() == 3 else out


def first_classes(data: Clips, label: str, classes: int | None, n: int) -> Clips:
    """The first `n` clips whose `label` is below `classes` (all clips when None)."""
    if classes is None:
        return data
    keep = (getattr(data, label) < classes).nonzero().flatten()[:n]
    return Clips(data.clips[keep], data.motion[keep], data.shape[keep])


def train_video_classifier(net: nn.Module, label: str, normalize: nn.Module, *, steps: int = 400,
                           batch: int = 32, lr: float = 3e-3, frames: int = 16, size: int = 32, seed: int = 0,
                           classes: int | None = None, log: Callable[[str], None] | None = None) -> list[dict]:
    """Train `net` in place on clips labelled by `label` ('motion' or 'shape'), only those of the first
    `classes` labels when given (e.g. 2: left and right); returns the loss history."""
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    history, t0 = [], time.perf_counter()
    for step in range(steps):
        draw = batch if classes is None else batch * 8 // classes
        data = first_classes(make_clips(draw, seed * 1_000_003 + step, frames, size), label, classes, batch)
        target = getattr(data, label)
        logits = clip_logits(net, data.clips, normalize)
        loss = F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        acc = (logits.argmax(1) == target).float().mean().item()
        history.append({"step": step, "loss": loss.item(), "accuracy": acc})
        if log is not None and (step % 50 == 0 or step == steps - 1):
            recent = history[-50:]
            log(f"  step {step + 1}/{steps}: loss {sum(h['loss'] for h in recent) / len(recent):.3f}, "
                f"accuracy {sum(h['accuracy'] for h in recent) / len(recent):.2f} ({time.perf_counter() - t0:.0f} s)")
    net.eval()
    return history


@torch.no_grad()
def accuracy(net: nn.Module, data: Clips, label: str, normalize: nn.Module, order: str = "given",
             seed: int = 0) -> float:
    """Share of clips classified right with frames as given, 'reversed' or 'shuffled' (one seeded order)."""
    clips = data.clips
    if order == "reversed":
        clips = clips.flip(1)
    elif order == "shuffled":
        clips = clips[:, torch.randperm(clips.shape[1], generator=torch.Generator().manual_seed(seed))]
    logits = clip_logits(net.eval(), clips, normalize)
    return (logits.argmax(1) == getattr(data, label)).float().mean().item()
