"""The peer: Lucent (Lucid for PyTorch, `torch-lucent` 0.1.8), one unit at a time, as its users run it.

Installed only into the benchmark environment (`.bench-deps`, see the Makefile), never a runtime
dependency. Matched to our image-space AM: same model and weights, same 224 px resolution, same number of
steps, same objective (the unit's activation at the same position), Lucent's transforms off (`transforms=[]`,
its normalization kept, as ours), and a plain pixel parameterization (`fft=False, decorrelate=False`), so the
per-step work is one forward and one backward pass of the model for one image. Lucent runs the whole model
every step (it hooks every module and never stops early); its Adam update costs as little as our step.
Lucent gets the plain torchvision module with the same weights, as its users load it; our frozen-BatchNorm,
channels_last copy is one of our optimizations (the report also gives Lucent on that copy).
"""

from __future__ import annotations

import time

import torch

__all__ = ["lucent_available", "time_lucent", "plain_model"]


def lucent_available() -> bool:
    try:
        import lucent.optvis.render  # noqa: F401
    except Exception:
        return False
    return True


def plain_model(name: str, weights: str) -> torch.nn.Module:
    """The model as a Lucent user has it: torchvision's module with the same weights, nothing else done."""
    from models.registry import resolve_model
    from models.weights import load_into, read_weights

    entry = resolve_model(name)
    net = entry.build()
    load_into(net, read_weights(weights), name)
    return net.eval()


def time_lucent(model: torch.nn.Module, units: list[tuple[str, int, int | None, int | None]], steps: int,
                size: int = 224) -> float:
    """Seconds for Lucent to optimize every (layer, channel, y, x) of `units`, one at a time."""
    from lucent.optvis import objectives, param, render

    model.eval()
    t0 = time.perf_counter()
    for layer, channel, y, x in units:
        name = layer.replace(".", "_")  # Lucent's hook names join module paths with '_'
        if y is None:
            obj = objectives.channel(name, channel)  # an fc unit: [B, C] output
        else:
            obj = objectives.neuron(name, channel, x=x, y=y)
        render.render_vis(model, obj, param_f=lambda: param.image(size, fft=False, decorrelate=False),
                          transforms=[], thresholds=(steps,), progress=False, show_image=False)
    return time.perf_counter() - t0
