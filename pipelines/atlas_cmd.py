"""`neuron-atlas atlas`: its flags, and the flags -> AtlasSpec translation (pipelines/spec.py does the rest).

Image-space AM is configured by a style (`--style`, tasks/image_am.STYLES) under individual flags:
`--param pixel|fourier`, `--preset` (pixel only), `--transforms`, `--optimizer ascent|adam`, `--lr`,
`--lr-end`, `--normalize-grad`, `--steps`. Without `--style`, a pixel flag (`--param pixel` or `--preset`)
selects `yosinski` (the paper's method, the default before styles existed), anything else `DEFAULT_STYLE`.
"""

from __future__ import annotations

import argparse
import sys

from models.errors import UserInputError
from tasks.image_am import STYLE_HELP

from .argtypes import (add_execution_flags, add_generator_flags, add_model_flags, add_selection_flags, coarse_arg,
                       diversity_arg, objective_arg, preprocessing_kwargs)

__all__ = ["add_subcommand", "add_atlas_flags", "add_method_flags", "spec_from_args", "run", "tuned", "with_generator",
           "DEFAULT_METHOD", "DEFAULT_STYLE"]

DEFAULT_METHOD = "image"
DEFAULT_STYLE = "lucid"
_DEFAULT_STEPS = 200  # DGN-AM (the released code's setting)


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    """Add `atlas` to the CLI's subparsers; returns its parser."""
    from .plan_cmd import add_dry_run_flags

    p = subparsers.add_parser("atlas", help="one synthesized image per (layer, unit, seed)")
    add_atlas_flags(p)
    p.add_argument("--dry-run", action="store_true", help="print what the run would cost (neuron-atlas plan) "
                   "and write nothing")
    add_dry_run_flags(p)
    return p


def add_atlas_flags(p: argparse.ArgumentParser) -> None:
    """Every flag of `atlas` (also `plan`'s)."""
    add_model_flags(p)
    g = add_selection_flags(p, "comma-separated layer paths, shell-style patterns over them ('features.*', "
                            "'layer*.*.conv2') or 'all' (every conv and linear layer); default: the model's demo "
                            "selection",
                            "'all', '0:64', '3,17,42', '12@6,6' (channel@row,col)")
    g.add_argument("--seeds", type=int, default=2, help="number of seeds per unit (seeds 0..N-1)")
    g.add_argument("--snapshot", help="snapshot name in the output paths; default: the weights file's stem")
    add_method_flags(p)


def add_method_flags(p: argparse.ArgumentParser, steps_type=int, steps_action: str | type = "store",
                     steps_help: str = "optimization steps (default: the style's; 200 for dgn)") -> None:
    """Every flag of `atlas` after the selection: method, image-space AM, DGN-AM and execution (`snapshots`
    takes them all; its --steps also selects training steps, hence the overridable type and action)."""
    g = p.add_argument_group("method")
    g.add_argument("--method", choices=["image", "dgn"], default=DEFAULT_METHOD)
    g.add_argument("--steps", type=steps_type, action=steps_action, help=steps_help)
    g.add_argument("--lr", type=float, help="start learning rate (default: per style/optimizer; dgn: the "
                   "generator entry's tuned value, else 8)")
    g.add_argument("--lr-end", type=float, help="final learning rate of the linear decay")
    g.add_argument("--normalize-grad", action=argparse.BooleanOptionalAction, default=None,
                   help="ascent step = lr * g / mean|g| per item (default on for normalized ascent)")
    g.add_argument("--objective", type=objective_arg, default=("unit", None, None, 0.0),
                   metavar="unit|channel|softmax|blend:A,B:GAMMA",
                   help="unit activation at its position (default), channel mean over positions, class "
                        "probability, or units A and B of the layer together with the penalty GAMMA*(a_A - a_B)^2")
    g.add_argument("--direction", choices=["max", "min"], default="max",
                   help="min: least-preferred inputs (the reported activations are the unit's own)")
    g.add_argument("--diversity", type=diversity_arg, metavar="WEIGHT[:LAYER]",
                   help="optimize each unit's seeds together, penalizing the cosine similarity of their Gram "
                        "matrices at LAYER (default: the unit's layer, or the last one with spatial maps below "
                        "it), relative to the activation: 1 is a sensible strength on any net (Olah et al. 2017)")
    g.add_argument("--init", metavar="URI", help="start from real photos instead of noise: a photo (every seed) "
                   "or a folder, prefix or Parquet file of one photo per seed, any fsspec URI; image AM starts "
                   "from the photo itself (the unit's caricature of it), DGN-AM from the encoder's code of it")
    g = p.add_argument_group("image-space AM")
    g.add_argument("--style", help="; ".join(f"{name}{' (default)' if name == DEFAULT_STYLE else ''}: {what}"
                                            for name, what in STYLE_HELP.items())
                   + ". The flags below override parts of it")
    g.add_argument("--param", help="pixel (Yosinski's regularized pixels), fourier (Lucid's decorrelated "
                   "frequency space) or maco (only the Fourier phase, with a fixed natural-image magnitude: Fel et "
                   "al. 2023, for deep nets and ViTs)")
    g.add_argument("--preset", help="pixel regularizer preset: sparse, highfreq, lowfreq (the paper's best), "
                   "contrib, none")
    g.add_argument("--transforms", help="random views per step: none, standard (Lucent's), zoom (the lucid "
                   "style's: standard with zooms to 1.5x), or pad=P,jitter=J1+J2,scale=LO:HI:STEP,rotate=DEG "
                   "(also for dgn)")
    g.add_argument("--optimizer", help="ascent (normalized gradient ascent) or adam")
    g.add_argument("--fourier-size", type=int, help="render the fourier image at this many pixels and upsample "
                   "it to the net's input (Lucent's default: 128 for a 224 px net)")
    g.add_argument("--coarse", type=coarse_arg, metavar="SCALE[:FRACTION]|none",
                   help="progressive resolution: views at SCALE of the net's input size for the first FRACTION "
                        "of the steps (default 0.5), for objectives without a position (lucid style: 0.7:0.5)")
    g = p.add_argument_group("DGN-AM")
    add_generator_flags(g)
    g.add_argument("--l2", choices=["decay", "paper"], default="decay",
                   help="DGN-AM L2: the released code's y*=0.99 ('decay') or the paper's lambda*||y|| ('paper')")
    g.add_argument("--l2-lambda", type=float, default=0.005)
    g = add_execution_flags(p)
    g.add_argument("--batch-size", type=int, help="items optimized together (default: as many as the GPU's free "
                   "memory holds, at most 512; 10 on a CPU)")
    g.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="tf32",
                   help="on a GPU: fp32; tf32 (TF32 matmuls and convolutions, the default); bf16 (the target net "
                        "under bf16 autocast; the image's FFT, sigmoid and quantization stay fp32)")


def tuned(generator: str) -> dict:
    """The generator entry's own DGN-AM settings (e.g. lr, init_std; `steps`), applied where flags are absent."""
    from models.registry import resolve_model

    return dict(getattr(resolve_model(generator), "dgn_defaults", ()))


def with_generator(args: argparse.Namespace) -> argparse.Namespace:
    """`args` with --generator filled in from the model's entry when it was not given."""
    from models.registry import default_generator

    if getattr(args, "generator", None):
        return args
    return argparse.Namespace(**{**vars(args), "generator": default_generator(args.model)})


def _image_config(args):
    from tasks.image_am import STYLES, ImageAMConfig

    style = args.style or ("yosinski" if args.param == "pixel" or args.preset else DEFAULT_STYLE)
    config = ImageAMConfig.build(style, param=args.param, preset=args.preset, transforms=args.transforms,
                                 optimizer=args.optimizer, fourier_size=args.fourier_size,
                                 coarse=getattr(args, "coarse", None), lr=args.lr,
                                 lr_end=args.lr_end,
                                 normalize=args.normalize_grad)
    return config, STYLES[style]["steps"]


def _dgn_config(args):
    from tasks.dgn import DGNConfig

    for flag in ("style", "param", "preset", "optimizer", "fourier_size", "coarse"):
        if getattr(args, flag) is not None:
            raise UserInputError(f"--{flag.replace('_', '-')} is for --method image; DGN-AM takes --transforms, "
                                 "--lr, --lr-end and the generator flags")
    common = {k: v for k, v in {"lr": args.lr, "lr_end": args.lr_end, "normalize": args.normalize_grad}.items()
              if v is not None}
    settings = tuned(args.generator)
    steps = int(settings.pop("steps", _DEFAULT_STEPS))
    return DGNConfig(l2=args.l2, l2_lambda=args.l2_lambda, upper=args.code_bound, transforms=args.transforms or "none",
                     **{**settings, **common}), steps


def spec_from_args(args):
    """The AtlasSpec the flags describe (UserInputError for contradictory or unknown values)."""
    from tasks.actor import NetSpec
    from tasks.diversity import DiversitySpec
    from tasks.objectives import ObjectiveSpec

    from .cluster import placement_of
    from .spec import AtlasSpec

    args = with_generator(args)
    config, steps = _image_config(args) if args.method == "image" else _dgn_config(args)
    storage = dict(args.storage_option)
    net = NetSpec(model=args.model, weights=args.weights, **preprocessing_kwargs(args),
                  generator=args.generator if args.method == "dgn" else None,
                  generator_weights=args.generator_weights, storage_options=storage,
                  precision=getattr(args, "precision", "tf32"))
    layers = tuple(s.strip() for s in args.layers.split(",") if s.strip()) if args.layers else ()
    kind, a, b, gamma = args.objective
    units = args.units
    if kind == "blend":
        if units != "all":
            raise UserInputError("--objective blend:A,B:GAMMA names its units; drop --units")
        units = str(a)
    objective = ObjectiveSpec(kind, b, gamma, args.direction)
    diversity = DiversitySpec(*args.diversity) if getattr(args, "diversity", None) else None
    return AtlasSpec(net=net, config=config, layers=layers, units=units, objective=objective,
                     layer_units=tuple(args.layer_units), seeds=args.seeds,
                     steps=args.steps if args.steps is not None else steps,
                     snapshot=args.snapshot, out=args.out, storage_options=storage, bounds=args.bounds,
                     batch_size=args.batch_size, placement=placement_of(args), storage_retry_s=args.storage_retry_s,
                     diversity=diversity, init=getattr(args, "init", None))


def run(args: argparse.Namespace) -> int:
    """Plan, run and summarize one atlas job (with --dry-run: only the plan); returns the exit status (0)."""
    if getattr(args, "dry_run", False):
        from . import plan_cmd

        return plan_cmd.run(args)
    from .runner import run_atlas
    from .spec import plan

    p = plan(spec_from_args(args))
    what = args.method if args.method == "dgn" else f"image, {p.spec.config.style or 'custom'} style"
    print(f"neuron-atlas: {len(p.items)} items ({what}, {p.spec.steps} steps) -> {args.out}", file=sys.stderr)
    summary = run_atlas(p, log=lambda m: print(m, file=sys.stderr))
    print(summary.line(args.out))
    return 0
