"""The peer: Lucent (Lucid for PyTorch, `torch-lucent` 0.1.8), one unit at a time, as its users run it.

Two uses. `time_lucent` is the plain-pixel speed peer below. `python -m benchmarks.lucent_peer --out DIR
--classes 285,504 --steps 512 --size 224` is Lucent's default `render_vis` recipe (FFT + decorrelated colour,
standard transforms, Adam 0.05) end to end in its own process (imports, model load, one class at a time),
writing DIR/<class>.png: the quality and speed peer of our `lucid` style (benchmarks/quality.py).

Installed only into the benchmark environment (`.bench-deps`, see the Makefile), never a runtime
dependency. Matched to our image-space AM: same model and weights, same 224 px resolution, same number of
steps, same objective (the unit's activation at the same position), Lucent's transforms off (`transforms=[]`,
its normalization kept, as ours), and a plain pixel parameterization (`fft=False, decorrelate=False`), so the
per-step work is one forward and one backward pass of the model for one image. Lucent runs the whole model
every step (it hooks every module and never stops early); its Adam update costs as little as our step.
Lucent gets the plain torchvision module with the same weights, as its users load it; our frozen-BatchNorm,
channels_last copy is one of our optimizations (the report also gives Lucent on that copy).

Lucent picks its own device (`lucent_device()`: `cuda:0` wherever CUDA exists, else the CPU) for its
parameters and transforms; the model must be there too, so `time_lucent` refuses a model elsewhere and `main`
loads it there.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from models.loading import RANDOM_WEIGHTS

from .timing import clock

__all__ = ["lucent_available", "lucent_device", "time_lucent", "plain_model", "render_classes"]


def lucent_available() -> bool:
    try:
        import lucent.optvis.render  # noqa: F401
    except Exception:
        return False
    return True


def lucent_device() -> torch.device:
    """The device Lucent 0.1.8 puts its parameters and transforms on (it decides at import, not per call)."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def plain_model(name: str, weights: str, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The model as a Lucent user has it: torchvision's module with the same weights (`random`: re-initialized,
    as models.loading does), nothing else done, in eval mode on `device`."""
    from models.net_state import reinitialize
    from models.registry import resolve_model
    from models.weights import load_into, read_weights

    entry = resolve_model(name)
    net = entry.build()
    if weights == RANDOM_WEIGHTS:
        reinitialize(net, name)
    else:
        load_into(net, read_weights(weights), name)
    return net.eval().to(device)


def time_lucent(model: torch.nn.Module, units: list[tuple[str, int, int | None, int | None]], steps: int,
                size: int = 224) -> float:
    """Seconds for Lucent to optimize every (layer, channel, y, x) of `units`, one at a time; `model` must be on
    `lucent_device()` (ValueError otherwise: Lucent would swallow the device mismatch as a warning)."""
    from lucent.optvis import objectives, param, render

    device = lucent_device()
    held = {p.device for p in model.parameters()}
    if held != {device}:
        raise ValueError(f"Lucent runs on {device}; the model is on {', '.join(map(str, held))}")
    model.eval()
    t0 = clock(device)
    for layer, channel, y, x in units:
        name = layer.replace(".", "_")  # Lucent's hook names join module paths with '_'
        if y is None:
            obj = objectives.channel(name, channel)  # an fc unit: [B, C] output
        else:
            obj = objectives.neuron(name, channel, x=x, y=y)
        render.render_vis(model, obj, param_f=lambda: param.image(size, fft=False, decorrelate=False),
                          transforms=[], thresholds=(steps,), progress=False, show_image=False)
    return clock(device) - t0


def render_classes(model: torch.nn.Module, layer: str, classes: list[int], steps: int, size: int, out: str,
                   seed: int = 0) -> None:
    """Lucent's default recipe for each class of `layer` (param.image(size): FFT, decorrelated colour;
    standard transforms; Adam 0.05), seeded per class; saves the 8-bit result as out/<class>.png."""
    from lucent.optvis import objectives, param, render
    from PIL import Image

    _kornia_compat()
    model.eval()
    os.makedirs(out, exist_ok=True)
    for c in classes:
        torch.manual_seed(seed)
        np.random.seed(seed)
        (image,) = render.render_vis(model, objectives.channel(layer.replace(".", "_"), c),
                                     param_f=lambda: param.image(size), thresholds=(steps,), progress=False,
                                     show_image=False)
        Image.fromarray((np.clip(image[0], 0, 1) * 255).round().astype(np.uint8)).save(f"{out}/{c}.png")


def _kornia_compat() -> None:
    """Lucent 0.1.8 calls kornia.get_rotation_matrix2d / kornia.warp_affine, top-level names of the
    kornia<=0.4.1 it pins; newer kornia keeps the same functions under kornia.geometry.transform."""
    import kornia
    from kornia.geometry import transform

    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(transform, name))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Lucent's default render_vis for logit units of MobileNetV2")
    ap.add_argument("--out", required=True)
    ap.add_argument("--classes", required=True)
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--size", type=int, default=224, help="image size (Lucent's own default is 128, upsampled)")
    ap.add_argument("--weights", help="default: the embedded MobileNetV2 weights")
    args = ap.parse_args(argv)
    from models.loading import resolve_weights_uri
    from models.registry import resolve_model

    weights = resolve_weights_uri(resolve_model("mobilenet_v2"), args.weights)
    render_classes(plain_model("mobilenet_v2", weights, lucent_device()), "classifier.1",
                   [int(c) for c in args.classes.split(",")], args.steps, args.size, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
