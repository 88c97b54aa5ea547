"""Supervised training of a small image classifier on an in-memory dataset (the Fashion-MNIST nets).

Images are uint8 `[N, C, H, W]` tensors, labels int64 `[N]`; `normalize` maps [0, 1] images to the net's
input (the entry's preprocessing). Each epoch is one seeded permutation; augmentation is a horizontal flip
and a shift of up to `shift` pixels (zero padding), drawn per image from the same seed, so a run is
reproducible on one machine. AdamW with a one-cycle schedule. Pure tensors in, a trained module out.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["train_classifier", "accuracy", "predict_proba"]


def _augment(x: torch.Tensor, shift: int, g: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    if shift:
        h, w = x.shape[-2:]
        padded = F.pad(x, (shift,) * 4)
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=g)
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=g)
        rows = (dy.view(b, 1) + torch.arange(h).view(1, h))  # [b, h]
        cols = (dx.view(b, 1) + torch.arange(w).view(1, w))  # [b, w]
        idx = torch.arange(b).view(b, 1, 1)
        x = padded.permute(0, 2, 3, 1)[idx, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2)
    return x


def train_classifier(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalize: nn.Module, *,
                     epochs: int = 10, batch: int = 128, lr: float = 3e-3, weight_decay: float = 5e-4,
                     shift: int = 2, seed: int = 0, log: Callable[[str], None] | None = None) -> list[dict]:
    """Train `net` in place; returns one record per epoch (mean loss, training accuracy, seconds)."""
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-len(images) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.2)
    g = torch.Generator().manual_seed(seed)
    history, t0 = [], time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=g)
        loss_sum, right = 0.0, 0
        for i in range(steps_per_epoch):
            idx = order[i * batch:(i + 1) * batch]
            x = _augment(images[idx].float() / 255.0, shift, g)
            y = labels[idx]
            logits = net(normalize(x))
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            right += int((logits.argmax(1) == y).sum())
            if log is not None and i % 100 == 0:
                done = epoch * steps_per_epoch + i + 1
                eta = (time.perf_counter() - t0) / done * (epochs * steps_per_epoch - done)
                log(f"  epoch {epoch + 1}/{epochs} step {i + 1}/{steps_per_epoch}: loss {loss.item():.3f}, "
                    f"ETA {eta:.0f} s")
        history.append({"epoch": epoch + 1, "loss": loss_sum / len(images), "train_accuracy": right / len(images),
                        "seconds": round(time.perf_counter() - t0, 1)})
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: loss {history[-1]['loss']:.4f}, "
                f"train accuracy {history[-1]['train_accuracy']:.4f} ({history[-1]['seconds']:.0f} s)")
    net.eval()
    return history


@torch.no_grad()
def predict_proba(net: nn.Module, x01: torch.Tensor, normalize: nn.Module, batch: int = 1000) -> torch.Tensor:
    """Softmax probabilities [N, classes] of [0, 1] images [N, C, H, W] (float, or uint8 on 0-255)."""
    net.eval()
    out = []
    for i in range(0, len(x01), batch):
        x = x01[i:i + batch]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        out.append(net(normalize(x)).softmax(1))
    return torch.cat(out)


def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalize: nn.Module) -> float:
    """Share of `images` (uint8 [N, C, H, W]) classified as `labels`."""
    return (predict_proba(net, images, normalize).argmax(1) == labels).float().mean().item()
