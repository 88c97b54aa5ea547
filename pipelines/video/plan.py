"""The run spec of a preferred-video job and its validation (CLI/TOML -> VideoSpec -> plan -> work items).

A VideoSpec is an atlas job (pipelines/spec.py: net, method, selection, seeds, steps, execution) whose net
takes clips, plus the video settings (tasks/video.VideoConfig). `plan_video` loads the model once, checks
the video-model contract (models/video.py), names unknown layers with the command that lists them, and then
plans through the atlas's own `plan`: the same units, seeds, generator and storage checks, and the same keys,
with the video settings added to every key's hyperparameters (so a video key never meets an image key).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from models.errors import UserInputError
from models.layers import expand_layers, is_layer_pattern
from models.video import VideoNet, load_video_net
from tasks.actor import NetSpec
from tasks.video import VideoConfig
from tasks.video.actor import VideoNetSpec

from ..spec import AtlasSpec, Plan, plan

__all__ = ["VideoSpec", "VideoPlan", "plan_video", "video_net_spec", "layers_hint"]


@dataclass(frozen=True)
class VideoSpec:
    atlas: AtlasSpec  # its net is a VideoNetSpec
    video: VideoConfig = VideoConfig()


@dataclass
class VideoPlan:
    spec: VideoSpec
    base: Plan  # the atlas plan: items, keys (video settings in their hyperparams), snapshot, generator
    video_net: VideoNet


def video_net_spec(net: NetSpec) -> VideoNetSpec:
    """The same NetSpec, for a model that takes clips."""
    return net if isinstance(net, VideoNetSpec) else VideoNetSpec(**{f.name: getattr(net, f.name)
                                                                      for f in fields(net)})


def layers_hint(model: str) -> str:
    return f"'neuron-atlas layers --model {model} --video' lists them"


def load(spec: AtlasSpec):
    """(LoadedNet, VideoNet) of the spec's model; UserInputError when it is not a video model."""
    return load_video_net(spec.net.entry(), spec.net.weights, storage_options=spec.storage_options,
                          retry=spec.retry())


def selected_layers(spec: AtlasSpec, video: VideoNet) -> tuple[str, ...]:
    """--layers (paths, patterns and `all`, as models/layers.py expands them over the video model's layers),
    else the layers of the entry's default selection, else the output layer (--units applies to them all)."""
    model = spec.net.model
    for layer in spec.layers:
        if layer not in video.layers and not is_layer_pattern(layer):
            raise UserInputError(f"unknown layer {layer!r} of video model {model!r}; {layers_hint(model)}")
    if spec.layers:
        infos = {name: v.info for name, v in video.layers.items()}
        return tuple(expand_layers(spec.layers, infos, model))
    default = tuple(layer for layer, _ in getattr(spec.net.entry(), "default_selection", ()))
    if spec.layers or default:
        return spec.layers or default
    if video.output_layer is None:
        raise UserInputError(f"pass --layers for model {model!r} (its output comes from no single layer); "
                             f"{layers_hint(model)}")
    return (video.output_layer,)


def plan_video(spec: VideoSpec) -> VideoPlan:
    """Validate `spec` against the video model and storage, and list every (key, work item) of the run."""
    atlas = replace(spec.atlas, net=video_net_spec(spec.atlas.net))
    target, video = load(atlas)
    atlas = replace(atlas, layers=selected_layers(atlas, video))
    base = plan(atlas, target=target, extra_hp=spec.video.hyperparams())
    return VideoPlan(replace(spec, atlas=base.spec), base, video)
