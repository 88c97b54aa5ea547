"""Generator networks G for DGN-AM: code -> image, registered beside the target nets.

The DeePSiM architectures (Dosovitskiy & Brox 2016) follow papers.md layer for layer, with the Caffe layer
names so converted weights map one to one. Their output is BGR on a 0-255 scale minus the ImageNet mean;
`GeneratorEntry.to_image01` undoes that convention, so tasks always see [0, 1] images (RGB, or one grey
channel for the Fashion-MNIST prior, whose channel count is the length of its `mean`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .registry import register

__all__ = ["GeneratorEntry", "DeePSiM", "PooledFeatureGenerator", "TinyGenerator", "FashionGenerator"]


@dataclass(frozen=True)
class GeneratorEntry:
    """A generator prior: `build()` returns G (untrained); G(code [B, *code_shape]) -> raw image.

    raw image -> [0, 1]: x = raw + mean (per channel, generator's channel order), / scale, flip if bgr. The
    image has one channel per value of `mean`.
    """

    name: str
    build: Callable[[], nn.Module]
    code_shape: tuple[int, ...]
    out_size: int
    bgr: bool = True
    mean: tuple[float, ...] = (104.0, 117.0, 123.0)
    scale: float = 255.0
    default_weights: Callable[[], str] | None = None
    description: str = ""
    # (target net, layer) whose codes G inverts: `neuron-atlas stats --generator` measures them there
    encoder: tuple[str, str] | None = None
    # URI of the code upper bounds that go with the embedded weights (used when --bounds is not given)
    default_bounds: Callable[[], str] | None = None
    # DGN-AM settings tuned for this prior (lr, lr_end, init_std, ...), used where no flag says otherwise
    dgn_defaults: tuple[tuple[str, float], ...] = ()
    kind: str = field(default="generator", init=False)

    @property
    def example_input_shape(self) -> tuple[int, ...]:
        return self.code_shape

    @property
    def channels(self) -> int:
        return len(self.mean)

    def to_image01(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw generator output -> [0, 1]-scale images (not clamped: gradients must flow at the edges)."""
        x = (raw + _mean_on(self.mean, raw.device, raw.dtype)) / self.scale
        return x.flip(1) if self.bgr else x


@functools.lru_cache(maxsize=32)
def _mean_on(mean: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A generator's mean as a [1, C, 1, 1] tensor on `device`, made once: a tensor made from the tuple at every
    render is a host-to-device copy per optimization step on a GPU."""
    return torch.tensor(mean, dtype=dtype, device=device).view(1, -1, 1, 1)


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.3)


class DeePSiM(nn.Module):
    """DeePSiM generator inverting CaffeNet fc6/fc7 (code [B, 4096]) or pool5 (code [B, 256, 6, 6]).

    Output: [B, 3, 256, 256], BGR, 0-255 scale minus the ImageNet mean.
    """

    def __init__(self, variant: str = "fc6"):
        super().__init__()
        self.variant = variant
        if variant in ("fc6", "fc7"):
            self.defc7 = nn.Linear(4096, 4096)
            self.defc6 = nn.Linear(4096, 4096)
            self.defc5 = nn.Linear(4096, 4096)
            first = 256
        elif variant == "pool5":
            self.conv6 = nn.Conv2d(256, 512, 3, padding=1)
            self.conv7 = nn.Conv2d(512, 512, 3, padding=1)
            self.conv8 = nn.Conv2d(512, 512, 3, padding=0)
            first = 512
        else:
            raise ValueError(f"unknown DeePSiM variant {variant!r}; use fc6, fc7 or pool5")
        self.deconv5 = nn.ConvTranspose2d(first, 256, 4, 2, 1)
        self.conv5_1 = nn.ConvTranspose2d(256, 512, 3, 1, 1)
        self.deconv4 = nn.ConvTranspose2d(512, 256, 4, 2, 1)
        self.conv4_1 = nn.ConvTranspose2d(256, 256, 3, 1, 1)
        self.deconv3 = nn.ConvTranspose2d(256, 128, 4, 2, 1)
        self.conv3_1 = nn.ConvTranspose2d(128, 128, 3, 1, 1)
        self.deconv2 = nn.ConvTranspose2d(128, 64, 4, 2, 1)
        self.deconv1 = nn.ConvTranspose2d(64, 32, 4, 2, 1)
        self.deconv0 = nn.ConvTranspose2d(32, 3, 4, 2, 1)
        self.act = _lrelu()

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        a = self.act
        if self.variant == "pool5":
            x = a(self.conv8(a(self.conv7(a(self.conv6(code))))))
        else:
            x = a(self.defc5(a(self.defc6(a(self.defc7(code))))))
            x = x.view(-1, 256, 4, 4)
        for layer in (self.deconv5, self.conv5_1, self.deconv4, self.conv4_1, self.deconv3, self.conv3_1,
                      self.deconv2, self.deconv1):
            x = a(layer(x))
        return self.deconv0(x)


class PooledFeatureGenerator(nn.Module):
    """A DeePSiM-style generator for 1280-d pooled MobileNetV2 features: code [B, 1280] -> [B, 3, 128, 128].

    About 3.1 M parameters (12.5 MB in float32), small enough to train on a CPU and to ship.
    """

    def __init__(self, code_dim: int = 1280):
        super().__init__()
        self.defc = nn.Linear(code_dim, 128 * 4 * 4)
        self.deconv5 = nn.ConvTranspose2d(128, 128, 4, 2, 1)  # 8
        self.deconv4 = nn.ConvTranspose2d(128, 64, 4, 2, 1)  # 16
        self.deconv3 = nn.ConvTranspose2d(64, 64, 4, 2, 1)  # 32
        self.deconv2 = nn.ConvTranspose2d(64, 32, 4, 2, 1)  # 64
        self.deconv1 = nn.ConvTranspose2d(32, 3, 4, 2, 1)  # 128
        self.act = _lrelu()

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        x = self.act(self.defc(code)).view(-1, 128, 4, 4)
        for layer in (self.deconv5, self.deconv4, self.deconv3, self.deconv2):
            x = self.act(layer(x))
        return self.deconv1(x)


class TinyGenerator(nn.Module):
    """A small generator (code [B, code_dim] -> [B, 3, 64, 64]) for tests and quick CPU runs."""

    def __init__(self, code_dim: int = 64, width: int = 64):
        super().__init__()
        self.fc = nn.Linear(code_dim, width * 4 * 4)
        self.width = width
        self.up = nn.Sequential(
            nn.ConvTranspose2d(width, width, 4, 2, 1), _lrelu(),           # 8
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1), _lrelu(),      # 16
            nn.ConvTranspose2d(width // 2, width // 4, 4, 2, 1), _lrelu(),  # 32
            nn.ConvTranspose2d(width // 4, 3, 4, 2, 1),                      # 64
        )

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.up(torch.nn.functional.leaky_relu(self.fc(code), 0.3).view(-1, self.width, 4, 4))


class FashionGenerator(nn.Module):
    """DeePSiM's fc6 generator at Fashion-MNIST size: code [B, 512] (fashion_cnn's fc6 after ReLU) ->
    [B, 1, 28, 28]. Three fully connected layers (defc7, defc6, defc5 as in DeePSiM) to 64 x 7 x 7, then
    up-convolutions to 14 and 28 with a 3 x 3 convolution after each; LeakyReLU(0.3) after every layer but
    the last. About 2.3 M parameters."""

    def __init__(self, code_dim: int = 512):
        super().__init__()
        self.defc7 = nn.Linear(code_dim, 512)
        self.defc6 = nn.Linear(512, 512)
        self.defc5 = nn.Linear(512, 64 * 7 * 7)
        self.deconv2 = nn.ConvTranspose2d(64, 64, 4, 2, 1)  # 14
        self.conv2_1 = nn.ConvTranspose2d(64, 32, 3, 1, 1)
        self.deconv1 = nn.ConvTranspose2d(32, 32, 4, 2, 1)  # 28
        self.conv1_1 = nn.ConvTranspose2d(32, 1, 3, 1, 1)
        self.act = _lrelu()

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        a = self.act
        x = a(self.defc5(a(self.defc6(a(self.defc7(code)))))).view(-1, 64, 7, 7)
        for layer in (self.deconv2, self.conv2_1, self.deconv1):
            x = a(layer(x))
        return self.conv1_1(x)


PRIORS = Path(__file__).resolve().parent / "priors"
MNV2_POOL_DGN = (("lr", 1.0), ("lr_end", 0.02), ("init_std", 0.3))
# DGN-AM settings for fashion-fc, chosen by measurement (benchmarks/dgn_quality.py; README "Learned priors")
FASHION_FC_DGN = (("lr", 0.5), ("lr_end", 0.02), ("init_std", 1.0), ("decay_factor", 0.9), ("steps", 200))


def _shipped(name: str) -> Callable[[], str]:
    return lambda: str(PRIORS / name)


for _entry in (
    # CaffeNet's fc6/fc7 after ReLU and pool5 are torchvision AlexNet's classifier.2 / .5 and features.12
    GeneratorEntry("deepsim-fc6", lambda: DeePSiM("fc6"), (4096,), 256,
                   description="DeePSiM generator inverting CaffeNet fc6 (Dosovitskiy & Brox 2016)",
                   encoder=("alexnet", "classifier.2")),
    GeneratorEntry("deepsim-fc7", lambda: DeePSiM("fc7"), (4096,), 256,
                   description="DeePSiM generator inverting CaffeNet fc7", encoder=("alexnet", "classifier.5")),
    GeneratorEntry("deepsim-pool5", lambda: DeePSiM("pool5"), (256, 6, 6), 256,
                   description="DeePSiM generator inverting CaffeNet pool5", encoder=("alexnet", "features.12")),
    # MobileNetV2's pooled features are the input of classifier.0 (Dropout, the identity in eval mode)
    # the shipped demo prior: trained on the 222 offline photos (models/priors/mnv2-pool.json says how)
    GeneratorEntry("mnv2-pool", PooledFeatureGenerator, (1280,), 128, bgr=False, mean=(0.485, 0.456, 0.406),
                   scale=1.0, description="small DeePSiM-style generator inverting MobileNetV2's pooled features "
                   "(demo prior shipped in models/priors, trained on 222 offline photos)",
                   encoder=("mobilenet_v2", "classifier.0"), default_weights=_shipped("mnv2-pool.pt"),
                   default_bounds=_shipped("mnv2-pool-bounds.npy"), dgn_defaults=MNV2_POOL_DGN),
    # the Fashion-MNIST prior: trained by `neuron-atlas train-generator` on the 60,000 training photos
    # (models/priors/fashion-fc.json holds the commands), bounds from `neuron-atlas stats` over the same photos
    GeneratorEntry("fashion-fc", FashionGenerator, (512,), 28, bgr=False, mean=(0.5,), scale=1.0,
                   description="DeePSiM generator inverting fashion_cnn's fc6 (classifier.2), 28 px greyscale, "
                   "trained on Fashion-MNIST", encoder=("fashion_cnn", "classifier.2"),
                   default_weights=_shipped("fashion-fc.pt"), default_bounds=_shipped("fashion-fc-bounds.npy"),
                   dgn_defaults=FASHION_FC_DGN),
    GeneratorEntry("tiny", lambda: TinyGenerator(64), (64,), 64, bgr=False, mean=(0.5, 0.5, 0.5), scale=1.0,
                   description="small 64-d -> 64x64 generator for tests and quick runs"),
):
    register(_entry)
