"""A small CNN trained from scratch on scikit-learn's bundled digits (offline), for the snapshot demo and
benchmark.

- `digits_data(size)`: the 1,797 8x8 digits, upsampled bilinearly to `size` px, as 1-channel images in
  [0, 1] (white strokes on black), split 1,397 train / 400 validation with a fixed permutation.
- `DigitsCNN()`: conv(1->16) - pool - conv(16->32) - pool - conv(32->32) - fc(512->64) - fc(64->10), a
  greyscale net; use it as `--model benchmarks.digits:DigitsCNN --input-size 32 --channels 1 --mean 0.5
  --std 0.5`.
- `train(...)`: plain SGD with momentum; every `every` steps it calls `on_checkpoint(step, net, val_accuracy)`
  (the demo writes checkpoint, metrics sidecar and `.done` marker there, as the README's snippet does).
- `recognizability(net, images, classes)`: the softmax probability that `net` gives each image's intended
  class: the demo scores each snapshot's class images with an independently trained copy.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DigitsCNN", "digits_data", "train", "accuracy", "recognizability", "SIZE", "MEAN", "STD"]

SIZE = 32
MEAN = (0.5,)
STD = (0.5,)


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(32 * 4 * 4, 64), nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def digits_data(size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val): 1-channel images in [0, 1] of `size` px, labels 0-9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).div(16.0).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(d.target, dtype=torch.long)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    x, y = x[order], y[order]
    return x[400:], y[400:], x[:400], y[:400]


def _normalize(x01: torch.Tensor) -> torch.Tensor:
    return (x01 - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)


@torch.no_grad()
def accuracy(net: nn.Module, x01: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float((net(_normalize(x01)).argmax(1) == y).float().mean())


def train(steps: int, *, seed: int = 0, every: int = 0, lr: float = 0.01, batch: int = 32,
          on_checkpoint: Callable[[int, nn.Module, float], None] | None = None,
          on_loss: Callable[[int, float], None] | None = None) -> nn.Module:
    """Train a DigitsCNN from scratch for `steps` SGD steps; `on_checkpoint` at step 0 and every `every` steps,
    `on_loss(step, training loss)` after every step."""
    torch.manual_seed(seed)
    net = DigitsCNN()
    x, y, xv, yv = digits_data()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps + 1):
        if on_checkpoint is not None and every and step % every == 0:
            on_checkpoint(step, net, accuracy(net, xv, yv))
        if step == steps:
            break
        net.train()
        idx = torch.randint(0, len(y), (batch,), generator=g)
        loss = F.cross_entropy(net(_normalize(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if on_loss is not None:
            on_loss(step, float(loss))
    return net.eval()


@torch.no_grad()
def recognizability(net: nn.Module, images: np.ndarray, classes: list[int]) -> np.ndarray:
    """Per image (uint8 [N, H, W] greyscale, or [N, H, W, C]: its first channel), the softmax probability of its
    class under `net`."""
    a = np.asarray(images, dtype=np.float32) / 255.0
    a = a[..., None] if a.ndim == 3 else a[..., :1]
    x = torch.from_numpy(a).permute(0, 3, 1, 2)
    if x.shape[-1] != SIZE:
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    p = torch.softmax(net.eval()(_normalize(x)), 1)
    return p[torch.arange(len(classes)), torch.tensor(classes)].numpy()
