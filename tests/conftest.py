"""Shared fixtures: tiny hand-built nets that make the unit tests fast and their answers exact."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from models.preprocess import Preprocessing
from models.registry import NetEntry, register

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# Ray nodes, drivers and workers of the test suite talk over loopback only: with this set, Ray resolves
# "this node" to 127.0.0.1 instead of the machine's network address (read when ray is first imported).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


class Counter(nn.Module):
    """Identity that counts its calls: proves whether the forward pass reached it."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


class TinyNet(nn.Module):
    """conv(3->4) -> relu -> conv(4->6, stride 2) -> relu -> counter -> pool -> fc(6->5)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        )
        self.after = Counter()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = self.after(self.features(x))
        return self.fc(self.pool(x).flatten(1))


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()


TINY_PRE = Preprocessing(size=(16, 16))
TINY_ENTRY = NetEntry("tinynet", tiny_net, TINY_PRE, None, "test net",
                      (("features.2", "0:2"), ("fc", "1,3")))
register(TINY_ENTRY)


@pytest.fixture
def tiny():
    net = tiny_net().eval().requires_grad_(False)
    for m in net.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return net


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A real state-dict file for the tiny net."""
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    torch.save(tiny_net().state_dict(), path)
    return str(path)
