"""Fashion-MNIST target nets (1-channel, 28 x 28), trained here and shipped in `models/nets/`.

- `fashion_cnn`: AlexNet in miniature, with torchvision AlexNet's module layout (`features`, `classifier` =
  Dropout, fc6, ReLU, Dropout, fc7, ReLU, fc8), so `classifier.2` is fc6 after its ReLU: the code that the
  `fashion-fc` DeePSiM prior inverts, as CaffeNet's fc6 is for the paper's generator.
- `fashion_resnet`: a small residual net (torchvision BasicBlocks, global average pooling), trained apart:
  a target of another architecture for the paper's claim that one prior serves other nets too.
- `FashionJudge`: a third architecture (5 x 5 convolutions, average pooling, ELU) that only scores pictures
  in the DGN-AM benchmark; never a synthesis target, so it is not registered.

`models/nets/fashion.json` records the command and accuracies that made the shipped weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from .preprocess import Preprocessing
from .registry import NetEntry, register

__all__ = ["FashionCNN", "FashionResNet", "FashionJudge", "FASHION", "FASHION_CLASSES", "NETS"]

NETS = Path(__file__).resolve().parent / "nets"
# mean and std of the 60,000 training images on a [0, 1] scale; one channel, images used at their own size
FASHION = Preprocessing(size=(28, 28), mean=(0.2860,), std=(0.3530,), crop=1.0)
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


class FashionCNN(nn.Module):
    """[B, 1, 28, 28] -> 10 logits: three conv blocks (28 -> 14 -> 7 -> 3), then fc6 512, fc7 512, fc8 10."""

    def __init__(self, classes: int = 10):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*block(1, 32), *block(32, 64), *block(64, 128))
        self.classifier = nn.Sequential(
            nn.Dropout(0.3), nn.Linear(128 * 3 * 3, 512), nn.ReLU(inplace=True),
            nn.Dropout(0.3), nn.Linear(512, 512), nn.ReLU(inplace=True),
            nn.Linear(512, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class FashionResNet(nn.Module):
    """[B, 1, 28, 28] -> 10 logits: stem conv + pool (14), BasicBlocks at 14, 7 and 4, global pooling, fc."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(2))
        self.layer1 = nn.Sequential(BasicBlock(32, 32))
        self.layer2 = nn.Sequential(BasicBlock(32, 64, 2, _down(32, 64)))
        self.layer3 = nn.Sequential(BasicBlock(64, 128, 2, _down(64, 128)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))


class FashionJudge(nn.Module):
    """The benchmark's independent judge: 5 x 5 convs with average pooling and ELU, no batch norm."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ELU(), nn.AvgPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ELU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 256), nn.ELU(), nn.Linear(256, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _shipped(name: str):
    return lambda: str(NETS / name)


for _entry in (
    NetEntry("fashion_cnn", FashionCNN, FASHION, _shipped("fashion_cnn.pt"),
             "AlexNet-shaped Fashion-MNIST classifier (1 channel, 28 px), trained here; fc6 = classifier.2",
             (("features.6", "0:4"), ("classifier.5", "0:4"), ("classifier.6", "all")), generator="fashion-fc"),
    NetEntry("fashion_resnet", FashionResNet, FASHION, _shipped("fashion_resnet.pt"),
             "small residual Fashion-MNIST classifier (1 channel, 28 px), trained here",
             (("layer2", "0:4"), ("fc", "all")), generator="fashion-fc"),
):
    register(_entry)
