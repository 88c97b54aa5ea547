"""Capture layer outputs by dotted module path, running the net only as deep as needed.

Hooks exist only inside a `Capture` block (or one `capture()` call) and are removed on the way out
(actors reuse one net for thousands of batches). Once every requested layer has fired, a private exception stops the forward pass, so a batch
that probes an early layer never pays for the rest of the network.

A module that runs several times in one forward pass (a shared ReLU) is captured at its first call.
Modules returning a tuple, list or dict (`MultiheadAttention`'s (output, weights)) are captured as their first
tensor. Given the layers' layouts (models/layout.py), each output is kept in its canonical channel-first view
(`[B, C, H, W]`, a token layer's patch grid as a map) and a token layer's prefix tokens beside it under
`prefix_key(layer)` (`[B, C, P]`), so every reader indexes channels in dim 1 whatever the architecture.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Iterator, Mapping

import torch
from torch import nn

from .errors import UserInputError
from .layout import Layout, prefix_key

__all__ = ["Capture", "capture", "first_tensor", "modules_by_name", "unknown_layer"]


class _StopForward(Exception):
    """Raised by the last needed hook to end the forward pass early."""


def unknown_layer(name: str, model_name: str) -> UserInputError:
    return UserInputError(f"unknown layer {name!r}; run 'neuron-atlas layers --model {model_name}' "
                          "to list the addressable layers")


def modules_by_name(net: nn.Module, names: Collection[str], model_name: str = "the model") -> dict[str, nn.Module]:
    """Resolve dotted paths; an unknown one raises UserInputError naming the discovery command."""
    table = dict(net.named_modules())
    out = {}
    for name in names:
        if name not in table or name == "":
            raise unknown_layer(name, model_name)
        out[name] = table[name]
    return out


def first_tensor(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


class Capture:
    """Forward hooks on `layers` for the lifetime of a `with` block; each call runs one forward pass.

    Registering hooks once per batch, not once per optimization step, keeps hook set-up off the hot path.
    With `truncate` the forward pass stops right after the last requested layer has fired. With `reduce`,
    a layer's entry is `reduce(layer, output)`, computed inside the hook, before any later module runs (so
    later in-place modules cannot change it; models/inference.py relies on this).
    """

    def __init__(self, net: nn.Module, layers: Collection[str], *, truncate: bool = True,
                 model_name: str = "the model", reduce: Callable[[str, torch.Tensor], Any] | None = None,
                 layouts: Mapping[str, Layout | None] | None = None):
        self.net = net
        self.wanted = modules_by_name(net, layers, model_name)
        self.truncate = truncate
        self.reduce = reduce
        self.layouts = {n: layouts.get(n) for n in self.wanted} if layouts else {}
        self.acts: dict[str, Any] = {}
        self.handles: list = []
        self._fired: set[str] = set()

    def _hook(self, name: str):
        layout = self.layouts.get(name)

        def hook(_module, _inputs, output):
            if name in self._fired:
                return
            t = first_tensor(output)
            if t is None:
                raise RuntimeError(f"layer {name!r} returned no tensor")
            self._fired.add(name)
            if layout is not None:
                prefix = layout.prefix_tokens(t)
                if prefix is not None:
                    self.acts[prefix_key(name)] = prefix
                t = layout.channels_first(t)
            self.acts[name] = t if self.reduce is None else self.reduce(name, t)
            if self.truncate and len(self._fired) == len(self.wanted):
                raise _StopForward
        return hook

    def __enter__(self) -> "Capture":
        try:
            for name, module in self.wanted.items():
                self.handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def __call__(self, x: torch.Tensor) -> dict[str, Any]:
        """{layer: output (or its reduction)} of every requested layer for input `x`."""
        if not self.handles:
            raise RuntimeError("Capture must be used inside its `with` block")
        self.acts, self._fired = {}, set()
        try:
            self.net(x)
        except _StopForward:
            pass
        missing = [n for n in self.wanted if n not in self._fired]
        if missing:
            raise RuntimeError(f"layers {missing} did not run during the forward pass")
        acts, self.acts = self.acts, {}
        return acts


def capture(net: nn.Module, x: torch.Tensor, layers: Collection[str], *, truncate: bool = True,
            model_name: str = "the model", layouts: Mapping[str, Layout | None] | None = None
            ) -> dict[str, torch.Tensor]:
    """One forward pass of `net(x)` returning {layer: output}; hooks are gone when it returns.

    Raises RuntimeError if a requested layer never runs during the forward pass.
    """
    with Capture(net, layers, truncate=truncate, model_name=model_name, layouts=layouts) as cap:
        return cap(x)
