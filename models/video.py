"""Video models (a per-frame CNN feeding an LSTM, as LRCN): the model contract and where each layer keeps time.

Contract: a video model is an `nn.Module` that takes clips `[B, T, 3, H, W]` (every frame preprocessed as its
entry says, models/preprocess.py) and returns class scores per clip `[B, C]` or per frame `[B, T, C]`.
`check_video_model` refuses anything else with a UserInputError that names the shape the model was given and
what it raised or returned.

Layers are addressed like image layers, by dotted module path (STYLE 3). Where a layer keeps the time axis is
found by tracing clips of B = 2 with T = 3 and again with T = 4 frames: a dimension that grows with T is time,
so no channel count can be mistaken for it. Layouts (`VideoLayer.layout`):
  frames  [B*T, ...]  a per-frame module on the flattened frames (the per-frame CNN and its layers)
  bt      [B, T, ...] a batch-first sequence (nn.LSTM(batch_first=True), a per-frame head)
  tb      [T, B, ...] a time-first sequence (nn.LSTM's default)
  steps   [B, ...]    once per frame, T calls (an LSTMCell or a CNN called in a loop over time)
  clip    [B, ...]    once per clip (a head on the last step or on pooled features)
`VideoLayer.info` is the LayerInfo of ONE time step (units = dim 0 of a frame's output, conv maps keep H x W),
so unit addressing (models/units.py) works unchanged. The per-frame module is the outermost module that is
given the frames as images `[N, 3, H, W]`; tasks/video/forward.py runs it in chunks with checkpointing.
`VideoNetEntry` is a NetEntry whose probe input is a clip, so `load_net` (and the actors) load video models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import nn

from .capture import first_tensor
from .errors import UserInputError
from .layers import LayerInfo
from .loading import LoadedNet, load_net
from .registry import NetEntry

__all__ = ["VideoNetEntry", "VideoLayer", "VideoNet", "LAYOUTS", "as_video_entry", "trace_video", "load_video_net",
           "format_video_layers", "PROBE_B", "PROBE_T"]

LAYOUTS = ("frames", "bt", "tb", "steps", "clip")
PROBE_B, PROBE_T = 2, (3, 4)


@dataclass(frozen=True)
class VideoNetEntry(NetEntry):
    """A NetEntry for a model that takes clips: its probe input is `[probe_frames, 3, H, W]` per batch row."""

    probe_frames: int = PROBE_T[0]
    kind: str = field(default="video", init=False)

    @property
    def example_input_shape(self) -> tuple[int, ...]:
        return (self.probe_frames, 3, *self.preprocessing.size)


def as_video_entry(entry) -> VideoNetEntry:
    """`entry` as a VideoNetEntry (a `package.module:Callable` resolves to a plain NetEntry)."""
    if isinstance(entry, VideoNetEntry):
        return entry
    if not isinstance(entry, NetEntry):
        raise UserInputError(f"{entry.name!r} is a {getattr(entry, 'kind', 'model')}, not a video model")
    return VideoNetEntry(**{f.name: getattr(entry, f.name) for f in fields(entry) if f.init})


@dataclass(frozen=True)
class VideoLayer:
    name: str
    type: str
    layout: str  # one of LAYOUTS
    step_shape: tuple[int, ...]  # one time step's output shape, without batch and time
    order: int

    @property
    def info(self) -> LayerInfo:
        return LayerInfo(self.name, self.type, self.step_shape, self.order)


@dataclass(frozen=True)
class VideoNet:
    """What tracing found: addressable layers, the per-frame module (None: no module takes frames as images),
    the layer whose output the model returns (None: the forward computes it after the last module), and
    whether the model scores per frame ([B, T, C]) or per clip ([B, C])."""

    layers: dict[str, VideoLayer]
    frame_module: str | None
    output_layer: str | None
    per_frame_output: bool
    classes: int


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


class _Probe:
    """Hooks on every named module for one traced pass: output shapes per call, and which module first got
    the frames as images."""

    def __init__(self, net: nn.Module):
        self.net = net
        self.calls: dict[str, list[tuple[int, ...]]] = {}
        self.types: dict[str, str] = {}
        self.outputs: dict[str, torch.Tensor] = {}  # the last output of each module (held, so `is` is safe)
        self.frame_inputs: list[str] = []

    def run(self, clips: torch.Tensor):
        handles = []
        image_shape = tuple(clips.shape[2:])
        for name, module in self.net.named_modules():
            if not name:
                continue
            self.types[name] = type(module).__name__

            def pre(_m, inputs, name=name):
                t = first_tensor(inputs)
                if t is not None and t.dim() == 4 and tuple(t.shape[1:]) == image_shape:
                    self.frame_inputs.append(name)

            def post(_m, _i, output, name=name):
                t = first_tensor(output)
                if t is not None:
                    self.calls.setdefault(name, []).append(tuple(t.shape))
                    self.outputs[name] = t
            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        try:
            return self.net(clips)
        finally:
            for h in handles:
                h.remove()


def _layout(b: int, t: tuple[int, int], a: list[tuple[int, ...]], c: list[tuple[int, ...]]):
    """(layout, step shape) of a module whose calls gave shapes `a` with T = t[0] and `c` with T = t[1]."""
    if len(a) == t[0] and len(c) == t[1] and len(set(a + c)) == 1 and a[0][0] == b and len(a[0]) > 1:
        return "steps", a[0][1:]
    if len(a) != 1 or len(c) != 1 or len(a[0]) != len(c[0]):
        return None
    x, y = a[0], c[0]
    if x[0] == b * t[0] and y[0] == b * t[1] and x[1:] == y[1:] and len(x) > 1:
        return "frames", x[1:]
    if len(x) > 2 and x[:2] == (b, t[0]) and y[:2] == (b, t[1]) and x[2:] == y[2:]:
        return "bt", x[2:]
    if len(x) > 2 and x[:2] == (t[0], b) and y[:2] == (t[1], b) and x[2:] == y[2:]:
        return "tb", x[2:]
    if x == y and x[0] == b and len(x) > 1:
        return "clip", x[1:]
    return None


@torch.no_grad()
def trace_video(net: nn.Module, size: tuple[int, int], model_name: str, device=None) -> VideoNet:
    """Check the contract on clips of T = 3 and T = 4 frames (UserInputError otherwise) and find every layer's
    time layout; see the module docstring."""
    device = device or next((p.device for p in net.parameters()), torch.device("cpu"))
    probes, outs = [], []
    for t in PROBE_T:
        probe = _Probe(net)
        clips = torch.zeros(PROBE_B, t, 3, *size, device=device)
        outs.append(check_video_model(lambda x=clips, p=probe: p.run(x), clips.shape, model_name))
        probes.append(probe)
    a, c = probes
    layers: dict[str, VideoLayer] = {}
    for name in a.calls:
        found = _layout(PROBE_B, PROBE_T, a.calls[name], c.calls.get(name, []))
        if found is not None:
            layers[name] = VideoLayer(name, a.types[name], found[0], tuple(found[1]), len(layers))
    out = outs[0]
    output_layer = next((n for n in reversed(list(layers)) if a.outputs.get(n) is out), None)
    frame_module = next((n for n in a.frame_inputs if n in layers and layers[n].layout in ("frames", "steps")),
                        None)
    return VideoNet(layers, frame_module, output_layer, out.dim() == 3, int(out.shape[-1]))


def _refused(model_name: str, shape, e: Exception) -> UserInputError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return UserInputError(f"model {model_name!r} does not take video clips [B, T, 3, H, W]: given "
                          f"{_shape_text(shape)} it raised {type(e).__name__}: {first}; pass a video model "
                          "(a CNN + LSTM returning [B, C] or [B, T, C] class scores)")


def load_video_net(entry, weights: str | None = None, **kwargs) -> tuple[LoadedNet, VideoNet]:
    """Load a video model as models/loading.py loads any net (weights from any URI, frozen), check the
    contract and trace its layouts; the LoadedNet's `layers` become one time step's LayerInfo."""
    ventry = as_video_entry(entry)
    try:
        loaded = load_net(ventry, weights, **kwargs)
    except UserInputError:
        raise
    except Exception as e:  # its first traced pass on a clip failed
        raise _refused(ventry.name, (1, *ventry.example_input_shape), e) from e
    video = trace_video(loaded.net, ventry.preprocessing.size, ventry.name, loaded.device)
    loaded.layers = {name: layer.info for name, layer in video.layers.items()}
    return loaded, video


def check_video_model(call, shape, model_name: str) -> torch.Tensor:
    """`call()` runs the model on clips of `shape`; its output must be [B, C] or [B, T, C]."""
    b, t = shape[0], shape[1]
    try:
        out = call()
    except UserInputError:
        raise
    except Exception as e:  # the model's own failure on a clip: it does not take [B, T, 3, H, W]
        raise _refused(model_name, shape, e) from e
    ok = isinstance(out, torch.Tensor) and (
        (out.dim() == 2 and out.shape[0] == b) or (out.dim() == 3 and tuple(out.shape[:2]) == (b, t)))
    if not ok:
        got = _shape_text(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserInputError(f"model {model_name!r} is not a video model: given clips {_shape_text(shape)} it "
                             f"returned {got}; a video model returns class scores [B, C] or [B, T, C]")
    return out


def format_video_layers(video: VideoNet) -> str:
    """The `neuron-atlas layers` table of a video model: layer, type, time layout, units, spatial size."""
    rows = [("layer", "type", "time", "units", "spatial")]
    for layer in video.layers.values():
        sp = layer.info.spatial
        note = " (per-frame module)" if layer.name == video.frame_module else ""
        note += " (output)" if layer.name == video.output_layer else ""
        rows.append((layer.name, layer.type + note, layer.layout, str(layer.info.units),
                     f"{sp[0]}x{sp[1]}" if sp else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
