"""Activation layouts: where a layer's feature channels sit in its output, so a unit is always a channel.

A layer's output (batch first) is read as one of `LAYOUT_KINDS`:
- `channels_first`: maps `[B, C, H, W]` (convolutions, batch norms, pooling) or `[B, C, L]`;
- `channels_last`: maps `[B, H, W, C]` (Swin's and ConvNeXt's Linear, LayerNorm and GELU act on the last dim);
- `tokens`: a sequence `[B, N, C]` of `len(prefix)` prefix tokens (class token, registers) then a patch grid of
  `grid` rows x columns (ViT, DeiT, CLIP towers);
- `vector`: `[B, C]`.

Every reader sees the canonical, channel-first view (`Layout.channels_first`): `[B, C, H, W]` for maps and for
the patch tokens of a sequence (row-major over the grid), `[B, C]` for vectors. Positions are therefore a map's
`(y, x)` or a patch token's `(row, col)` alike, and a channel objective's mean over positions is the mean over
patch tokens. Prefix tokens live beside the grid (`Layout.prefix_tokens`, `[B, C, P]`); a unit addresses prefix
token k with the position `(PREFIX_ROW, k)`, named `cls` for k = 0 and `p<k>` after it (`prefix_name`).

`infer_layouts` decides each layer's layout from one traced forward pass (models/layers.py records it): modules
that act on the last dimension (Linear, LayerNorm, attention) give channels-last outputs; convolutions, batch
norms and pooling give channels-first ones; any other module (activations, dropout, containers, permutes) takes
the layout of the module that produced an output of its shape (its last child, or the last module before it),
and failing that the last dimension is the channels if a last-dimension module made that width. A sequence's
patch grid is the last map before it whose positions the tokens hold, give or take a few prefix tokens; failing
that a square number of tokens (after 0 or 1 prefix token) is the grid, and anything else a 1 x N row.
`--layout LAYER=KIND` overrides the inference for one layer (`parse_layout`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import UserInputError

__all__ = ["Layout", "LAYOUT_KINDS", "PREFIX_ROW", "prefix_name", "prefix_index", "prefix_key", "infer_layouts",
           "forced_layout", "parse_layout", "TraceRecord", "default_layout"]

LAYOUT_KINDS = ("channels_first", "channels_last", "tokens", "vector")
PREFIX_ROW = -1  # the row of a unit's position that addresses a prefix token (its column is the token's index)
_MAX_PREFIX = 16  # at most this many prefix tokens before a patch grid (class token, distillation, registers)

# module types whose output keeps its channels last (timm's `Attention` and `LayerScale` included)
_LAST_DIM = frozenset({"Linear", "LayerNorm", "MultiheadAttention", "RMSNorm", "Attention",
                       "NonDynamicallyQuantizableLinear", "LazyLinear", "Bilinear", "LayerScale"})
_FIRST_DIM = frozenset({"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
                        "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "FrozenBatchNorm", "FrozenBatchNorm2d",
                        "GroupNorm", "InstanceNorm2d", "LocalResponseNorm", "MaxPool2d", "AvgPool2d",
                        "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "MaxPool1d", "AvgPool1d", "LayerNorm2d",
                        "LazyConv1d", "LazyConv2d", "LazyConv3d", "Conv2dSame", "StdConv2d", "BatchNormAct2d"})


def prefix_name(k: int) -> str:
    """The name of prefix token k in a unit's address: `cls` for the first, `p<k>` after it."""
    return "cls" if k == 0 else f"p{k}"


def prefix_index(name: str) -> int | None:
    """The index a prefix-token name stands for (`cls` -> 0, `p2` -> 2); None for anything else."""
    if name == "cls":
        return 0
    if name.startswith("p") and name[1:].isdigit():
        return int(name[1:])
    return None


def prefix_key(layer: str) -> str:
    """The key under which a Capture keeps a token layer's prefix tokens `[B, C, P]`, beside its grid."""
    return f"{layer}#prefix"


@dataclass(frozen=True)
class Layout:
    """Where a layer's channels are: `kind` (one of LAYOUT_KINDS); for tokens, the prefix count and the patch
    grid (rows, cols)."""

    kind: str
    prefix: int = 0
    grid: tuple[int, int] | None = None

    def __post_init__(self):
        if self.kind not in LAYOUT_KINDS:
            raise ValueError(f"unknown layout {self.kind!r}; use one of {', '.join(LAYOUT_KINDS)}")

    def channels_first(self, t: torch.Tensor) -> torch.Tensor:
        """The canonical view of output `t`: `[B, C, *positions]` (a patch grid for tokens), `[B, C]` vectors."""
        if self.kind == "channels_last":
            return t.movedim(-1, 1)
        if self.kind == "tokens":
            rows, cols = self.grid
            return t[:, self.prefix:].movedim(-1, 1).unflatten(2, (rows, cols))
        return t

    def prefix_tokens(self, t: torch.Tensor) -> torch.Tensor | None:
        """A token output's prefix tokens, channel-first `[B, C, P]`; None when it has none."""
        if self.kind != "tokens" or not self.prefix:
            return None
        return t[:, :self.prefix].movedim(-1, 1)

    def canonical_shape(self, raw: Sequence[int]) -> tuple[int, ...]:
        """The canonical shape (no batch dim) of an output whose raw shape (no batch dim) is `raw`."""
        raw = tuple(raw)
        if self.kind == "channels_last":
            return (raw[-1], *raw[:-1])
        if self.kind == "tokens":
            return (raw[-1], *self.grid)
        return raw

    def positions(self, raw: Sequence[int]) -> str:
        """What `layers` shows for the positions: `56x56`, `197 tokens = cls + 14x14`, or `-`."""
        raw = tuple(raw)
        if self.kind == "tokens":
            names = [prefix_name(k) for k in range(self.prefix)]
            grid = f"{self.grid[0]}x{self.grid[1]}"
            return f"{raw[0]} tokens = {' + '.join(names + [grid])}"
        spatial = self.canonical_shape(raw)[1:]
        return "x".join(map(str, spatial)) if spatial else "-"

    def to_json(self) -> dict:
        out = {"kind": self.kind}
        if self.kind == "tokens":
            out.update(prefix=[prefix_name(k) for k in range(self.prefix)], grid=list(self.grid))
        return out


def default_layout(raw: Sequence[int]) -> Layout:
    """The layout of an output read as convolutions always were: a vector, else channels first."""
    return Layout("vector") if len(tuple(raw)) == 1 else Layout("channels_first")


@dataclass(frozen=True)
class TraceRecord:
    """What the layer trace saw of one module: its type, raw output shape (no batch dim), the position of its
    first call's end among all module ends, and its dotted path (children share the prefix)."""

    name: str
    type: str
    shape: tuple[int, ...]
    end: int


def _square_grid(n: int, prefix: int) -> tuple[int, int] | None:
    """The square patch grid of `n` tokens after `prefix` prefix tokens, or None when they form none."""
    side = math.isqrt(n - prefix) if n > prefix else 0
    return (side, side) if side and side * side == n - prefix else None


def _token_layout(shape: tuple[int, ...], maps: list[tuple[int, int]]) -> Layout:
    n = shape[0]
    for rows, cols in reversed(maps):
        if 0 <= n - rows * cols <= _MAX_PREFIX:
            return Layout("tokens", n - rows * cols, (rows, cols))
    for prefix in (0, 1):
        grid = _square_grid(n, prefix)
        if grid:
            return Layout("tokens", prefix, grid)
    return Layout("tokens", 0, (1, n))


def forced_layout(kind: str, raw: Sequence[int], inferred: Layout | None) -> Layout:
    """The layout `--layout LAYER=KIND` asks for (KIND as `parse_layout` returns it) for an output of raw shape
    `raw` (no batch dim), checked against its rank; tokens keep the inferred grid when the prefix count agrees,
    else take a square grid after the prefix tokens, else a 1 x N row."""
    base, _, prefix = kind.partition(":")
    rank = {"vector": 1, "tokens": 2, "channels_first": None, "channels_last": 3}[base]
    if rank is not None and len(raw) != rank:
        raise UserInputError(f"--layout {base} does not fit an output of shape {list(raw)}; a vector is [C], "
                             "tokens are [N, C] and channels-last maps [H, W, C] (batch dimension left out)")
    if base != "tokens":
        return Layout(base)
    n = raw[0]
    was_tokens = inferred is not None and inferred.kind == "tokens"
    p = int(prefix) if prefix else (inferred.prefix if was_tokens else 0)
    if was_tokens and inferred.prefix == p:
        return inferred
    return Layout("tokens", p, _square_grid(n, p) or (1, n - p))


def infer_layouts(records: Sequence[TraceRecord]) -> dict[str, Layout]:
    """{name: Layout} for every traced module (module docstring: the rules)."""
    by_end = sorted(records, key=lambda r: r.end)
    side: dict[str, str] = {}  # name -> "first" | "last": which end of the shape holds the channels
    for r in by_end:
        if len(r.shape) < 2:
            continue
        if r.type in _LAST_DIM:
            side[r.name] = "last"
        elif r.type in _FIRST_DIM:
            side[r.name] = "first"
    last_widths = {r.shape[-1] for r in by_end if side.get(r.name) == "last"}  # widths only those modules make
    for i, r in enumerate(by_end):
        if len(r.shape) < 2 or r.name in side:
            continue
        # a container's output is its last-ending child's of that shape; anything else's, the last module's
        # before it with that shape (an elementwise module's input came from there)
        children = [c for c in by_end[:i] if c.name.startswith(r.name + ".") and c.shape == r.shape and c.name in side]
        earlier = children or [c for c in by_end[:i] if c.shape == r.shape and c.name in side
                               and not r.name.startswith(c.name + ".")]
        if earlier:
            side[r.name] = side[earlier[-1].name]
        else:
            # a width that only last-dimension modules make; a square map [C, H, H] stays channels-first
            side[r.name] = "last" if r.shape[-1] in last_widths and (
                len(r.shape) == 2 or (len(r.shape) == 3 and r.shape[-1] != r.shape[-2])) else "first"
    out: dict[str, Layout] = {}
    maps: list[tuple[int, int]] = []  # spatial sizes of the maps seen so far, in execution order
    for r in by_end:
        if len(r.shape) == 1:
            out[r.name] = Layout("vector")
            continue
        if len(r.shape) == 0:
            continue
        if side.get(r.name) == "last":
            out[r.name] = Layout("channels_last") if len(r.shape) == 3 else _token_layout(r.shape, maps)
        else:
            out[r.name] = Layout("channels_first")
        if len(r.shape) == 3:
            hw = r.shape[:2] if side.get(r.name) == "last" else r.shape[1:]
            maps.append((int(hw[0]), int(hw[1])))
    return out


def parse_layout(text: str) -> tuple[str, Layout | str]:
    """`LAYER=KIND` of `--layout` -> (layer, kind); `tokens` may carry its prefix count, `tokens:1`."""
    layer, sep, kind = text.partition("=")
    kind = kind.strip()
    base, _, prefix = kind.partition(":")
    bad_prefix = bool(prefix) and (base != "tokens" or not prefix.isdigit())
    if not sep or not layer.strip() or base not in LAYOUT_KINDS or bad_prefix:
        raise UserInputError(f"malformed --layout {text!r}; use LAYER=KIND with KIND one of "
                             f"{', '.join(LAYOUT_KINDS)} (tokens:P names P prefix tokens), e.g. "
                             "'blocks.3.mlp.fc1=tokens:1'")
    return layer.strip(), kind
