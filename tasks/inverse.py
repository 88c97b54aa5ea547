"""Inverse-set sampling (Hada & Carreira-Perpinan 2019): many diverse images x = G(c) whose unit
activations all lie in chosen ranges [z1, z2] (several constraints = an intersection of inverse sets).

Seeds. K codes maximize the diversity sum_ij ||E(G(c_i)) - E(G(c_j))||^2 subject to the range constraints,
by the bound-constrained augmented Lagrangian with slack variables s >= 0 (the paper's eq. 8):

    L = -w * div(C) - sum lambda * (g - s) + mu/2 * sum (g - s)^2,   s = max(0, g - lambda/mu)
    after each outer iteration: lambda <- max(lambda - mu * g, 0),  mu <- growth * mu

Each range gives two constraints g >= 0 per code: f - (z1 + eps0) and (z2 - eps0) - f. The paper constrains
only z2 - f <= eps with a target margin eps0 = eps/2, which puts seeds at f >= (z1 + z2)/2; with both ends
constrained, eps0 = eps/4 on each side puts them in the middle half of the range, equally "well inside".
Constraint values are measured in range widths ((f - z1 - eps0) / eps, ...), so mu0 = 10 means the same
for a logit range [10, 14] as for a conv unit's [0.1, 0.2].
The seed phase stops as soon as every seed is in range.

Sampling. From the seeds, repeat ONE gradient step of the same Lagrangian with lambda*, mu* frozen, plus a
term that pushes every code away from all samples kept so far; keep the codes that land in range; until n.

Diversity is measured in an encoder space E(G(c)) (`diversity="encoder"`), or, for the paper's ablations,
on the codes themselves (`"code"`) or not at all (`"none"`). Every activation is measured on the 8-bit
image (straight-through rounding), so a kept sample's PNG, measured again, gives the same value.
Pure tensor code: the caller supplies `render` (codes -> [0, 1] images) and `probe` (images -> unit
activations [B, P] and encoder features [B, D]).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from models.errors import UserInputError
from models.units import Unit, position_text

__all__ = ["Constraint", "InverseConfig", "InverseResult", "inverse_set", "mean_pairwise_distance",
           "quantize_st", "DIVERSITY_SPACES", "throttled_report"]

DIVERSITY_SPACES = ("encoder", "code", "none")


@dataclass(frozen=True)
class Constraint:
    """z1 <= activation of `unit` <= z2."""

    unit: Unit
    z1: float
    z2: float

    def __post_init__(self):
        if not (math.isfinite(self.z1) and math.isfinite(self.z2)) or self.z1 >= self.z2:
            raise UserInputError(f"constraint {self.label}: z1 = {self.z1:g} must be below z2 = {self.z2:g}")

    @property
    def label(self) -> str:
        """LAYER:UNIT[@Y,X], the spelling --constraint takes."""
        u = self.unit
        return f"{u.layer}:{u.channel}" + position_text(u.y, u.x)

    def __str__(self) -> str:
        return f"{self.label}:{self.z1:g}:{self.z2:g}"


@dataclass(frozen=True)
class InverseConfig:
    """The paper's settings by default: K = 10 seeds, n = 500 samples, mu0 = 10 growing x10 per outer
    iteration of 100 gradient steps. Steps are normalized per code (lr / mean|g|, as DGN-AM's released
    code) and codes stay inside the generator's code bounds."""

    k: int = 10
    n: int = 500
    seed_steps: int = 100  # gradient steps per outer (lambda, mu) iteration
    max_outer: int = 6  # outer iterations before the seeds are declared out of reach
    mu0: float = 10.0
    mu_growth: float = 10.0
    lr: float = 0.05  # seed-phase step
    beta: float = 0.05  # sampling step
    max_sample_steps: int = 1000
    diversity: str = "encoder"
    diversity_weight: float = 1.0
    init_std: float = 1.0
    hp_extra: dict = field(default_factory=dict)  # e.g. the encoder layer, recorded with the hyperparams

    def __post_init__(self):
        if self.k < 1:
            raise UserInputError(f"--k {self.k} must be at least 1")
        if self.n < self.k:
            raise UserInputError(f"--n {self.n} must be at least --k {self.k} (the seeds are the first samples)")
        if self.diversity not in DIVERSITY_SPACES:
            raise UserInputError(f"unknown --diversity {self.diversity!r}; use one of {', '.join(DIVERSITY_SPACES)}")
        for name in ("seed_steps", "max_outer", "max_sample_steps"):
            if getattr(self, name) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be at least 1")
        if self.mu0 <= 0 or self.mu_growth < 1 or self.lr <= 0 or self.beta <= 0:
            raise UserInputError("--mu0, --lr and --beta must be positive and --mu-growth at least 1")

    def hyperparams(self) -> dict:
        hp = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "hp_extra"}
        return {**hp, **self.hp_extra}


@dataclass
class InverseResult:
    codes: torch.Tensor  # [m, ...] kept codes, m <= n, seeds first
    images: torch.Tensor  # uint8 [m, H, W, 3]
    activations: torch.Tensor  # [m, P] activation of every constrained unit, on the 8-bit image
    features: torch.Tensor  # [m, D] encoder features (what diversity is reported on)
    seed_iterations: int  # outer iterations of the seed phase
    seed_steps: int  # gradient steps of the seed phase
    sampling_steps: int  # single gradient steps of the sampling phase
    status: str  # "complete", "seeds-out-of-reach" or "sampling-budget-spent"
    best: torch.Tensor  # [P] the activation closest to each range seen (for the message when out of reach)

    @property
    def diversity(self) -> float:
        return mean_pairwise_distance(self.features)


def quantize_st(x01: torch.Tensor) -> torch.Tensor:
    """The 8-bit image in the forward pass, the identity in the backward pass (straight-through)."""
    q = torch.round(x01.clamp(0, 1) * 255) / 255
    return x01 + (q - x01).detach()


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean Euclidean distance over all unordered pairs of rows (0 for fewer than two rows)."""
    m = features.shape[0]
    if m < 2:
        return 0.0
    d = torch.cdist(features.double(), features.double())
    return float(d.sum() / (m * (m - 1)))


def _descend(loss: torch.Tensor, c: torch.Tensor, size: float, clip: Callable[[torch.Tensor], None]) -> torch.Tensor:
    """One normalized descent step (size / mean|g| per code), projected onto the code bounds."""
    (grad,) = torch.autograd.grad(loss, c)
    with torch.no_grad():
        scale = grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
        c = c.detach() - size * grad / scale
        clip(c)
    return c


def inverse_set(render: Callable[[torch.Tensor], torch.Tensor],
                probe: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                init: torch.Tensor, clip: Callable[[torch.Tensor], None], constraints: list[Constraint],
                cfg: InverseConfig, progress: Callable[[str, int], None] | None = None) -> InverseResult:
    """Seeds, then samples, as in the module docstring. `init` holds the K initial codes; `clip` projects
    codes onto the generator's code bounds in place; `progress(phase, count)` is told of each step."""
    dev = init.device
    z1 = torch.tensor([c.z1 for c in constraints], device=dev)
    z2 = torch.tensor([c.z2 for c in constraints], device=dev)
    width = z2 - z1
    eps0 = width / 4

    def g_of(f: torch.Tensor) -> torch.Tensor:  # [B, 2P], >= 0 inside the seed targets, in range widths
        return torch.cat([(f - (z1 + eps0)) / width, ((z2 - eps0) - f) / width], 1)

    def in_range(f: torch.Tensor) -> torch.Tensor:
        return ((f >= z1) & (f <= z2)).all(1)

    def space(c: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return c.flatten(1) if cfg.diversity == "code" else e

    def lagrangian(c, lam, mu, kept_sum=None, kept_sq=None, kept_count=0):
        x = render(c)
        f, e = probe(x)
        g = g_of(f)
        s = (g - lam / mu).clamp_min(0).detach()
        penalty = (-(lam * (g - s)) + mu / 2 * (g - s) ** 2).sum()
        div = f.new_zeros(())
        if cfg.diversity != "none" and cfg.diversity_weight:
            v = space(c, e)
            dim = v.shape[1]
            if v.shape[0] > 1:
                div = torch.cdist(v, v).pow(2).sum() / (dim * (v.shape[0] - 1))
            if kept_count:  # sum_y ||v_i - v_y||^2 = m|v_i|^2 - 2 v_i.sum_y + sum_y |v_y|^2, per kept sample
                div = div + ((v * v).sum(1) * kept_count - 2 * v @ kept_sum + kept_sq).sum() / (dim * kept_count)
        return penalty - cfg.diversity_weight * div, x, f, e

    c = init.clone()
    clip(c)
    lam = torch.zeros(c.shape[0], 2 * len(constraints), device=dev)
    mu = cfg.mu0
    best = torch.full_like(z1, float("nan"))

    def note_best(f: torch.Tensor) -> None:  # the value nearest each range seen so far
        dist = torch.maximum(z1 - f, f - z2).clamp_min(0)
        i = dist.argmin(0)
        cand = f.detach()[i, torch.arange(f.shape[1], device=dev)]
        old = torch.maximum(z1 - best, best - z2).clamp_min(0)
        better = torch.isnan(best) | (dist.min(0).values < old)
        best.copy_(torch.where(better, cand, best))

    outer, steps, seeds_ok = 0, 0, False
    x = f = e = None
    while outer < cfg.max_outer and not seeds_ok:
        outer += 1
        for _ in range(cfg.seed_steps):
            c.requires_grad_(True)
            loss, x, f, e = lagrangian(c, lam, mu)
            note_best(f)
            if bool(in_range(f).all()):
                seeds_ok = True
                break
            c = _descend(loss, c, cfg.lr, clip)
            steps += 1
            if progress:
                progress("seeds", steps)
        if not seeds_ok:
            with torch.no_grad():
                f_now, _ = probe(render(c))
                note_best(f_now)
                if bool(in_range(f_now).all()):
                    seeds_ok = True
                    x, f, e = None, f_now, None
                lam = (lam - mu * g_of(f_now)).clamp_min(0)
                mu = mu * cfg.mu_growth

    c = c.detach()
    if x is None or e is None:
        with torch.no_grad():
            x = render(c)
            f, e = probe(x)
    keep = in_range(f.detach())
    kept = _Kept(cfg.n)
    kept.add(c[keep], x.detach()[keep], f.detach()[keep], e.detach()[keep])
    if not seeds_ok:
        return kept.result(outer, steps, 0, "seeds-out-of-reach", best)

    # sampling: lambda*, mu* frozen; one step at a time, keeping every code that lands in range
    sampling = 0
    while len(kept) < cfg.n and sampling < cfg.max_sample_steps:
        c.requires_grad_(True)
        v_sum, v_sq = kept.moments(cfg.diversity)
        loss, x, f, e = lagrangian(c, lam, mu, v_sum, v_sq, len(kept))
        if sampling > 0:
            ok = in_range(f.detach())
            kept.add(c.detach()[ok], x.detach()[ok], f.detach()[ok], e.detach()[ok])
            if len(kept) >= cfg.n:
                break
        c = _descend(loss, c, cfg.beta, clip)
        sampling += 1
        if progress:
            progress("samples", len(kept))
    status = "complete" if len(kept) >= cfg.n else "sampling-budget-spent"
    return kept.result(outer, steps, sampling, status, best)


class _Kept:
    """The samples kept so far (at most `limit`), and running sums for the push-away term."""

    def __init__(self, limit: int):
        self.limit = limit
        self.parts: list[tuple[torch.Tensor, ...]] = []
        self.count = 0
        self.sums: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.count

    def add(self, c: torch.Tensor, x: torch.Tensor, f: torch.Tensor, e: torch.Tensor) -> None:
        room = self.limit - self.count
        if room <= 0 or c.shape[0] == 0:
            return
        c, x, f, e = c[:room], x[:room], f[:room], e[:room]
        self.parts.append((c.clone(), (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu(),
                           f.clone(), e.clone()))
        self.count += c.shape[0]
        for name, v in (("code", c.flatten(1)), ("encoder", e)):
            s, sq = self.sums.get(name, (v.new_zeros(v.shape[1]), v.new_zeros(())))
            self.sums[name] = (s + v.sum(0), sq + (v * v).sum())

    def moments(self, diversity: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return self.sums.get("code" if diversity == "code" else "encoder", (None, None))

    def result(self, outer: int, steps: int, sampling: int, status: str, best: torch.Tensor) -> InverseResult:
        if not self.parts:
            empty = torch.empty(0)
            return InverseResult(empty, torch.empty(0, 0, 0, 3, dtype=torch.uint8), empty, empty, outer, steps,
                                 sampling, status, best.cpu())
        c, x, f, e = (torch.cat(p) for p in zip(*self.parts))
        return InverseResult(c.cpu(), x, f.cpu(), e.cpu(), outer, steps, sampling, status, best.cpu())


def throttled_report(what: str, cfg: InverseConfig, every_s: float = 20.0):
    """A progress callback for one long inverse-set run: a line on stderr at most every `every_s` seconds
    (Ray forwards actor output to the driver's terminal), so a run of minutes is not silent."""
    last = [time.monotonic()]

    def report(phase: str, count: int) -> None:
        now = time.monotonic()
        if now - last[0] < every_s:
            return
        last[0] = now
        detail = f"seed step {count}" if phase == "seeds" else f"{count}/{cfg.n} samples kept"
        print(f"inverse {what}: {detail}", file=sys.stderr, flush=True)
    return report
