"""Self-loading nets for tests: like facenet-pytorch's ONet, the constructor loads trained weights itself.

`ONetLike()` is ONet's layout scaled down (48x48 input, conv + PReLU + max-pool stages, a dense layer and
three heads returned as a tuple). Its "trained" weights come from a private, fixed-seed generator, so every
build holds the same values and none of them is PyTorch's default initialization. `onet_retrained()` is
the same architecture with other trained weights: a different build of the same import path's layout.
`onet_other_on_workers()` builds ONetLike() in the driver and onet_retrained() in a Ray worker, like a
callable that reads a weights file which differs between the nodes of a cluster.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ONetLike", "onet_retrained", "onet_other_on_workers"]


class ONetLike(nn.Module):
    def __init__(self, weights_seed: int = 48):
        super().__init__()
        self.conv1, self.prelu1, self.pool1 = nn.Conv2d(3, 8, 3), nn.PReLU(8), nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2, self.pool2 = nn.Conv2d(8, 16, 3), nn.PReLU(16), nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3, self.pool3 = nn.Conv2d(16, 16, 3), nn.PReLU(16), nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(16, 32, 2), nn.PReLU(32)
        self.dense5, self.prelu5 = nn.Linear(32 * 3 * 3, 64), nn.PReLU(64)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(64, 2), nn.Linear(64, 4), nn.Linear(64, 10)
        self.load_state_dict(_trained(self.state_dict(), weights_seed))

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(self.prelu4(self.conv4(x)).flatten(1)))
        return self.dense6_1(x).softmax(1), self.dense6_2(x), self.dense6_3(x)


def onet_retrained() -> ONetLike:
    return ONetLike(weights_seed=7)


def onet_other_on_workers() -> ONetLike:
    import ray

    in_worker = ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE  # task or actor
    return onet_retrained() if in_worker else ONetLike()


def _trained(state: dict, seed: int) -> dict:
    """Deterministic stand-in for a trained checkpoint (its own generator: the global RNG is untouched)."""
    g = torch.Generator().manual_seed(seed)
    return {k: 0.25 + 0.5 * torch.randn(v.shape, generator=g) if k.startswith("prelu")
            else torch.randn(v.shape, generator=g) / max(1, v[0].numel()) ** 0.5 for k, v in state.items()}
