"""DeePSiM training (Dosovitskiy & Brox 2016): a generator G that inverts a fixed encoder E, trained with
a pixel loss, a feature loss in a fixed comparator C's space, and an adversarial loss from a discriminator D.

    y = E(x);  x' = G(y)
    L_G = w_pix * ||x' - x||^2 + w_feat * ||C(x') - C(x)||^2 + w_adv * BCE(D(x', y), real)
          + w_code * ||E(G(y~)) - y~||^2          (y~: the photo codes plus any synthetic codes)
    L_D = BCE(D(x, y), real) + BCE(D(x', y), fake)

The code term is the feature loss with the comparator set to E itself. With synthetic codes drawn inside
the code bounds (`box_codes`) it teaches G to stay invertible where DGN-AM actually searches (codes pushed
towards the bounds), not only on the codes of the few training photos; pixel, feature and adversarial
losses apply to the photo half only, since synthetic codes have no photo.

Pure tensor code: `DeePSiMTrainer.step(x01)` takes a batch of [0, 1] images (the generator's channels) at its
output size and returns the losses; data, checkpoints and progress live in pipelines/train_generator.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LossWeights", "Discriminator", "DeePSiMTrainer", "box_codes", "mixed_codes"]

# x01 -> (E's code [B, ...], C's features): one forward pass of the encoder net serves both
Probe = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the mean-squared pixel loss ([0, 1] images), the mean-squared feature loss, the
    adversarial BCE and the mean-squared code loss. (The paper's 2e-6 / 0.01 / 100 weigh sums over 0-255
    pixels and raw Caffe features, so they do not transfer as numbers; it has no code term, i.e. 0.)"""

    pixel: float = 1.0
    feature: float = 1.0
    adversarial: float = 0.01
    code: float = 0.0


class Discriminator(nn.Module):
    """Image branch (strided convs) + code branch (MLP), joined by two linear layers, as in DeePSiM."""

    def __init__(self, code_dim: int, width: int = 32, channels: int = 3):
        super().__init__()
        layers, ch = [], channels
        for out in (width, width * 2, width * 4, width * 4):
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2)]
            ch = out
        self.image = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.code = nn.Sequential(nn.Linear(code_dim, 256), nn.LeakyReLU(0.2))
        self.head = nn.Sequential(nn.Linear(ch + 256, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))

    def forward(self, x01: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.image(x01 * 2 - 1), self.code(code)], 1)).squeeze(1)


def box_codes(upper: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n codes inside [0, upper]: uniform values on a random subset of units, each code with its own
    density in [0.05, 1) (DGN-AM's codes range from sparse to saturated)."""
    shape = (n, upper.numel())
    u = torch.rand(shape, generator=generator)
    density = 0.05 + 0.95 * torch.rand(n, 1, generator=generator)
    keep = torch.rand(shape, generator=generator) < density
    return (u * keep * upper.reshape(1, -1).cpu()).to(upper.device)


def mixed_codes(photo_codes: torch.Tensor, upper: torch.Tensor, n: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """n codes alpha * (t * a + (1 - t) * b) for random pairs (a, b) of this batch's photo codes, t ~ U(0, 1)
    and alpha ~ U(1, 2), clipped to [0, upper]: blends and intensified versions of real codes, the
    directions DGN-AM climbs along, yet nearer to what images can produce than uniform box codes."""
    m = photo_codes.shape[0]
    a = torch.randint(0, m, (n,), generator=generator)
    b = torch.randint(0, m, (n,), generator=generator)
    t = torch.rand(n, 1, generator=generator).to(photo_codes)
    alpha = (1 + torch.rand(n, 1, generator=generator)).to(photo_codes)
    mix = alpha * (t * photo_codes[a] + (1 - t) * photo_codes[b])
    return torch.minimum(mix.clamp_min(0), upper.reshape(1, -1).to(photo_codes))


class DeePSiMTrainer:
    """Holds G, D and their optimizers; `probe` (E and C in one pass) is a fixed function of [0, 1] images.

    `synthetic(n, photo_codes)` returns n extra codes per step for the code loss (None: photo codes only).
    """

    def __init__(self, generator: nn.Module, to_image01: Callable, probe: Probe, code_dim: int,
                 weights: LossWeights = LossWeights(), lr: float = 2e-4,
                 synthetic: Callable[[int, torch.Tensor], torch.Tensor] | None = None, synthetic_per_step: int = 0,
                 device: torch.device = torch.device("cpu"), channels: int = 3):
        self.g, self.to_image01 = generator.to(device).train().requires_grad_(True), to_image01
        self.probe = probe
        self.d = Discriminator(code_dim, channels=channels).to(device)
        self.w = weights
        self.synthetic, self.synthetic_per_step = synthetic, synthetic_per_step if synthetic else 0
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
        """One update of D, then of G, on images x01 [B, C, S, S] (S = the generator's output size)."""
        b = x01.shape[0]
        with torch.no_grad():
            code, target_feat = self.probe(x01)
            code = code.flatten(1)
        codes = code
        if self.synthetic_per_step:
            codes = torch.cat([code, self.synthetic(self.synthetic_per_step, code).to(code)], 0)
        fake_all = self.to_image01(self.g(codes))
        fake = fake_all[:b]
        real_logit, fake_logit = self.d(x01, code), self.d(fake.detach(), code)
        loss_d = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        needs_probe = self.w.feature or self.w.code
        fake_code, fake_feat = self.probe(fake_all) if needs_probe else (None, None)
        pixel = F.mse_loss(fake, x01)
        feature = F.mse_loss(fake_feat[:b], target_feat) if needs_probe else pixel.new_zeros(())
        code_loss = F.mse_loss(fake_code.flatten(1), codes) if needs_probe else pixel.new_zeros(())
        adv_logit = self.d(fake, code)
        adversarial = F.binary_cross_entropy_with_logits(adv_logit, torch.ones_like(adv_logit))
        loss_g = (self.w.pixel * pixel + self.w.feature * feature + self.w.adversarial * adversarial
                  + self.w.code * code_loss)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.step_count += 1
        return {"step": self.step_count, "loss_g": loss_g.item(), "pixel": pixel.item(),
                "feature": feature.item(), "adversarial": adversarial.item(), "code": code_loss.item(),
                "loss_d": loss_d.item()}
