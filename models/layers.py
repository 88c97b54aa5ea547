"""Discover the addressable layers of a net: dotted path, module type, output shape, execution order.

One traced forward pass with a hook on every named module; hooks are removed afterwards. Units of a layer
are its channels (dim 1 of the output); conv layers also have a spatial size (H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .capture import first_tensor

__all__ = ["LayerInfo", "trace_layers", "format_layers"]


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    shape: tuple[int, ...]  # output shape without the batch dimension
    order: int  # position of the module's first call in the forward pass
    calls: int = 1

    @property
    def units(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def spatial(self) -> tuple[int, int] | None:
        return (self.shape[-2], self.shape[-1]) if len(self.shape) == 3 else None


@torch.no_grad()
def trace_layers(net: nn.Module, example: torch.Tensor) -> dict[str, LayerInfo]:
    """Trace `net(example)` (batch of 1) and return {name: LayerInfo} in execution order."""
    seen: dict[str, list] = {}
    handles = []

    def make_hook(name: str, module: nn.Module):
        def hook(_m, _i, output):
            if name in seen:
                seen[name][3] += 1
                return
            t = first_tensor(output)
            if t is not None and t.dim() >= 2:
                seen[name] = [type(module).__name__, tuple(t.shape[1:]), len(seen), 1]
        return hook

    try:
        for name, module in net.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name, module)))
        net(example)
    finally:
        for h in handles:
            h.remove()
    return {n: LayerInfo(n, t, s, o, c) for n, (t, s, o, c) in seen.items()}


def format_layers(layers: dict[str, LayerInfo]) -> str:
    """A fixed-width table: layer, type, units, spatial size (the `neuron-atlas layers` output)."""
    rows = [("layer", "type", "units", "spatial")]
    for info in layers.values():
        sp = info.spatial
        spatial = f"{sp[0]}x{sp[1]}" if sp else "-"
        note = f" (runs {info.calls}x; first call is used)" if info.calls > 1 else ""
        rows.append((info.name, info.type + note, str(info.units), spatial))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
