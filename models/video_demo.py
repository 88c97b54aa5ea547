"""The two small video classifiers of the offline demo (`make video-demo`): a per-frame CNN feeding an LSTM.

`ActivityNet` follows LRCN's shape at toy size: a 3-layer conv net on each 32 x 32 frame (`cnn`, the
per-frame module: conv layers `cnn.0`, `cnn.2`, `cnn.4`, then `cnn.7`, a 64-d frame code), an LSTM over the
frame codes (`lstm`, batch first) and a linear head (`fc`). Registered twice, for the two label sets of
tasks/video/activities.py:
- `video-motion`: 7 activities (left, right, up, down, grow, shrink, blink); scores the clip from the LSTM's
  last step, `[B, C]`: only frame order tells left from right.
- `video-appearance`: 4 shapes (square, disc, triangle, cross); scores every frame, `[B, T, C]`, and a clip's
  score is their mean, as LRCN averages its per-frame predictions: any frame tells.
Neither ships weights: `make video-demo` trains both (pipelines/video/demo.py) and passes `--weights`.
"""

from __future__ import annotations

import torch
from torch import nn

from .preprocess import Preprocessing
from .registry import register
from .video import VideoNetEntry

__all__ = ["ActivityNet", "motion_net", "appearance_net", "DEMO_PRE"]

DEMO_PRE = Preprocessing(size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


class ActivityNet(nn.Module):
    """clips [B, T, 3, 32, 32] -> scores [B, C] (`per_frame=False`) or [B, T, C]."""

    def __init__(self, classes: int, per_frame: bool, hidden: int = 64):
        super().__init__()
        self.per_frame = per_frame
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        )
        self.lstm = nn.LSTM(64, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        codes = self.cnn(clips.flatten(0, 1)).reshape(b, t, -1)
        h, _ = self.lstm(codes)
        return self.fc(h) if self.per_frame else self.fc(h[:, -1])


def motion_net() -> ActivityNet:
    return ActivityNet(7, per_frame=False)


def appearance_net() -> ActivityNet:
    return ActivityNet(4, per_frame=True)


for _entry in (
    VideoNetEntry("video-motion", motion_net, DEMO_PRE, None,
                  "demo CNN + LSTM: 7 activities from the last step (needs frame order); --weights from "
                  "make video-demo", (("fc", "all"),)),
    VideoNetEntry("video-appearance", appearance_net, DEMO_PRE, None,
                  "demo CNN + LSTM: 4 shapes, per-frame scores averaged (order-free); --weights from "
                  "make video-demo", (("fc", "all"),)),
):
    register(_entry)
