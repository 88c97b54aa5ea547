"""Transformation robustness (Lucid / Lucent, Olah et al. 2017): each step the net sees a random view.

A `TransformSet` describes Lucent's chain pad -> jitter -> scale -> rotate -> jitter; `views(seeds, size)` turns
it into a callable `(x01 [B, 3, h, w], step) -> views [B, 3, H, W]` that draws every item's own translation,
scale and angle and applies the whole chain as ONE affine grid sample over the batch (no Python loop over
items on the tensor path; the only per-item Python is drawing four numbers), then upsamples to the net's
size where the image is smaller (Lucent's order). Out-of-image pixels are grey 0.5, as Lucent's constant
pad. Views have one size for every item and step (see `_theta_rows` for how that maps Lucent's variable-size
views). The draws of an item depend only on (its seed, step), never on what else is in the
batch. A run's draws are made all at once and copied to the device once (`TransformViews.plan`), so the
steps after the first never wait on a host-to-device copy.

Named sets: `none`, `standard` (Lucent's `standard_transforms`: pad 12, jitter 8, scales 0.90..1.10 in
steps of 0.02, rotations -10..10 degrees with extra weight on 0, jitter 4) and `zoom` (the same pad and
jitters, scales 0.90..1.50 in steps of 0.05, rotations -10..10 degrees uniformly). Any other set is written as
`pad=P,jitter=J1+J2,scale=LO:HI:STEP,rotate=DEG` (omitted parts are off), e.g.
`--transforms pad=16,jitter=16+8,scale=0.8:1.2:0.05,rotate=15`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import torch
import torch.nn.functional as F

from models.errors import UserInputError

__all__ = ["TransformSet", "TransformViews", "TRANSFORM_SETS", "parse_transforms"]


@dataclass(frozen=True)
class TransformSet:
    """pad (px of grey around the image), two jitters (crop offsets drawn from 0..J-1), a list of scales
    and a list of angles in degrees, each drawn uniformly per item and step."""

    pad: int = 0
    jitter: tuple[int, ...] = ()
    scales: tuple[float, ...] = (1.0,)
    angles: tuple[float, ...] = (0.0,)

    @property
    def identity(self) -> bool:
        return not self.pad and not any(j > 1 for j in self.jitter) and set(self.scales) == {1.0} \
            and set(self.angles) == {0.0}

    def views(self, seeds: list[int], size: tuple[int, int] | None = None, coarse: tuple[int, int] | None = None,
              coarse_until: int = 0, fixed: bool = False) -> TransformViews | None:
        """The per-step view function for a batch of items with these seeds (None for the identity without
        coarse steps).

        The function takes the image as the parameterization draws it (e.g. Lucid's 128 px render, before it is
        upsampled for the net) and returns views of `size` (None: the image's own size). Pad and jitter are
        counted in pixels of that image, as Lucent counts them. As in Lucent's chain, a view is sampled at
        no more pixels than the image has and then upsampled (bilinear, align_corners=True) to its size: for
        a 128 px render and a 224 px net that is one grid sample of 128 x 128 and one upsample, 9 % less per
        MobileNetV2 step on a CPU than sampling 224 x 224 from the upsampled render, and the same field.
        `coarse`: the views' size for the steps before `coarse_until` (the same field of view with fewer
        pixels: progressive resolution); later views have `size`. `fixed` (a net that takes one input size
        only, such as torchvision's ViT): coarse views are sampled at `coarse` and then upsampled to `size`, so
        the net always sees `size`.
        """
        if self.identity and not (coarse and coarse_until > 0):
            return None
        return TransformViews(self, list(seeds), size, coarse, coarse_until, fixed)

    def _theta_rows(self, seed: int, step: int, size) -> list[list[float]]:
        """The 2x3 affine map from output to input coordinates (normalized, x then y) for one item's view, as
        Python floats (TransformViews makes the maps of many items and steps into one tensor).

        Lucent's chain on an S-pixel image: pad p, crop (S + 2p - J1) at offset j1, resize by s, rotate by a
        about the centre, crop at offset j2, and the net sees the result, whose size varies with s. Here the
        net's input keeps its size S (batches stay one tensor; nets with fixed-size heads keep working): the
        view shows the field Lucent shows at s = 1, C = S + 2p - J1 - J2 pixels around the same centre, with
        the content zoomed by s. So objects appear at s * S / C of their size (0.95 s for the standard set
        at 224 px), the grey margin and the translations are Lucent's.
        """
        g = torch.Generator().manual_seed((seed * 1_000_003 + step) % (2 ** 63))
        j1, j2 = (j if j > 1 else 0 for j in (self.jitter + (0, 0))[:2])
        o1 = self._offset(j1, g)  # crop-centre offsets (x, y) in rendered pixels, symmetric around 0
        o2 = self._offset(j2, g)
        s = self.scales[int(torch.randint(0, len(self.scales), (1,), generator=g))]
        a = math.radians(self.angles[int(torch.randint(0, len(self.angles), (1,), generator=g))])
        h, w = int(size[0]), int(size[1])
        half = (w / 2, h / 2)
        margin = 2 * self.pad - j1 - j2
        scale = ((w + margin) / (2 * s) / half[0], (h + margin) / (2 * s) / half[1])  # C / 2s, normalized
        c, n = math.cos(a), math.sin(a)
        # rot @ diag(scale) maps output normalized -> input normalized; then (rot @ o2 / s + o1) / half shifts
        shift = [(c * o2[0] + n * o2[1]) / s + o1[0], (-n * o2[0] + c * o2[1]) / s + o1[1]]
        return [[c * scale[0], n * scale[1], shift[0] / half[0]], [-n * scale[0], c * scale[1], shift[1] / half[1]]]

    @staticmethod
    def _offset(j: int, g: torch.Generator) -> tuple[float, float]:
        """A crop of j pixels less at offset 0..j-1 moves the centre by offset - (j-1)/2 (x and y)."""
        if j <= 1:
            return 0.0, 0.0
        x, y = torch.randint(0, j, (2,), generator=g).tolist()
        return x - (j - 1) / 2, y - (j - 1) / 2


class TransformViews:
    """`TransformSet.views`' callable `(x01 [B, 3, h, w], step) -> views`. `plan(steps)` (tasks/loop.optimize
    calls it before the first step) lets the first call draw every step's affine maps at once and move them to
    the image's device in one copy, so later steps only index them: no host-to-device copy after step 0.
    Unplanned, each step draws its own maps (one copy per step). The draws are the same either way: each
    item's depend on (its seed, step) and the image's size only; items that share a seed (a video's frames)
    share one draw."""

    def __init__(self, transforms: TransformSet, seeds: list[int], size: tuple[int, int] | None,
                 coarse: tuple[int, int] | None, coarse_until: int, fixed: bool):
        self.t, self.size, self.coarse, self.coarse_until, self.fixed = transforms, size, coarse, coarse_until, fixed
        self.seeds = list(dict.fromkeys(seeds))  # distinct seeds, first-seen order
        first = {s: i for i, s in enumerate(self.seeds)}
        self._row_seed = [first[s] for s in seeds]  # the item's row among the distinct seeds' draws
        self._steps: int | None = None
        self._planned: dict[tuple, tuple[dict[int, int], torch.Tensor]] = {}  # (h, w, device, dtype) -> maps

    def plan(self, steps: int) -> None:
        """The run has `steps` steps (0..steps-1): draw all of them on the first call."""
        if steps != self._steps:
            self._steps, self._planned = steps, {}

    def _shapes(self, step: int, shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(the views' size, the size they are sampled at) for an image of `shape` [h, w] at `step`."""
        early = bool(self.coarse) and step < self.coarse_until
        out = tuple(self.coarse if early and not self.fixed else (self.size or shape))
        # never more pixels than x has, nor than a coarse step's
        sample = tuple(min(o, int(n)) for o, n in zip(self.coarse if early else out, shape))
        return out, sample

    def _warps(self, step: int, shape: tuple[int, ...]) -> bool:
        """Whether the views of an image of `shape` go through their affine maps at `step` (not for the
        identity set at the image's own size)."""
        return not (self.t.identity and self._shapes(step, shape)[1] == shape)

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        shape = tuple(x.shape[-2:])
        out, sample = self._shapes(step, shape)
        if not self._warps(step, shape):
            v = x
        else:
            grid = F.affine_grid(self._theta(x, step), [*x.shape[:2], *sample], align_corners=False)
            v = F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
        if sample != out:
            v = F.interpolate(v, size=out, mode="bilinear", align_corners=True)
        return v

    def _theta(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """Every item's affine map at `step`, [B, 2, 3] on x's device and dtype."""
        shape = tuple(x.shape[-2:])
        key = (shape, x.device, x.dtype)
        if self._steps is not None and step < self._steps:
            if key not in self._planned:
                steps = [t for t in range(self._steps) if self._warps(t, shape)]
                self._planned[key] = ({t: i for i, t in enumerate(steps)}, self._draw(steps, shape, x))
            index, maps = self._planned[key]
            if step in index:
                return maps[index[step]]
        return self._draw([step], shape, x)[0]

    def _draw(self, steps: list[int], shape: tuple[int, int], x: torch.Tensor) -> torch.Tensor:
        """[len(steps), B, 2, 3] maps for these steps, made in one tensor and copied to x's device once."""
        rows = [[self.t._theta_rows(s, t, shape) for s in self.seeds] for t in steps]
        maps = torch.tensor(rows, dtype=torch.float32).reshape(len(steps), len(self.seeds), 2, 3)
        if len(self.seeds) != len(self._row_seed):
            maps = maps[:, self._row_seed]
        return maps.to(x.device, x.dtype)


_STANDARD = TransformSet(pad=12, jitter=(8, 4), scales=tuple(1 + (i - 5) / 50 for i in range(11)),
                         angles=tuple(float(a) for a in list(range(-10, 11)) + 5 * [0]))
# Lucent's pad and jitters with zooms up to 1.5x and uniform rotations: `lucid` style's set, chosen by
# measurement (benchmarks/quality.py: images that survive crops and blur far better than with `standard`)
_ZOOM = TransformSet(pad=12, jitter=(8, 4), scales=tuple(0.9 + 0.05 * i for i in range(13)),
                     angles=tuple(float(a) for a in range(-10, 11)))
TRANSFORM_SETS: dict[str, TransformSet] = {"none": TransformSet(), "standard": _STANDARD, "zoom": _ZOOM}
_FORMAT = "'none', 'standard', 'zoom' or 'pad=P,jitter=J1+J2,scale=LO:HI:STEP,rotate=DEG' (parts optional)"


def parse_transforms(text: str) -> TransformSet:
    """A named set, or the `pad=..,jitter=..,scale=..,rotate=..` form; bad text raises UserInputError."""
    if text in TRANSFORM_SETS:
        return TRANSFORM_SETS[text]
    fields: dict = {}
    try:
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key in fields:
                raise ValueError
            if key == "pad":
                fields[key] = int(value)
            elif key == "jitter":
                fields[key] = tuple(int(v) for v in value.split("+"))
            elif key == "scale":
                lo, hi, step = (float(v) for v in value.split(":"))
                n = int(round((hi - lo) / step)) if step > 0 else -1
                if n < 0 or lo <= 0:
                    raise ValueError
                fields["scales"] = tuple(lo + i * step for i in range(n + 1))
            elif key == "rotate":
                deg = int(value)
                fields["angles"] = tuple(float(a) for a in range(-abs(deg), abs(deg) + 1))
            else:
                raise ValueError
        if fields.get("pad", 0) < 0 or any(j < 1 for j in fields.get("jitter", ())) or len(fields.get("jitter", ())) > 2:
            raise ValueError
    except ValueError:
        raise UserInputError(f"unknown --transforms {text!r}; use {_FORMAT}") from None
    return TransformSet(**fields)
