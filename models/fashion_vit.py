"""`fashion_vit`: a Vision Transformer on Fashion-MNIST (1 channel, 28 px), trained here and shipped in `models/nets/`.

torchvision's `VisionTransformer` with a 1-channel patch embedding: patches of 4 x 4 pixels give a 7 x 7 grid of
patch tokens after one class token (50 tokens), 6 encoder blocks of width 96, logits from the class token. Its
module paths are torchvision ViT's (`encoder.layers.encoder_layer_3.mlp.0`, `heads.head`), so the layout
inference that reads `vit_b_16` reads it too, and it is the offline, trained transformer of the tests, the
every-neuron atlas and the DGN-AM demo (the `fashion-fc` prior, trained on `fashion_cnn`, drives it as well).

`models/nets/fashion.json` records the command and test accuracy that made the shipped weights.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from .fashion import FASHION, NETS
from .registry import NetEntry, register

__all__ = ["FashionViT"]


class FashionViT(VisionTransformer):
    """[B, 1, 28, 28] -> 10 logits: 4 px patches (7 x 7 tokens + class token), 6 blocks of width 96, 3 heads."""

    def __init__(self, classes: int = 10, width: int = 96, depth: int = 6, heads: int = 3):
        super().__init__(image_size=28, patch_size=4, num_layers=depth, num_heads=heads, hidden_dim=width,
                         mlp_dim=2 * width, dropout=0.0, num_classes=classes)
        self.conv_proj = nn.Conv2d(1, width, kernel_size=4, stride=4)
        nn.init.trunc_normal_(self.conv_proj.weight, std=(1.0 / (16 ** 0.5)))
        nn.init.zeros_(self.conv_proj.bias)


register(NetEntry(
    "fashion_vit", FashionViT, FASHION, lambda: str(NETS / "fashion_vit.pt"),
    "Vision Transformer on Fashion-MNIST (1 channel, 28 px, 4 px patches: cls + 7x7 tokens, 6 blocks), trained here",
    (("encoder.layers.encoder_layer_3.mlp.0", "0:4"), ("heads.head", "all")), generator="fashion-fc"))
