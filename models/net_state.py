"""A built network's own state: its digest, and seeded re-initialization.

`state_digest(net)` is the SHA-256 of the state dict as values (names, dtypes, shapes and bytes, in name
order), so two builds share a digest exactly when they hold the same numbers; a net used as its callable
built it is filed under the snapshot `built-<first 8 hex digits>`. `reinitialize(net)` is what
`--weights random` means for every model: each module's own `reset_parameters()` (PyTorch's default
initialization for that layer type; `_reset_parameters` where that is its name), drawn from the caller's
RNG state; a module that holds parameters but has no `reset_parameters` raises UserInputError rather than
silently keeping its built values.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from .errors import UserInputError

__all__ = ["state_digest", "reinitialize"]


def state_digest(net: nn.Module) -> str:
    """SHA-256 (hex) of `net.state_dict()`'s values; independent of device and memory layout."""
    h = hashlib.sha256()
    for name, value in sorted(net.state_dict().items()):
        t = value.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def reinitialize(net: nn.Module, model_name: str) -> int:
    """Call every module's `reset_parameters()`; returns how many modules were reset.

    Seed the global torch RNG first for reproducible values (load_net does).
    """
    stuck = [name or "<root>" for name, m in net.named_modules()
             if next(m.parameters(recurse=False), None) is not None and _reset(m) is None]
    if stuck:
        more = f" and {len(stuck) - 3} more" if len(stuck) > 3 else ""
        raise UserInputError(f"--weights random: model {model_name!r} has parameters that no reset_parameters() "
                             f"re-initializes (in {', '.join(stuck[:3])}{more}); give those modules a "
                             "reset_parameters method, or pass --weights URI")
    resets = [r for r in map(_reset, net.modules()) if r is not None]
    for reset in resets:
        reset()
    return len(resets)


def _reset(module: nn.Module):
    # nn.MultiheadAttention names its initializer _reset_parameters
    for attr in ("reset_parameters", "_reset_parameters"):
        fn = getattr(module, attr, None)
        if callable(fn):
            return fn
    return None
