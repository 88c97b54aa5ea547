"""Running a video model on clips: captured layers in their time layout, the per-frame CNN in checkpointed chunks.

`VideoForward(net, video, layers)` is a `with` block (STYLE 4: hooks and the patched forward exist only inside
it). Each call takes clips `[B, T, 3, H, W]` (already the net's input) and returns `{layer: [B, T', ...]}`
with time on dim 1: T' = T for per-frame and sequence layers, 1 for clip-level layers (models/video.py lists
the layouts). The model's own return value is kept as `last_output` when the pass ran to the end.

Memory that does not grow with the video: inside the block, the per-frame module (`VideoNet.frame_module`)
runs more than `chunk` frames `chunk` at a time, each chunk under `torch.utils.checkpoint` (non-reentrant)
when gradients are on, so only chunk inputs and outputs stay alive between the forward and the backward pass;
a chunk's activations are recomputed during backward. At most `chunk` frames run as one plain pass. Hooks
record only while the forward pass runs (never during the recomputation) and stitch the chunks of a layer
back together in order. The pass stops once every requested layer is complete, but never from inside a chunk
(the per-frame module finishes first).

cuDNN refuses the backward pass of an RNN in eval mode, so on CUDA every RNN module runs with cuDNN off
(a pre/post hook pair around it); convolutions keep cuDNN.
"""

from __future__ import annotations

from typing import Collection

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.capture import first_tensor, modules_by_name
from models.video import VideoNet

__all__ = ["VideoForward"]


class _Stop(Exception):
    """Raised by a hook once every requested layer is complete."""


class VideoForward:
    """Hooks on `layers` (and the chunked per-frame module) for the lifetime of a `with` block."""

    def __init__(self, net: nn.Module, video: VideoNet, layers: Collection[str], *, chunk: int | None = 16,
                 use_checkpoint: bool = True, truncate: bool = True, model_name: str = "the model"):
        self.net, self.video = net, video
        self.wanted = modules_by_name(net, layers, model_name)
        for name in self.wanted:
            if name not in video.layers:
                raise ValueError(f"layer {name!r} has no time layout the video tracer recognised")
        self.chunk = chunk if chunk and chunk > 0 else None
        self.use_checkpoint, self.truncate = use_checkpoint, truncate
        self.handles: list = []
        self.parts: dict[str, list[torch.Tensor]] = {}
        self.recording, self.depth, self.bt = False, 0, (0, 0)
        self.last_output: torch.Tensor | None = None
        self._patched: tuple[nn.Module, object] | None = None
        self._cudnn: list[bool] = []

    # -- hooks ----------------------------------------------------------------------------------------------
    def _hook(self, name: str):
        def hook(_m, _i, output):
            if not self.recording:
                return  # a checkpointed chunk being recomputed in the backward pass
            t = first_tensor(output)
            if t is None:
                raise RuntimeError(f"layer {name!r} returned no tensor")
            self.parts.setdefault(name, []).append(t)
            self._maybe_stop()
        return hook

    def _complete(self, name: str) -> bool:
        parts, (b, t) = self.parts.get(name, []), self.bt
        layout = self.video.layers[name].layout
        if layout == "frames":
            return sum(p.shape[0] for p in parts) >= b * t
        if layout == "steps":
            return len(parts) >= t
        return len(parts) >= 1

    def _maybe_stop(self) -> None:
        if self.truncate and self.depth == 0 and all(self._complete(n) for n in self.wanted):
            raise _Stop

    def _chunked(self, forward):
        """The per-frame module's forward, run `chunk` frames at a time (checkpointed when grads are on)."""
        def run(x, *args, **kwargs):
            # one chunk's worth of frames runs as is: checkpointing it would recompute it for no lower peak
            if self.chunk is None or not isinstance(x, torch.Tensor) or x.shape[0] <= self.chunk:
                return forward(x, *args, **kwargs)
            outs = []
            self.depth += 1
            try:
                for part in x.split(self.chunk):
                    if self.use_checkpoint and torch.is_grad_enabled():
                        outs.append(checkpoint(forward, part, *args, use_reentrant=False, **kwargs))
                    else:
                        outs.append(forward(part, *args, **kwargs))
            finally:
                self.depth -= 1
            return torch.cat(outs)
        return run

    def __enter__(self) -> "VideoForward":
        try:
            for name, module in self.wanted.items():
                self.handles.append(module.register_forward_hook(self._hook(name)))
            if self.video.frame_module is not None and self.chunk is not None:
                module = modules_by_name(self.net, [self.video.frame_module])[self.video.frame_module]
                self._patched = (module, module.__dict__.get("forward"))
                module.forward = self._chunked(module.forward)
                # the pass may stop as soon as the per-frame module is done, outside its chunks
                self.handles.append(module.register_forward_hook(lambda *_: self._maybe_stop()))
            if any(p.is_cuda for p in self.net.parameters()):
                for module in self.net.modules():
                    if isinstance(module, nn.RNNBase):
                        self.handles += [module.register_forward_pre_hook(self._cudnn_off),
                                         module.register_forward_hook(self._cudnn_back)]
        except BaseException:
            self.__exit__()
            raise
        return self

    def _cudnn_off(self, *_):
        self._cudnn.append(torch.backends.cudnn.enabled)
        torch.backends.cudnn.enabled = False

    def _cudnn_back(self, *_):
        if self._cudnn:
            torch.backends.cudnn.enabled = self._cudnn.pop()

    def __exit__(self, *_exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        if self._patched is not None:
            module, own = self._patched
            del module.forward
            if own is not None:
                module.forward = own
            self._patched = None

    # -- one pass -------------------------------------------------------------------------------------------
    def __call__(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """{layer: [B, T', ...]} for clips [B, T, 3, H, W]; see the module docstring."""
        if clips.dim() != 5:
            raise ValueError(f"clips must be [B, T, 3, H, W], got {list(clips.shape)}")
        self.parts, self.bt, self.last_output = {}, (clips.shape[0], clips.shape[1]), None
        self.recording = True
        try:
            self.last_output = self.net(clips)
        except _Stop:
            pass
        finally:
            self.recording = False
            while self._cudnn:
                torch.backends.cudnn.enabled = self._cudnn.pop()
        missing = [n for n in self.wanted if not self._complete(n)]
        if missing:
            raise RuntimeError(f"layers {missing} did not run for every frame during the forward pass")
        parts, self.parts = self.parts, {}
        return {name: self._assemble(name, parts[name]) for name in self.wanted}

    def _assemble(self, name: str, parts: list[torch.Tensor]) -> torch.Tensor:
        b, t = self.bt
        layout = self.video.layers[name].layout
        if layout == "frames":
            x = torch.cat(parts) if len(parts) > 1 else parts[0]
            return x.reshape(b, t, *x.shape[1:])
        if layout == "steps":
            return torch.stack(parts[:t], 1)
        if layout == "tb":
            return parts[0].transpose(0, 1)
        if layout == "clip":
            return parts[0].unsqueeze(1)
        return parts[0]
