"""`neuron-atlas video`: its flags, and the flags -> VideoSpec translation (plan.py, run.py and order.py do the
work; imported only when the command runs, so the CLI starts without Ray).

    neuron-atlas video --model M [--weights URI] [--layers ...] [--units ...] [--seeds N] --frames 160
        [--method dgn|image ...] [--time-pool mean|last] [--temporal-smoothness L] [--shuffles K] --out URI
    neuron-atlas video --model M --analyze-order --videos URI [--layers ...] [--units ...] --out URI

Every flag of `atlas` applies (method, style, generator, objective, execution, ...). `--layers` defaults to
the model's output layer; hidden layers of the per-frame CNN and of the LSTM are addressed by module path
(`neuron-atlas layers --model M --video` lists them with their time layout).
"""

from __future__ import annotations

import argparse
import sys

from models.errors import UserInputError

from ..argtypes import add_model_flags, add_selection_flags, preprocessing_kwargs
from ..atlas_cmd import add_method_flags

__all__ = ["add_subcommand", "run", "list_layers", "spec_from_args"]


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    """Add `video` to the CLI's subparsers; returns its parser."""
    p = subparsers.add_parser("video", help="preferred videos of a video (CNN + LSTM) classifier, with the "
                              "frame-order analysis; or that analysis of real videos (--analyze-order)")
    add_model_flags(p)
    g = add_selection_flags(p, "comma-separated layer paths, per-frame CNN and LSTM layers included; default: "
                            "the model's output layer", "'all', '0:64', '3,17,42', '12@6,6' (channel@row,col)")
    g.add_argument("--seeds", type=int, default=1, help="number of seeds per unit (seeds 0..N-1)")
    g.add_argument("--snapshot", help="snapshot name in the output paths; default: the weights file's stem")
    add_method_flags(p)
    g = p.add_argument_group("video")
    g.add_argument("--frames", type=int, default=160, help="frames per preferred video, one code or image each "
                   "(the DGN-AM supplement: 160); with --analyze-order, the most frames scored per video")
    g.add_argument("--time-pool", default="mean", help="a unit's activation on a clip: the mean over frames "
                   "(as LRCN averages its per-frame predictions) or the 'last' frame's")
    g.add_argument("--temporal-smoothness", type=float, default=0.0, metavar="LAMBDA",
                   help="penalize LAMBDA x the mean squared change between consecutive frames (0: off, the paper)")
    g.add_argument("--shuffles", type=int, default=8, help="frame-order analysis: seeded random orders per video")
    g.add_argument("--order-seed", type=int, default=0, help="seed of the shuffled orders")
    g.add_argument("--fps", type=float, default=25.0, help="frame rate of the WebP and MP4 files")
    g.add_argument("--chunk-frames", type=int, default=16, help="frames per checkpointed chunk of the per-frame "
                   "CNN and the generator (memory, not results)")
    g.add_argument("--checkpoint", action=argparse.BooleanOptionalAction, default=True,
                   help="activation checkpointing of those chunks (off: faster, memory grows with --frames)")
    g.add_argument("--analyze-order", action="store_true", help="score real videos (--videos) as given, "
                   "reversed and shuffled, instead of synthesizing")
    g.add_argument("--videos", help="with --analyze-order: folder or prefix of video files (MP4, WebP, ...) or "
                   "folders of frame images; class sub-folders become labels")
    return p


def spec_from_args(args):
    """The VideoSpec the flags describe (UserInputError for contradictory or unknown values)."""
    from dataclasses import replace

    from tasks.video import VideoConfig

    from ..atlas_cmd import spec_from_args as atlas_spec
    from .plan import VideoSpec, video_net_spec

    video = VideoConfig(frames=args.frames, time_pool=args.time_pool, smoothness=args.temporal_smoothness,
                        shuffles=args.shuffles, order_seed=args.order_seed, fps=args.fps, chunk=args.chunk_frames,
                        checkpoint=args.checkpoint)
    atlas = atlas_spec(args)
    for flag, value in (("--diversity", atlas.diversity), ("--init", atlas.init)):
        if value is not None:
            raise UserInputError(f"{flag} is for image and dgn atlases (atlas, snapshots), not videos")
    return VideoSpec(replace(atlas, net=video_net_spec(atlas.net)), video)


def run(args: argparse.Namespace) -> int:
    """Plan and run one video job (or the order analysis of real videos); returns the exit status (0)."""
    if args.videos and not args.analyze_order:
        raise UserInputError("--videos names real videos for --analyze-order; add --analyze-order")
    spec = spec_from_args(args)
    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.analyze_order:
        if not args.videos:
            raise UserInputError("--analyze-order scores real videos: pass --videos URI (a folder or prefix of "
                                 "MP4s or frame folders)")
        from .order import run_order

        summary = run_order(spec, args.videos, log=say)
        print(summary.line(args.out))
        return 0
    from .plan import plan_video
    from .run import run_video

    p = plan_video(spec)
    say(f"neuron-atlas: {len(p.base.items)} videos ({p.base.spec.method}, {spec.video.frames} frames, "
        f"{p.base.spec.steps} steps) -> {args.out}")
    summary = run_video(p, log=say)
    print(summary.line(args.out).replace(" items", " videos"))
    return 0


def list_layers(args) -> int:
    """`neuron-atlas layers` for a video model: layer, type, time layout, units, spatial size."""
    from models.loading import BUILT_WEIGHTS
    from models.registry import resolve_model
    from models.video import format_video_layers, load_video_net

    entry = resolve_model(args.model, **preprocessing_kwargs(args))
    _, video = load_video_net(entry, args.weights or BUILT_WEIGHTS, storage_options=dict(args.storage_option))
    print(format_video_layers(video))
    return 0
