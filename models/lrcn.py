"""LRCN (Donahue et al. 2015), the activity classifier of the DGN-AM supplement's video experiment: CaffeNet-style
fc6 features of every frame feeding an LSTM, one prediction per frame, averaged over the clip.

`LRCN`: `cnn` (AlexNet's conv layers `cnn.0` ... `cnn.12`, pooling, then fc6: `cnn.16`, 4096-d after its
ReLU `cnn.17`) runs on each 224 x 224 frame; `lstm` (256 units, batch first) reads the fc6 codes; `fc` scores
101 UCF-101 classes at every frame, `[B, T, 101]` (a clip's score is their mean: `--time-pool mean`).
Registered as `lrcn`, with ImageNet preprocessing; no weights ship (the authors' are Caffe models), so pass
`--weights URI` or `--weights random` (speed and memory do not depend on the weights: benchmarks/video_bench.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import alexnet

from .preprocess import IMAGENET
from .registry import register
from .video import VideoNetEntry

__all__ = ["LRCN", "lrcn"]


class LRCN(nn.Module):
    """clips [B, T, 3, 224, 224] -> per-frame class scores [B, T, classes]."""

    def __init__(self, classes: int = 101, hidden: int = 256):
        super().__init__()
        base = alexnet(weights=None)
        self.cnn = nn.Sequential(*base.features, base.avgpool, nn.Flatten(), nn.Dropout(),
                                 base.classifier[1], base.classifier[2])
        self.lstm = nn.LSTM(4096, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        h, _ = self.lstm(self.cnn(clips.flatten(0, 1)).reshape(b, t, -1))
        return self.fc(h)


def lrcn() -> LRCN:
    return LRCN()


register(VideoNetEntry("lrcn", lrcn, IMAGENET, None, "LRCN: AlexNet fc6 per frame + LSTM(256) + 101 classes per "
                       "frame (averaged); --weights URI or random", (("fc", "all"),)))
