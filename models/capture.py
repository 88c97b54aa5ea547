"""Capture layer outputs by dotted module path, running the net only as deep as needed.

Hooks exist only inside `capture()` and are removed in `finally` (actors reuse one net for thousands of
batches). Once every requested layer has fired, a private exception stops the forward pass, so a batch
that probes an early layer never pays for the rest of the network.

A module that runs several times in one forward pass (a shared ReLU) is captured at its first call.
Modules returning a tuple, list or dict are captured as their first tensor.
"""

from __future__ import annotations

from typing import Collection, Iterator

import torch
from torch import nn

from .errors import UserInputError

__all__ = ["capture", "first_tensor", "modules_by_name"]


class _StopForward(Exception):
    """Raised by the last needed hook to end the forward pass early."""


def modules_by_name(net: nn.Module, names: Collection[str], model_name: str = "the model") -> dict[str, nn.Module]:
    """Resolve dotted paths; an unknown one raises UserInputError naming the discovery command."""
    table = dict(net.named_modules())
    out = {}
    for name in names:
        if name not in table or name == "":
            raise UserInputError(f"unknown layer {name!r}; run 'neuron-atlas layers --model {model_name}' "
                                 "to list the addressable layers")
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


def capture(net: nn.Module, x: torch.Tensor, layers: Collection[str], *, truncate: bool = True,
            model_name: str = "the model") -> dict[str, torch.Tensor]:
    """Run `net(x)` and return {layer: output} for every requested layer.

    With `truncate` the forward pass stops right after the last requested layer has fired. Raises
    RuntimeError if a requested layer never runs during the forward pass.
    """
    wanted = modules_by_name(net, layers, model_name)
    acts: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            if name in acts:
                return
            t = first_tensor(output)
            if t is None:
                raise RuntimeError(f"layer {name!r} returned no tensor")
            acts[name] = t
            if truncate and len(acts) == len(wanted):
                raise _StopForward
        return hook

    try:
        for name, module in wanted.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        try:
            net(x)
        except _StopForward:
            pass
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in wanted if n not in acts]
    if missing:
        raise RuntimeError(f"layers {missing} did not run during the forward pass")
    return acts

