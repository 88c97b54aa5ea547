"""The one optimization loop that every synthesis method plugs into.

A method supplies a `Parameterization` (STYLE 2): the tensor it optimizes, how that tensor renders to
[0, 1] RGB images, an optional per-row penalty subtracted from the objective (DGN-AM's lambda*||y||), and an
optional in-place `project` step applied after every update (clipping, decay, blur). The loop does gradient
ascent on `objective(forward(views(render(params), t))) - penalty(params)` with a linear learning-rate
schedule, as plain ascent (optionally with the released DGN-AM code's normalized steps, lr / mean|g| per row)
or Adam (Lucent's optimizer). `views` (optional, tasks/transforms.py) shows the net a random transformation
of each render at each step (transformation robustness), drawn from `source` where the parameterization has
one (its own smaller image, which `render` upsamples to the net's size; the views then upsample, so they must
return the net's size). A `views` with a `plan(steps)` method is told the step count before the first step, so
it can draw every step at once. The start and final activations are always measured on the untransformed
render, which is what gets saved. `diversity` (optional, tasks/diversity.py) is a penalty on the captured
activations that couples the rows of a group (a unit's seeds): it is subtracted from what is ascended, never
from the reported activations.

On an accelerator the steps after the first never make the host wait for the device: no scalar read-backs,
no host-to-device copies, no data-dependent shapes (the pieces the loop calls keep to that too;
tests/test_host_syncs.py checks every method). Results are read back once, after the last step.

Without `diversity`, every row of the batch is an independent problem: nothing in the loop mixes rows, so a
batch of many (unit, seed) items gives each item the result it would get alone (up to float reassociation).
The final image is quantized to 8 bits before its activation is measured, so `act_final` is the
activation of exactly the picture that gets saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .objectives import Acts, Objective

__all__ = ["Parameterization", "StepRule", "LoopResult", "optimize", "quantize", "OPTIMIZERS"]

Forward = Callable[[torch.Tensor], Acts]
Views = Callable[[torch.Tensor, int], torch.Tensor]
GroupPenalty = Callable[[Acts, torch.Tensor], torch.Tensor]  # (captured acts, objective [B]) -> [B]


@dataclass
class Parameterization:
    params: torch.Tensor  # [B, ...], optimized in place
    render: Callable[[torch.Tensor], torch.Tensor]  # params -> x01 RGB [B, 3, H, W]
    penalty: Callable[[torch.Tensor], torch.Tensor] | None = None  # params -> [B], subtracted
    project: Callable[[torch.Tensor, torch.Tensor, int], None] | None = None  # (params, grad, step), in place
    source: Callable[[torch.Tensor], torch.Tensor] | None = None  # params -> the image `render` upsamples


OPTIMIZERS = ("ascent", "adam")


@dataclass(frozen=True)
class StepRule:
    """`ascent`: params += lr_t * g, `normalize` dividing g by mean|g| per row first; `adam`: an Adam step
    (torch defaults, maximizing) of size lr_t. lr_t is linear from `lr` to `lr_end` (constant without one).
    Both are elementwise per row, so batch rows never interact."""

    lr: float
    lr_end: float | None = None
    normalize: bool = False
    optimizer: str = "ascent"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")

    def lr_at(self, t: int, steps: int) -> float:
        if self.lr_end is None or steps <= 1:
            return self.lr
        return self.lr + (self.lr_end - self.lr) * t / (steps - 1)


@dataclass
class LoopResult:
    images: torch.Tensor  # uint8 [B, H, W, 3] on the CPU: the saved pictures
    act_start: torch.Tensor  # [B] objective at the initial params
    act_final: torch.Tensor  # [B] objective of the quantized final image
    act_best: torch.Tensor  # [B] best objective seen at any step (on its views), final included
    final_acts: dict[str, torch.Tensor]  # captured layers for the quantized final images (detached)
    params: torch.Tensor  # final params (detached)


def quantize(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] float images -> the nearest 8-bit values, still as floats in [0, 1]."""
    return torch.round(x01.clamp(0, 1) * 255) / 255


def optimize(param: Parameterization, objective: Objective, forward: Forward, steps: int, rule: StepRule,
             *, views: Views | None = None, progress: Callable[[int], None] | None = None,
             diversity: GroupPenalty | None = None) -> LoopResult:
    """Run `steps` ascent steps on every row of `param.params`; see the module docstring."""
    p = param.params
    p.requires_grad_(True)
    best = None
    start = None
    if views is not None and steps:  # the views' activations are not the picture's: measure it untransformed
        with torch.no_grad():
            start = objective(forward(param.render(p))).detach()
    adam = torch.optim.Adam([p], lr=rule.lr, maximize=True) if rule.optimizer == "adam" else None
    if views is not None and hasattr(views, "plan"):
        views.plan(steps)
    for t in range(steps):
        if views is None:
            acts = forward(param.render(p))
        else:
            acts = forward(views((param.source or param.render)(p), t))
        act = objective(acts)
        total = act - param.penalty(p) if param.penalty is not None else act
        if diversity is not None:
            total = total - diversity(acts, act)
        (grad,) = torch.autograd.grad(total.sum(), p)
        act = act.detach()
        start = act.clone() if start is None else start
        best = act.clone() if best is None else torch.maximum(best, act)
        with torch.no_grad():
            lr = rule.lr_at(t, steps)
            if adam is not None:
                adam.param_groups[0]["lr"] = lr
                p.grad = grad
                adam.step()
                p.grad = None
            else:
                step = grad
                if rule.normalize:
                    scale = grad.abs().flatten(1).mean(1).clamp_min(1e-12)
                    step = grad / scale.view(-1, *([1] * (grad.dim() - 1)))
                p.add_(step, alpha=lr)
            if param.project is not None:
                param.project(p, grad, t)
        if progress is not None:
            progress(t)
    with torch.no_grad():
        final = quantize(param.render(p))
        acts = {k: v.detach() for k, v in forward(final).items()}
        act_final = objective(acts)
    start = act_final.clone() if start is None else start
    best = act_final.clone() if best is None else torch.maximum(best, act_final)
    images = (final * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    return LoopResult(images, start.cpu(), act_final.cpu(), best.cpu(), acts, p.detach())
