"""Import-path recipes for model families that need an argument to build (the docs' recipes, run by the tests).

timm's architectures need none: `--model timm.models:vit_tiny_patch16_224` builds it with `pretrained=False`.
open_clip's towers are built by name, so a two-line module names one: `--model tests.zoo_nets:clip_vit_b_32`
(the visual tower of `ViT-B-32`, random weights: `pretrained=None` downloads nothing).
"""

from __future__ import annotations

from torch import nn

__all__ = ["clip_vit_b_32"]


def clip_vit_b_32() -> nn.Module:
    import open_clip

    return open_clip.create_model("ViT-B-32", pretrained=None).visual
