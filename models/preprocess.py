"""Preprocessing that travels with a model: image size, mean/std, channel order and value scale.

Every method in this project works on images in one domain: values in [0, 1], shape [B, C, H, W], where C is
the net's channel count (`Preprocessing.channels`: 3 for RGB nets, 1 for greyscale ones such as the
Fashion-MNIST nets). `Preprocessing.module()` turns such a batch into exactly what the network was trained
on (BGR and a 0-255 scale for Caffe-style nets, ImageNet mean/std for torchvision nets), so tasks never
branch on model names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Preprocessing", "Normalize", "IMAGENET", "CAFFE"]


@dataclass(frozen=True)
class Preprocessing:
    """How a [0, 1] image of `channels` channels becomes the network's input.

    `mean` and `std` are per channel (their length is the channel count), in the network's channel order
    (BGR when `bgr`, 3 channels only) and in the units of `scale` (255 for Caffe nets, 1 for torchvision
    nets): input = (flip?(x01) * scale - mean) / std. `crop` is the share of a photo's short side the net
    sees (ImageNet evaluation: resize the short side to size/0.875, centre-crop; 1.0: the whole photo).
    """

    size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    bgr: bool = False
    scale: float = 1.0
    crop: float = 0.875

    def __post_init__(self):
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean {self.mean} and std {self.std} must give one value per channel")
        if self.bgr and len(self.mean) != 3:
            raise ValueError("bgr applies to 3-channel nets only")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def module(self) -> "Normalize":
        return Normalize(self)

    @property
    def mean01(self) -> tuple[float, ...]:
        """The dataset mean as a [0, 1] colour (RGB order): the 'zero' image that regularizers decay towards."""
        m = tuple(v / self.scale for v in self.mean)
        return (m[2], m[1], m[0]) if self.bgr else m  # type: ignore[return-value]

    def describe(self) -> dict:
        d = {"size": list(self.size), "mean": list(self.mean), "std": list(self.std),
             "bgr": self.bgr, "scale": self.scale}
        if self.crop != 0.875:  # descriptions (and so digests) of earlier runs stay as they were
            d["crop"] = self.crop
        return d


class Normalize(nn.Module):
    """x01 [B, C, H, W] -> network input; buffers move with `.to(device)` so nothing is rebuilt per step."""

    def __init__(self, pre: Preprocessing):
        super().__init__()
        self.bgr = pre.bgr
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, -1, 1, 1) / pre.scale)
        self.register_buffer("inv_std", pre.scale / torch.tensor(pre.std).view(1, -1, 1, 1))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x01 = x01.flip(1)
        return (x01 - self.mean) * self.inv_std


IMAGENET = Preprocessing()
CAFFE = Preprocessing(size=(227, 227), mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0), bgr=True, scale=255.0)
