"""`neuron-atlas topk`: its flags, and the flags -> TopkSpec translation (pipelines/topk/topk_run.py plans
and runs it; imported only when the command runs, so the CLI starts without Ray).

    neuron-atlas topk --model M --layers L1,L2 [--units SPEC] --images URI --k 9 --out URI
"""

from __future__ import annotations

import argparse
import sys

from ..argtypes import add_execution_flags, add_model_flags, add_selection_flags, preprocessing_kwargs
from ..plan_cmd import add_dry_run_flags

__all__ = ["add_subcommand", "run", "IMAGES_HELP"]

IMAGES_HELP = ("a folder or bucket prefix of .jpg/.png images (recursive; folder-per-class names become labels), "
               "a Parquet file or prefix with an image-bytes column (and optional 'label'), 'offline', "
               "'offline-photos', 'fashion-mnist:train', 'fashion-mnist:test' or a folder or file of IDX images "
               "(labelled)")


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("topk", help="the top-k real images of every unit, and per-unit activation statistics")
    add_model_flags(p)
    g = add_selection_flags(p, "comma-separated layer paths ('neuron-atlas layers' lists them); default: the "
                            "model's demo selection (the units a default atlas draws)",
                            "'all' (default), '0:64', '3,17,42'")
    g.add_argument("--images", required=True, help=IMAGES_HELP)
    g.add_argument("--k", type=int, default=9, help="images kept per unit")
    g.add_argument("--snapshot", help="snapshot name in the output paths; default: the weights file's stem")
    g.add_argument("--maps", action=argparse.BooleanOptionalAction, default=True,
                   help="store each conv unit's activation map with its examples (Parquet) and draw it over the "
                        "image, its maximum ringed (default on)")
    g.add_argument("--attribution", action="store_true",
                   help="also draw, for every example, where in the image its activation comes from: gradient x "
                        "input, smoothed (one backward pass per example)")
    g = add_execution_flags(p)
    g.add_argument("--shard-size", type=int, default=256, help="images per shard (the unit of work and of resume)")
    g.add_argument("--batch-size", type=int, help="images per forward pass (default 8 on CPU, 128 on GPU)")
    p.add_argument("--dry-run", action="store_true", help="print what the run would cost and write nothing")
    add_dry_run_flags(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tasks.actor import NetSpec

    from ..cluster import placement_of
    from .topk_run import TopkSpec, plan_topk, run_topk

    storage = dict(args.storage_option)
    net = NetSpec(model=args.model, weights=args.weights, **preprocessing_kwargs(args),
                  storage_options=storage)
    layers = tuple(s.strip() for s in (args.layers or "").split(",") if s.strip())
    spec = TopkSpec(net=net, layers=layers, images=args.images, units=args.units,
                    layer_units=tuple(args.layer_units), k=args.k, snapshot=args.snapshot, out=args.out,
                    storage_options=storage, shard_size=args.shard_size, batch_size=args.batch_size,
                    placement=placement_of(args), storage_retry_s=args.storage_retry_s, maps=args.maps, attribution=args.attribution)
    p = plan_topk(spec)
    if args.dry_run:
        from ..plan_cmd import print_estimate, topk_estimate

        return print_estimate(args, lambda **kw: topk_estimate(p, **kw))
    units = sum(len(ch) for _, ch in p.selection)
    print(f"neuron-atlas: top-{spec.k} of {units} units in {len(p.selection)} layers over "
          f"{len(p.images.sources)} images -> {args.out}/topk", file=sys.stderr)
    print(run_topk(p, log=lambda m: print(m, file=sys.stderr)).line(args.out))
    return 0
