"""Tiny transformer-era nets for the fast tests, built from the same torchvision classes as the real ones.

- `tiny_vit()`: torchvision's VisionTransformer at 16 px, 4 px patches (a class token + a 4 x 4 grid), 2 blocks of
  width 16; it asserts its input size, as `vit_b_16` does.
- `tiny_swin()`: torchvision's SwinTransformer at 16 px (channels-last maps of 4 x 4 then 2 x 2).
- `tiny_convnext()`: torchvision's ConvNeXt with two stages (each block's Linear and GELU act on channels-last maps).
- `tiny_token_net()`: a hand-built sequence model with a class token and two register tokens over a 3 x 3 patch
  grid, whose blocks are a LayerNorm, a Linear and a GELU (timm's naming), for the layout rules.
Each is seeded, so an import path builds the same weights everywhere.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

__all__ = ["tiny_vit", "tiny_swin", "tiny_convnext", "tiny_token_net", "TokenNet"]


def _seeded(build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def tiny_vit() -> nn.Module:
    return _seeded(lambda: VisionTransformer(image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16,
                                             mlp_dim=32, num_classes=5))


def tiny_swin() -> nn.Module:
    return _seeded(lambda: SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[2, 2],
                                           window_size=[2, 2], num_classes=5))


def tiny_convnext() -> nn.Module:
    return _seeded(lambda: ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=5))


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 2 * width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(2 * width, width)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class TokenNet(nn.Module):
    """[B, 3, 12, 12] -> 4 logits over [cls, reg, reg, 3 x 3 patch tokens] of width 12."""

    def __init__(self, width: int = 12):
        super().__init__()
        self.patch = nn.Conv2d(3, width, 4, 4)
        self.prefix = nn.Parameter(torch.randn(1, 3, width) * 0.5)
        self.blocks = nn.Sequential(_Block(width), _Block(width))
        self.head = nn.Linear(width, 4)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.prefix.expand(len(x), -1, -1), t], 1)
        return self.head(self.blocks(t)[:, 0])


def tiny_token_net() -> nn.Module:
    return _seeded(TokenNet)
