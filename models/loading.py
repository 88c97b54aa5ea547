"""Build a registry entry into a ready-to-probe network: weights loaded, eval mode, frozen, on a device.

Which weights (`resolve_weights_uri`): a URI is loaded over the built net; `random` re-initializes every
module with its own `reset_parameters()`, seeded (the label stays `random`); without `--weights`, a registry
entry loads its embedded weights, and a `package.module:Callable` (which may load trained weights itself)
is used exactly as built, labelled `built-<sha8>` with the digest of its state dict (models/net_state.py).
A worker given the digest the driver found (`expect_sha256`) refuses a build that differs from it (a
callable that reads files or packages which differ between nodes), so one label never covers two builds.

In-place activations are switched off so a captured layer output is never overwritten by the next module
(MobileNetV2's ReLU6(inplace=True) would otherwise turn a captured conv output into its ReLU'd value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from .errors import UserInputError
from .frozen import freeze_batchnorm
from .layers import LayerInfo, trace_layers
from .layout import Layout
from .net_state import reinitialize, state_digest
from .retry import RetryPolicy
from .weights import load_into, read_weights

__all__ = ["LoadedNet", "load_net", "resolve_weights_uri", "is_built", "RANDOM_WEIGHTS", "BUILT_WEIGHTS"]

RANDOM_WEIGHTS = "random"
BUILT_WEIGHTS = "built"  # the net as its builder made it; LoadedNet.weights_uri becomes 'built-<sha8>'


@dataclass
class LoadedNet:
    """A frozen network on `device` with its registry entry, layer table and weights digest.

    `weights_uri` is the URI loaded, `random`, or `built-<sha8>`; `weights_sha256` is the file's digest, the
    built state dict's digest, or None for random weights.
    """

    entry: Any
    net: nn.Module
    layers: dict[str, LayerInfo]
    weights_uri: str
    weights_sha256: str | None
    device: torch.device
    normalize: nn.Module | None = None  # the entry's preprocessing on `device` (None for generators)
    inplace: tuple[str, ...] = ()  # modules the builder made in place (switched off here; models/inference.py)

    @property
    def layouts(self) -> dict[str, Layout | None]:
        """{layer: layout}: what a Capture on this net is given so every reader sees channel-first outputs."""
        return {name: info.layout for name, info in self.layers.items()}

    def to_input(self, x01: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB images -> this net's input, in the channels_last layout `load_net` keeps nets in."""
        if self.normalize is None:
            raise TypeError(f"{self.entry.name!r} takes codes, not images")
        return self.normalize(x01).contiguous(memory_format=torch.channels_last)


def is_built(weights_uri: str) -> bool:
    """Whether a LoadedNet's `weights_uri` labels a net used as its callable built it (`built-<sha8>`)."""
    return weights_uri.startswith(f"{BUILT_WEIGHTS}-")


def resolve_weights_uri(entry, weights: str | None) -> str:
    """--weights, else the entry's embedded weights, else `built` for a self-loading (import-path) entry."""
    if weights:
        return weights
    if entry.default_weights is not None:
        return entry.default_weights()
    if getattr(entry, "self_loading", False):
        return BUILT_WEIGHTS
    raise UserInputError(f"model {entry.name!r} has no embedded weights; pass --weights URI "
                         f"(or --weights {RANDOM_WEIGHTS} for an untrained net)")


def load_net(entry, weights: str | None = None, *, storage_options: Mapping[str, Any] | None = None,
             device: str | torch.device = "cpu", seed: int = 0, retry: RetryPolicy | None = None,
             expect_sha256: str | None = None) -> LoadedNet:
    """Build `entry`, load weights (see the module docstring; `seed` fixes random ones), trace its layers.

    `expect_sha256`: for a net used as built, the state digest it must have (the one the run was planned
    with); a different build raises UserInputError. Ignored for weights loaded from a URI or random ones."""
    uri = resolve_weights_uri(entry, weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # builds that draw from torch's RNG, and 'random' weights, are reproducible
        try:
            net = entry.build()
        except Exception as e:
            raise UserInputError(f"building model {entry.name!r} failed: {e}") from e
        if not isinstance(net, nn.Module):
            raise UserInputError(f"model {entry.name!r} did not build an nn.Module (got {type(net).__name__})")
        if uri == RANDOM_WEIGHTS:
            reinitialize(net, entry.name)
    sha = None
    if uri == BUILT_WEIGHTS:
        sha = state_digest(net)
        uri = f"{BUILT_WEIGHTS}-{sha[:8]}"
        if expect_sha256 is not None and sha != expect_sha256:
            raise UserInputError(
                f"model {entry.name!r} built different weights on this worker (state digest {sha[:8]}) than where "
                f"the run was planned ({expect_sha256[:8]}): its callable must build the same net on every node; "
                "save its state_dict() and pass it with --weights URI to run one fixed set of weights")
    elif uri != RANDOM_WEIGHTS:
        loaded = read_weights(uri, storage_options, retry)
        load_into(net, loaded, entry.name)
        sha = loaded.sha256
    inplace = []
    for name, module in net.named_modules():
        if hasattr(module, "inplace") and isinstance(module.inplace, bool):
            if module.inplace:
                inplace.append(name)
            module.inplace = False
    net.eval().requires_grad_(False)
    freeze_batchnorm(net)
    dev = torch.device(device)
    # channels_last: 15-30 % faster convolutions on CPU (oneDNN) and the layout tensor cores want on GPU
    net.to(dev, memory_format=torch.channels_last)
    example = torch.zeros(1, *entry.example_input_shape, device=dev)
    try:
        layers = trace_layers(net, example, dict(getattr(entry, "layouts", ())))
    except RuntimeError as e:
        if getattr(entry, "kind", "net") != "net":
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        shape = "x".join(map(str, entry.example_input_shape))
        raise UserInputError(f"model {entry.name!r} does not run on a {shape} input ({first}); give --channels "
                             "and --input-size that fit it") from e
    pre = getattr(entry, "preprocessing", None)
    normalize = pre.module().to(dev) if pre is not None else None
    return LoadedNet(entry, net, layers, uri, sha, dev, normalize, tuple(inplace))
