"""`neuron-atlas nearest`: its flags, and the flags -> NearestSpec translation (pipelines/topk/nearest_run.py
plans and runs it; imported only when the command runs).

    neuron-atlas nearest --atlas OUT --images URI [--spaces pixel,LAYER,...] [--same-class] [--k 1]
"""

from __future__ import annotations

import argparse
import sys

from ..argtypes import add_execution_flags, add_model_flags, preprocessing_kwargs
from .topk_cmd import IMAGES_HELP

__all__ = ["add_subcommand", "run"]


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("nearest", help="the nearest real images of each synthesized image, in pixel and "
                                              "layer code spaces (the memorization check)")
    add_model_flags(p)
    p.set_defaults(model=None)
    g = p.add_argument_group("search")
    g.add_argument("--atlas", required=True, help="output folder/URI of atlas or inverse runs (its synthesized images)")
    g.add_argument("--images", required=True, help=IMAGES_HELP)
    g.add_argument("--spaces", help="comma-separated: 'pixel' and/or layer paths; default: pixel and every "
                                    "top-level block of the net")
    g.add_argument("--same-class", action="store_true",
                   help="a logit unit's images get neighbours of that class only (integer labels are class "
                        "indices; names count by sorted position, as torchvision's ImageFolder)")
    g.add_argument("--k", type=int, default=1, help="neighbours per synthesized image and space")
    g = add_execution_flags(p)
    p.set_defaults(out=None)
    g.add_argument("--shard-size", type=int, default=256, help="real images per shard")
    g.add_argument("--batch-size", type=int, help="images per forward pass (default 8 on CPU, 128 on GPU)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..cluster import placement_of
    from .nearest_run import NearestSpec, plan_nearest, run_nearest

    spaces = tuple(s.strip() for s in (args.spaces or "").split(",") if s.strip())
    spec = NearestSpec(atlas=args.atlas, images=args.images, model=args.model, weights=args.weights,
                       **preprocessing_kwargs(args), spaces=spaces,
                       same_class=args.same_class, k=args.k, out=args.out, storage_options=dict(args.storage_option),
                       shard_size=args.shard_size, batch_size=args.batch_size,
                       placement=placement_of(args), storage_retry_s=args.storage_retry_s)
    p = plan_nearest(spec)
    out = args.out or args.atlas
    print(f"neuron-atlas: nearest {spec.k} real images of {len(p.queries)} synthesized images in "
          f"{len(p.spaces)} spaces over {len(p.images.sources)} images -> {out}/nearest", file=sys.stderr)
    print(run_nearest(p, log=lambda m: print(m, file=sys.stderr)).line(out))
    return 0
