"""Tiny video models (CNN + LSTM) for the tests, importable as `tests.video_nets:<builder>` by the CLI.

Each takes clips [B, T, 3, S, S] (S = 8 unless built otherwise) and keeps time in a different layout, so the
tracer (models/video.py) and the chunked forward (tasks/video/forward.py) are tested on all of them.
"""

from __future__ import annotations

import torch
from torch import nn


def _cnn(size: int, width: int = 4, code: int = 8) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(width * (size // 2) ** 2, code), nn.ReLU())


class ClipNet(nn.Module):
    """Per-frame CNN on the flattened frames, batch-first LSTM, head on the last step: [B, C] (LRCN-like)."""

    def __init__(self, size: int = 8, classes: int = 3, per_frame: bool = False, hidden: int = 6):
        super().__init__()
        self.per_frame = per_frame
        self.cnn = _cnn(size)
        self.lstm = nn.LSTM(8, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, clips):
        b, t = clips.shape[:2]
        h, _ = self.lstm(self.cnn(clips.flatten(0, 1)).reshape(b, t, -1))
        return self.fc(h) if self.per_frame else self.fc(h[:, -1])


class LoopNet(nn.Module):
    """The CNN called once per frame in a Python loop, an LSTMCell stepped by hand, and a time-first LSTM over
    the cell's states: layouts 'steps' and 'tb'. Returns [B, T, C]."""

    def __init__(self, size: int = 8, classes: int = 3):
        super().__init__()
        self.cnn = _cnn(size)
        self.cell = nn.LSTMCell(8, 5)
        self.seq = nn.LSTM(5, 4)  # time first
        self.fc = nn.Linear(4, classes)

    def forward(self, clips):
        b, t = clips.shape[:2]
        h = c = clips.new_zeros(b, 5)
        states = []
        for i in range(t):
            h, c = self.cell(self.cnn(clips[:, i]), (h, c))
            states.append(h)
        out, _ = self.seq(torch.stack(states))  # [T, B, 4]
        return self.fc(out.transpose(0, 1))


class NotAVideoNet(nn.Module):
    """Takes clips but returns a [B, T, C, 1] map: not a video classifier."""

    def forward(self, clips):
        return clips.mean((2, 3, 4))[..., None, None]


def clip_net() -> ClipNet:
    torch.manual_seed(0)
    return ClipNet()


def frame_net() -> ClipNet:
    torch.manual_seed(0)
    return ClipNet(per_frame=True)


def loop_net() -> LoopNet:
    torch.manual_seed(0)
    return LoopNet()


def not_a_video_net() -> NotAVideoNet:
    return NotAVideoNet()
