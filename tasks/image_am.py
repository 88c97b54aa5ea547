"""Image-space activation maximization: three parameterizations, two optimizers, optional robustness views.

`param="pixel"` (Yosinski et al. 2015): update x <- r_theta(x + eta * da/dx) on mean-centred 0-255 pixels,
r_theta composed of L2 decay, a Gaussian blur every `blur_every` steps, clipping of small-norm pixels and of
small-contribution pixels, then a clamp to the valid pixel range; the four Table 1 presets are selectable by
name. `param="fourier"` (Olah et al. 2017, Lucid/Lucent): decorrelated, frequency-scaled image space through
a sigmoid (tasks/fourier.py); the pixel regularizers do not apply. `param="maco"` (Fel et al. 2023): only the
phase is optimized, the magnitude stays a natural-image spectrum (tasks/maco.py), so deep nets and ViTs keep
photo-like energy per frequency. `transforms` names the random views the
net sees at each step (tasks/transforms.py), `optimizer` is normalized ascent or Adam (tasks/loop.py).

`coarse_scale` (progressive resolution) shows the net views at that fraction of its input size for the first
`coarse_until` of the steps (the views resample the render straight to the smaller size), then full-size
views: the early steps, which lay out the picture's large shapes, cost about half as much. It applies only to
objectives without a position (logits, fc units, conv channel means: a unit at (y, x) would move on a smaller
map); a net that takes one input size only (torchvision's ViT) gets the coarse views upsampled to it
(tasks/actor.py checks once); the saved picture and its activation are always measured at full size.

A `style` bundles a measured combination: `yosinski` (pixel, lowfreq, normalized ascent: the paper's method)
and `lucid`: Lucid's decorrelated Fourier image rendered at 128 px and upsampled to the net's input (as
Lucent's default `render_vis`), the `zoom` transforms (Lucent's standard set with zooms up to 1.5x), Adam
with its learning rate decaying linearly from 0.1 to 0.01, progressive resolution (views at 0.7 of the input
size for the first half of the steps), 256 steps: each choice measured against Lucent's default
(benchmarks/quality.py; the README's Readable pictures table).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch

from models.errors import UserInputError
from models.spectra import natural_spectrum

from .fourier import fourier_parameterization
from .maco import maco_parameterization
from .loop import OPTIMIZERS, Parameterization, StepRule, Views
from .regularizers import (clamp_range, clip_small_contribution, clip_small_norm, gaussian_blur, l2_decay)
from .transforms import parse_transforms

__all__ = ["ImageAMConfig", "PRESETS", "PARAMS", "STYLES", "image_parameterization"]

# Table 1 of Yosinski et al. 2015, (decay, blur_width, blur_every, norm_pct, contrib_pct), named after the
# style each produced in the paper's Figure 4 (rows top to bottom = quadrants TL, TR, BL, BR).
PRESETS: dict[str, tuple[float, float, int, float, float]] = {
    "sparse": (0.0, 0.5, 4, 50.0, 0.0),        # row 1, top-left: a sparse set of important regions
    "highfreq": (0.3, 0.0, 0, 20.0, 0.0),      # row 2, top-right: high-frequency patterns
    "lowfreq": (0.0001, 1.0, 4, 0.0, 0.0),     # row 3, bottom-left: the paper's best single set
    "contrib": (0.0, 0.5, 4, 0.0, 90.0),       # row 4, bottom-right: small-contribution clipping
    "none": (0.0, 0.0, 0, 0.0, 0.0),           # plain gradient ascent, for ablations
}


PARAMS = ("pixel", "fourier", "maco")
SPECTRAL = ("fourier", "maco")  # params whose images come from a spectrum: no pixel presets, --fourier-size allowed

# (param, optimizer) -> (lr, lr_end, normalize): pixel steps are in 0-255 levels, fourier steps in
# spectrum units (Lucent's Adam lr 0.05); Adam needs no normalization.
_STEP_DEFAULTS = {("pixel", "ascent"): (6.0, 1.0, True), ("pixel", "adam"): (1.0, None, False),
                  ("fourier", "ascent"): (0.05, 0.005, True), ("fourier", "adam"): (0.05, None, False),
                  # MACO's phases are standardized when rendered; the authors' reference uses (N)Adam at 1.0
                  ("maco", "ascent"): (0.5, 0.05, True), ("maco", "adam"): (1.0, None, False)}

# --style NAME -> the flags it sets (explicit flags win) and its step count
STYLES: dict[str, dict] = {
    "yosinski": {"param": "pixel", "preset": "lowfreq", "transforms": "none", "optimizer": "ascent",
                 "steps": 200},
    "lucid": {"param": "fourier", "preset": "none", "transforms": "zoom", "optimizer": "adam",
              "fourier_size": 128, "lr": 0.1, "lr_end": 0.01, "coarse_scale": 0.7, "steps": 256},
}
STYLE_HELP = {"yosinski": "pixels + the lowfreq preset + normalized ascent, 200 steps (Yosinski et al. 2015)",
              "lucid": "decorrelated Fourier image at 128 px upsampled to the net's input, zoom transforms "
                       "(Lucent's standard set with zooms to 1.5x), Adam lr 0.1 -> 0.01, views at 0.7 of the "
                       "input size for the first half of the steps, 256 steps (Olah et al. 2017, measured)"}


@dataclass(frozen=True)
class ImageAMConfig:
    """Hyperparameters of image-space AM; `from_preset` fills the regularizers from Table 1, `build` resolves
    a style and flags into one config.

    Pixel steps are normalized per image by default (lr = mean |change| per step in 0-255 pixel levels), so
    one lr works across nets with different input scales; `normalize=False` with lr ~ 100 is the toolbox's raw
    step for Caffe nets.
    """

    preset: str = "lowfreq"
    decay: float = 0.0001
    blur_width: float = 1.0
    blur_every: int = 4
    norm_pct: float = 0.0
    contrib_pct: float = 0.0
    lr: float = 6.0
    lr_end: float | None = 1.0
    normalize: bool = True
    init_std: float = 10.0
    # added with the Lucid parameterization; left out of `hyperparams` at these defaults, so the keys of
    # pixel runs are what they were before these existed
    param: str = "pixel"
    transforms: str = "none"
    optimizer: str = "ascent"
    fourier_sd: float = 0.01
    decay_power: float = 1.0
    decorrelate: bool = True
    style: str | None = None
    fourier_size: int | None = None  # render the spectrum at this size, upsample to the net's (fourier only)
    coarse_scale: float | None = None  # progressive resolution: views at this fraction of the input size...
    coarse_until: float = 0.5  # ...for this fraction of the steps

    def __post_init__(self):
        if self.param not in PARAMS:
            raise UserInputError(f"unknown --param {self.param!r}; use one of {', '.join(PARAMS)}")
        if self.optimizer not in OPTIMIZERS:
            raise UserInputError(f"unknown --optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if self.style is not None and self.style not in STYLES:
            raise UserInputError(f"unknown --style {self.style!r}; use one of {', '.join(STYLES)}")
        if self.param in SPECTRAL and self.preset != "none":
            raise UserInputError(f"--preset {self.preset} is a pixel-space regularizer; drop it with --param "
                                 f"{self.param} (the spectrum and the sigmoid regularize instead)")
        parse_transforms(self.transforms)  # a bad set is a user error now, not in an actor
        if self.fourier_size is not None and (self.param not in SPECTRAL or self.fourier_size < 8):
            raise UserInputError(f"--fourier-size {self.fourier_size} needs --param fourier or maco and a size of "
                                 "at least 8 (pixels of the rendered image before upsampling)")
        if self.coarse_scale is not None and not (0 < self.coarse_scale < 1 and 0 < self.coarse_until <= 1):
            raise UserInputError(f"--coarse {self.coarse_scale}:{self.coarse_until} needs a scale between 0 and 1 "
                                 "(of the net's input size) and a fraction of the steps in (0, 1], e.g. 0.7:0.5")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ImageAMConfig":
        if name not in PRESETS:
            raise UserInputError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
        decay, bw, be, npct, cpct = PRESETS[name]
        base = cls(preset=name, decay=decay, blur_width=bw, blur_every=be, norm_pct=npct, contrib_pct=cpct)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def build(cls, style: str | None = None, *, param: str | None = None, preset: str | None = None,
              transforms: str | None = None, optimizer: str | None = None, fourier_size: int | None = None,
              coarse: tuple[float, float] | bool | None = None, **overrides) -> "ImageAMConfig":
        """A style's settings (default: `yosinski`) under the flags given (None = not given). The step
        size defaults follow the (param, optimizer) pair, or the style's own where it is the style's pair;
        `overrides` (lr, lr_end, normalize) win. `coarse`: (scale, fraction of steps), False for none."""
        if style is not None and style not in STYLES:
            raise UserInputError(f"unknown --style {style!r}; use one of {', '.join(STYLES)}")
        base = STYLES[style or "yosinski"]
        param = param or base["param"]
        if preset is None:
            preset = base["preset"] if param == base["param"] else ("none" if param in SPECTRAL else "lowfreq")
        optimizer = optimizer or base["optimizer"]
        if param not in PARAMS or optimizer not in OPTIMIZERS:
            cls(param=param, optimizer=optimizer)  # raises the one-line error
        lr, lr_end, normalize = _STEP_DEFAULTS[(param, optimizer)]
        if (param, optimizer) == (base["param"], base["optimizer"]):
            lr, lr_end = base.get("lr", lr), base.get("lr_end", lr_end)
        steps = {"lr": lr, "lr_end": lr_end, "normalize": normalize}
        steps.update({k: v for k, v in overrides.items() if v is not None})
        if fourier_size is None and (param == base["param"] or (param in SPECTRAL and base["param"] in SPECTRAL)):
            fourier_size = base.get("fourier_size")
        if coarse is None:
            coarse = (base["coarse_scale"], 0.5) if "coarse_scale" in base else False
        scale, until = coarse if coarse else (None, 0.5)
        cfg = cls.from_preset(preset, param=param, transforms=transforms or base["transforms"],
                              optimizer=optimizer, style=style, fourier_size=fourier_size, coarse_scale=scale,
                              coarse_until=until)
        return replace(cfg, **steps)

    @property
    def rule(self) -> StepRule:
        return StepRule(self.lr, self.lr_end, self.normalize, self.optimizer)

    def views(self, seeds: list[int], size: tuple[int, int] | None = None, steps: int | None = None,
              fixed: bool = False) -> Views | None:
        """The per-step robustness views of `size` (the net's input) for items with these seeds (None without
        transforms or coarse steps), drawn from the image as the parameterization draws it (`fourier_size`
        before upsampling, whose pixels the transforms count). With `steps` (a run of that many steps whose
        objectives and net allow it) and `coarse_scale`, the first `coarse_until` of the steps see views of
        `coarse_size(size)`; with `fixed` (a net of one input size) those views are upsampled to `size`."""
        coarse = self.coarse_size(size) if steps and size else None
        until = int(round(self.coarse_until * steps)) if coarse else 0
        return parse_transforms(self.transforms).views(seeds, size, coarse, until, fixed)

    def coarse_size(self, size: tuple[int, int]) -> tuple[int, int] | None:
        """The views' size during the coarse steps (multiples of 8 px), or None when there are none."""
        if self.coarse_scale is None:
            return None
        small = tuple(max(8, int(round(self.coarse_scale * n / 8)) * 8) for n in size)
        return small if small[0] < size[0] and small[1] <= size[1] else None

    def hyperparams(self) -> dict:
        hp = asdict(self)
        for f in fields(self)[fields(self).index(_FIRST_ADDED):]:
            if hp[f.name] == f.default:
                del hp[f.name]
        return hp


_FIRST_ADDED = next(f for f in fields(ImageAMConfig) if f.name == "param")


def image_parameterization(cfg: ImageAMConfig, seeds: list[int], size: tuple[int, int],
                           mean01: tuple[float, ...], device: torch.device,
                           init: torch.Tensor | None = None) -> Parameterization:
    """`fourier`: see tasks/fourier.py. `pixel`: pixels for each seed, initialised N(0, init_std) around the
    mean colour (per-seed generator), regularized by the preset after every step. Images have one channel
    per value of `mean01` (the net's channel count). `init` [B, C, H, W] in [0, 1]: start from these images
    instead (a photo's caricature): the pixels themselves, or the spectrum that renders them."""
    channels = len(mean01)
    if cfg.param == "maco":
        return maco_parameterization(seeds, size, device, natural_spectrum(channels), fourier_size=cfg.fourier_size,
                                     init=init)
    if cfg.param == "fourier":
        return fourier_parameterization(seeds, size, device, sd=cfg.fourier_sd, decay=cfg.decay_power,
                                        decorrelate=cfg.decorrelate, fourier_size=cfg.fourier_size,
                                        channels=channels, init=init)
    h, w = size
    mean255 = torch.tensor(mean01, device=device).view(1, channels, 1, 1) * 255.0
    lo, hi = -mean255, 255.0 - mean255
    if init is not None:
        x = init.to(device, torch.float32) * 255.0 - mean255
    else:
        noise = torch.stack([torch.randn(channels, h, w, generator=torch.Generator().manual_seed(s)) for s in seeds])
        x = (noise * cfg.init_std).to(device)
    clamp_range(x, lo, hi)

    def render(p: torch.Tensor) -> torch.Tensor:
        return (p + mean255) / 255.0

    def project(p: torch.Tensor, grad: torch.Tensor, t: int) -> None:
        l2_decay(p, cfg.decay)
        if cfg.blur_every and cfg.blur_width > 0 and t % cfg.blur_every == 0:
            gaussian_blur(p, cfg.blur_width)
        clip_small_norm(p, cfg.norm_pct)
        clip_small_contribution(p, grad, cfg.contrib_pct)
        clamp_range(p, lo, hi)

    return Parameterization(x, render, None, project)
