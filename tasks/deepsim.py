"""DeePSiM training (Dosovitskiy & Brox 2016): a generator G that inverts a fixed encoder E, trained with
a pixel loss, a feature loss in a fixed comparator C's space, and an adversarial loss from a discriminator D.

    y = E(x);  x' = G(y)
    L_G = w_pix * ||x' - x||^2 + w_feat * ||C(x') - C(x)||^2 + w_adv * BCE(D(x', y), real)
    L_D = BCE(D(x, y), real) + BCE(D(x', y), fake)

Pure tensor code: `DeePSiMTrainer.step(x01)` takes a batch of [0, 1] RGB images at the generator's output
size and returns the losses; data, checkpoints and progress live in pipelines/train_generator.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LossWeights", "Discriminator", "DeePSiMTrainer"]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the mean-squared pixel loss ([0, 1] images), the mean-squared feature loss and the
    adversarial BCE. (The paper's 2e-6 / 0.01 / 100 weigh sums over 0-255 pixels and raw Caffe features,
    so they do not transfer as numbers.)"""

    pixel: float = 1.0
    feature: float = 1.0
    adversarial: float = 0.01


class Discriminator(nn.Module):
    """Image branch (strided convs) + code branch (MLP), joined by two linear layers, as in DeePSiM."""

    def __init__(self, code_dim: int, width: int = 32):
        super().__init__()
        layers, ch = [], 3
        for out in (width, width * 2, width * 4, width * 4):
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2)]
            ch = out
        self.image = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.code = nn.Sequential(nn.Linear(code_dim, 256), nn.LeakyReLU(0.2))
        self.head = nn.Sequential(nn.Linear(ch + 256, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))

    def forward(self, x01: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.image(x01 * 2 - 1), self.code(code)], 1)).squeeze(1)


class DeePSiMTrainer:
    """Holds G, D and their optimizers; E and C are fixed functions of [0, 1] RGB images."""

    def __init__(self, generator: nn.Module, to_image01: Callable, encoder: Callable, comparator: Callable,
                 code_dim: int, weights: LossWeights = LossWeights(), lr: float = 2e-4,
                 device: torch.device = torch.device("cpu")):
        self.g, self.to_image01 = generator.to(device).train().requires_grad_(True), to_image01
        self.encoder, self.comparator = encoder, comparator
        self.d = Discriminator(code_dim).to(device)
        self.w = weights
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=lr, betas=(0.5, 0.999))
        self.step_count = 0

    def state_dict(self) -> dict:
        return {"g": self.g.state_dict(), "d": self.d.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "step": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.g.load_state_dict(state["g"])
        self.d.load_state_dict(state["d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step_count = int(state["step"])

    def step(self, x01: torch.Tensor) -> dict[str, float]:
        """One update of D, then of G, on images x01 [B, 3, S, S] (S = the generator's output size)."""
        with torch.no_grad():
            code = self.encoder(x01).flatten(1)
            target_feat = self.comparator(x01)
        fake = self.to_image01(self.g(code))
        real_logit, fake_logit = self.d(x01, code), self.d(fake.detach(), code)
        loss_d = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        pixel = F.mse_loss(fake, x01)
        feature = F.mse_loss(self.comparator(fake), target_feat)
        adv_logit = self.d(fake, code)
        adversarial = F.binary_cross_entropy_with_logits(adv_logit, torch.ones_like(adv_logit))
        loss_g = self.w.pixel * pixel + self.w.feature * feature + self.w.adversarial * adversarial
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.step_count += 1
        return {"step": self.step_count, "loss_g": loss_g.item(), "pixel": pixel.item(),
                "feature": feature.item(), "adversarial": adversarial.item(), "loss_d": loss_d.item()}
