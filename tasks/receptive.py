"""Receptive fields: which input pixels can influence one position of a layer's output.

`receptive_fields(net, layers, example)` traces the net with torch.fx, propagates an arithmetic geometry
through its graph and returns, per layer (dotted module path), a `Geometry`, or None where the field is the
whole input (fully connected layers, global pooling, anything after them).

The geometry per axis is (jump, size, start): output position i sees input pixels
[start + i * jump, start + i * jump + size), before clipping to the image. Convolutions and pooling compose
it exactly: start -= padding * jump, size += (dilation * (kernel - 1)) * jump, jump *= stride. Ops that join
several tensors (a residual add, a concatenation) take the union of their inputs' fields when the jumps
agree, else the whole input. Any other op that keeps the spatial size (activations, normalization, dropout,
per-channel affine maps) passes the field through; one that changes it (flatten, adaptive pooling,
interpolation) makes it the whole input. This is the theoretical field: an upper bound on where a unit looks,
the standard one for dataset-example crops.

A net torch.fx cannot trace (data-dependent control flow) raises `NotTraceable`; callers fall back to whole
images.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Collection

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["Geometry", "receptive_fields", "NotTraceable", "IDENTITY"]


class NotTraceable(Exception):
    """torch.fx could not trace the net."""


@dataclass(frozen=True)
class Geometry:
    jump: tuple[int, int]
    size: tuple[int, int]
    start: tuple[int, int]

    def compose(self, kernel, stride, padding, dilation=1) -> "Geometry":
        """The geometry after a conv/pool with these (int or pair) hyperparameters."""
        k, s, p, d = (_pair(v) for v in (kernel, stride, padding, dilation))
        return Geometry(tuple(j * s[a] for a, j in enumerate(self.jump)),
                        tuple(self.size[a] + d[a] * (k[a] - 1) * self.jump[a] for a in range(2)),
                        tuple(self.start[a] - p[a] * self.jump[a] for a in range(2)))

    def box(self, y: int, x: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1), half-open, of output position (y, x), clipped to a height x width input."""
        y0, x0 = self.start[0] + y * self.jump[0], self.start[1] + x * self.jump[1]
        return (max(0, y0), max(0, x0), min(height, y0 + self.size[0]), min(width, x0 + self.size[1]))


IDENTITY = Geometry((1, 1), (1, 1), (0, 0))
_WHOLE = "whole"  # the whole input
_CONST = "const"  # depends on no input (weights, buffers, literals)
_CONV = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_PADS = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)
_JOIN = {operator.add, operator.mul, operator.sub, torch.add, torch.mul, torch.sub, torch.cat, torch.stack,
         torch.addcmul, "add", "mul", "sub", "add_", "mul_"}


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


class _Tracer(fx.Tracer):
    """Records the output of every module call (first call), leaf or not, by dotted path."""

    def __init__(self):
        super().__init__()
        self.outputs: dict[str, object] = {}

    def call_module(self, m, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        self.outputs.setdefault(self.path_of_module(m), out)
        return out


def _first_proxy(out) -> fx.Node | None:
    if isinstance(out, fx.Proxy):
        return out.node
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for item in out:
            found = _first_proxy(item)
            if found is not None:
                return found
    return None


def _spatial(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    shape = getattr(meta, "shape", None)
    return tuple(shape[-2:]) if shape is not None and len(shape) >= 3 else None


def _union(geos: list) -> object:
    live = [g for g in geos if g != _CONST]
    if not live:
        return _CONST
    if any(g == _WHOLE for g in live) or len({g.jump for g in live}) > 1:
        return _WHOLE
    start = tuple(min(g.start[a] for g in live) for a in range(2))
    end = tuple(max(g.start[a] + g.size[a] for g in live) for a in range(2))
    return Geometry(live[0].jump, tuple(end[a] - start[a] for a in range(2)), start)


def _functional_conv(node: fx.Node, geo: Geometry) -> Geometry | None:
    """F.conv2d / F.max_pool2d / F.avg_pool2d called directly in a forward."""
    def arg(i, name, default):
        return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)

    if node.target is F.conv2d:
        weight = node.args[1] if len(node.args) > 1 else node.kwargs["weight"]
        shape = weight.meta["tensor_meta"].shape
        return geo.compose(tuple(shape[2:]), arg(3, "stride", 1), arg(4, "padding", 0), arg(5, "dilation", 1))
    if node.target in (F.max_pool2d, F.avg_pool2d, torch.max_pool2d):
        kernel = arg(1, "kernel_size", None)
        stride = arg(2, "stride", None) or kernel
        dilation = arg(4, "dilation", 1) if node.target in (F.max_pool2d, torch.max_pool2d) else 1
        return geo.compose(kernel, stride, arg(3, "padding", 0), dilation)
    return None


def _node_geometry(node: fx.Node, geo: dict, modules: dict[str, nn.Module]):
    inputs = [geo[a] for a in node.all_input_nodes]
    if node.op == "placeholder":
        return IDENTITY
    if node.op == "get_attr" or not inputs:
        return _CONST
    joined = _union(inputs)
    if joined in (_CONST, _WHOLE):
        return joined
    if node.op == "call_module":
        m = modules[node.target]
        if isinstance(m, _CONV):
            dil = getattr(m, "dilation", 1)
            padding = m.padding if not isinstance(m.padding, str) else _same_padding(m)
            return joined.compose(m.kernel_size, m.stride, padding, dil)
        if isinstance(m, _PADS):
            left, _right, top, _bottom = (m.padding if isinstance(m.padding, tuple) and len(m.padding) == 4
                                          else (_pair(m.padding)[0],) * 4)
            return Geometry(joined.jump, joined.size, (joined.start[0] - top * joined.jump[0],
                                                        joined.start[1] - left * joined.jump[1]))
    elif node.op == "call_function":
        conv = _functional_conv(node, joined)
        if conv is not None:
            return conv
    live = [a for a in node.all_input_nodes if geo[a] != _CONST]
    if _spatial(node) is None or {_spatial(a) for a in live} != {_spatial(node)}:
        return _WHOLE
    if len(live) > 1 and node.target not in _JOIN:
        return _WHOLE  # an unknown op joining several spatial tensors
    return joined


def _same_padding(m: nn.Conv2d) -> tuple[int, int]:
    if m.padding == "valid":
        return (0, 0)
    d = _pair(m.dilation)
    return tuple(d[a] * (m.kernel_size[a] - 1) // 2 for a in range(2))  # type: ignore[return-value]


@torch.no_grad()
def receptive_fields(net: nn.Module, layers: Collection[str], example: torch.Tensor) -> dict[str, Geometry | None]:
    """{layer: Geometry, or None for a field covering the whole input}; `example` is one input batch."""
    tracer = _Tracer()
    try:
        graph = tracer.trace(net)
        gm = fx.GraphModule(net, graph)
        ShapeProp(gm).propagate(example)
    except Exception as e:  # noqa: BLE001 - fx raises many types (TraceError, TypeError, ...)
        raise NotTraceable(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
    modules = dict(net.named_modules())
    geo: dict[fx.Node, object] = {}
    for node in graph.nodes:
        if node.op != "output":
            geo[node] = _node_geometry(node, geo, modules)
    out = {}
    for layer in layers:
        node = _first_proxy(tracer.outputs.get(layer))
        g = geo.get(node) if node is not None else None
        out[layer] = g if isinstance(g, Geometry) else None
    return out
