"""Discover the addressable layers of a net: dotted path, module type, output shape, execution order.

One traced forward pass with a hook on every named module; hooks are removed afterwards. Units of a layer
are its feature channels, wherever its layout keeps them (models/layout.py: channels-first or channels-last
maps, token sequences, vectors); maps and patch-token grids also have positions (H, W). `LayerInfo.shape` is
the canonical, channel-first shape `[C, H, W]` or `[C]` that every reader sees; `raw` is the module's own.

`expand_layers` turns a `--layers` value into layer paths: each comma-separated part is a path, a shell-style
pattern over the paths (`fnmatch`: `*` also crosses dots, so `'layer*.*.conv2'` and `'features.*'` work), or
`all`: every layer that owns units, i.e. every convolution and fully connected layer (`UNIT_TYPES`), not the
normalizations, activations and containers that repeat those units. Paths come out in execution order,
each once.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

import torch
from torch import nn

from .capture import first_tensor, unknown_layer
from .errors import UserInputError
from .layout import Layout, TraceRecord, default_layout, forced_layout, infer_layouts

__all__ = ["LayerInfo", "trace_layers", "format_layers", "layers_json", "expand_layers", "is_layer_pattern",
           "select_layers", "default_selection", "UNIT_TYPES"]

# module types whose outputs are a net's own units: what `--layers all` selects
UNIT_TYPES = frozenset({"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
                        "Linear", "Bilinear", "LazyLinear", "LazyConv1d", "LazyConv2d", "LazyConv3d"})


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    shape: tuple[int, ...]  # canonical output shape without the batch dimension: [C, H, W] or [C]
    order: int  # position of the module's first call in the forward pass
    calls: int = 1
    layout: Layout | None = None  # None: read as shaped (a vector, else channels first)
    raw: tuple[int, ...] | None = None  # the module's own output shape without the batch dimension

    @property
    def reading(self) -> Layout:
        """The layout readers apply (models/layout.py); the default one when none was inferred."""
        return self.layout or default_layout(self.shape)

    @property
    def positions(self) -> str:
        """`HxW`, `197 tokens = cls + 14x14` or `-`: what `neuron-atlas layers` shows."""
        return self.reading.positions(self.raw or self.shape)

    @property
    def prefix(self) -> int:
        """How many prefix tokens (class token, registers) precede a token layer's patch grid."""
        return self.reading.prefix

    @property
    def units(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def spatial(self) -> tuple[int, int] | None:
        return (self.shape[-2], self.shape[-1]) if len(self.shape) == 3 else None


@torch.no_grad()
def trace_layers(net: nn.Module, example: torch.Tensor, layouts: dict[str, str] | None = None) -> dict[str, LayerInfo]:
    """Trace `net(example)` (batch of 1) and return {name: LayerInfo} in execution order, each layer's layout
    inferred (models/layout.py) unless `layouts` sets it ({layer: kind}, `--layout`)."""
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
    inferred = infer_layouts([TraceRecord(n, t, s, o) for n, (t, s, o, _c) in seen.items()])
    for name, kind in (layouts or {}).items():
        if name not in seen:
            raise UserInputError(f"--layout names {name!r}, which is no layer of this model; run "
                                 "'neuron-atlas layers' with the same --model to list them")
        inferred[name] = forced_layout(kind, seen[name][1], inferred.get(name))
    out = {}
    for n, (t, s, o, c) in seen.items():
        layout = inferred.get(n) or default_layout(s)
        out[n] = LayerInfo(n, t, layout.canonical_shape(s), o, c, layout, s)
    return out


def format_layers(layers: dict[str, LayerInfo]) -> str:
    """A fixed-width table: layer, type, layout, units (feature channels), positions (the `neuron-atlas layers`
    output)."""
    rows = [("layer", "type", "layout", "units", "positions")]
    for info in layers.values():
        note = f" (runs {info.calls}x; first call is used)" if info.calls > 1 else ""
        rows.append((info.name, info.type + note, info.reading.kind, str(info.units), info.positions))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def layers_json(layers: dict[str, LayerInfo]) -> list[dict]:
    """The `neuron-atlas layers --json` rows: path, type, layout, units, positions and shapes."""
    return [{"layer": i.name, "type": i.type, "calls": i.calls, "layout": i.reading.to_json(), "units": i.units,
             "spatial": list(i.spatial) if i.spatial else None, "positions": i.positions,
             "shape": list(i.shape), "raw_shape": list(i.raw or i.shape)} for i in layers.values()]


def is_layer_pattern(token: str) -> bool:
    """Whether a `--layers` part is a pattern (or `all`) rather than one path."""
    return token == "all" or any(c in token for c in "*?[")


def expand_layers(tokens, layers: dict[str, LayerInfo], model: str) -> list[str]:
    """The layer paths `tokens` name (module docstring), in execution order, each once; a path that is no
    layer, or a pattern that matches none, raises UserInputError naming the closest paths."""
    order = sorted(layers, key=lambda n: layers[n].order)
    chosen: set[str] = set()
    for token in tokens:
        if token == "all":
            chosen.update(n for n in order if layers[n].type in UNIT_TYPES)
        elif is_layer_pattern(token):
            hits = fnmatch.filter(order, token)
            if not hits:
                close = difflib.get_close_matches(token.replace("*", "").replace("?", ""), order, n=3, cutoff=0.3)
                hint = f"; closest paths: {', '.join(close)}" if close else ""
                raise UserInputError(f"--layers pattern {token!r} matches no layer of {model!r}{hint}; run "
                                     f"'neuron-atlas layers --model {model}' to list them")
            chosen.update(hits)
        elif token in layers:
            chosen.add(token)
        else:
            close = difflib.get_close_matches(token, order, n=3, cutoff=0.5)
            error = unknown_layer(token, model)
            raise UserInputError(f"{error} (closest: {', '.join(close)})") if close else error
    return [n for n in order if n in chosen]


def default_selection(entry, layer_units) -> list[tuple[str, str]]:
    """(layer, units spec) of a registry entry's demo selection, `--layer-units` entries overriding a layer's
    spec; empty for an entry without one."""
    overrides = dict(layer_units)
    return [(layer, overrides.get(layer, units)) for layer, units in getattr(entry, "default_selection", ())]


def select_layers(tokens, units: str, layer_units, layers: dict[str, LayerInfo], model: str) -> list[tuple[str, str]]:
    """(layer, units spec) for every layer `tokens` name: `units`, or the spec of the last `--layer-units`
    entry whose key (a path or a pattern) names the layer. A key that names no selected layer is an error."""
    names = expand_layers(tokens, layers, model)
    chosen = {name: units for name in names}
    for key, spec in layer_units:
        hits = fnmatch.filter(names, key) if is_layer_pattern(key) else [key] if key in chosen else []
        if not hits:
            raise UserInputError(f"--layer-units names {key!r}, which is not in --layers; add it there")
        chosen.update({name: spec for name in hits})
    return list(chosen.items())
