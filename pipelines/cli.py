"""The `neuron-atlas` command line (also `python -m pipelines`).

Subcommands: `layers` (list addressable layers) and `atlas` (the main job). Any flag may also come from a
TOML file given with `--config` (keys are flag names, with '-' or '_'); flags on the command line win.
User errors print one line, `neuron-atlas: error: ...`, and exit with status 2, with nothing half-written;
a storage fault that outlasts its retries exits with status 3 (everything already written stays valid).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tomllib

from models.errors import StorageError, UserInputError

from . import atlas_cmd, compact_cmd, plan_cmd
from . import doctor
from .snapshots import snapshots_cmd
from .report import report_cmd
from .topk import nearest_cmd, topk_cmd
from .video import video_cmd
from .argtypes import (add_execution_flags, add_generator_flags, add_model_flags, add_preprocessing_flags, key_value,
                       preprocessing_kwargs)
from .atlas_cmd import tuned, with_generator

__all__ = ["main", "build_parser"]

IMAGES_HELP = ("folder/prefix URI of .jpg/.png images, 'offline' (the 222 bundled photos), 'offline-photos' "
               "(the same without the 200 LFW faces), 'fashion-mnist:train' or 'fashion-mnist:test' (Debian's "
               "dataset-fashion-mnist), or a folder or file of IDX images")


def build_parser() -> argparse.ArgumentParser:
    from tasks.inverse import InverseConfig

    parser = argparse.ArgumentParser(prog="neuron-atlas", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("layers", help="list addressable layers: layout, units (feature channels) and positions "
                       "(HxW of a map, or a transformer's tokens: '197 tokens = cls + 14x14')")
    add_model_flags(p)
    p.add_argument("--json", action="store_true", help="one JSON object per layer (path, type, layout with its "
                   "prefix tokens and grid, units, positions, canonical and raw shapes)")
    p.add_argument("--video", action="store_true", help="the model takes clips [B, T, 3, H, W] (registered "
                   "video models are recognised without it): list layers with their time layout")

    atlas_cmd.add_subcommand(sub)
    plan_cmd.add_subcommand(sub)
    compact_cmd.add_subcommand(sub)
    snapshots_cmd.add_subcommand(sub)
    topk_cmd.add_subcommand(sub)
    nearest_cmd.add_subcommand(sub)
    report_cmd.add_subcommand(sub)
    video_cmd.add_subcommand(sub)

    p = sub.add_parser("inverse", help="inverse-set samples: many diverse images with activations in [Z1, Z2]")
    add_model_flags(p)
    g = p.add_argument_group("constraints")
    g.add_argument("--constraint", action="append", default=[], metavar="LAYER:UNIT[@Y,X]:Z1:Z2",
                   help="repeat to intersect; UNIT may be a list or range ('3,17', '0:8') for one run per unit")
    g.add_argument("--snapshot", help="snapshot name in the output paths; default: the weights file's stem")
    g = p.add_argument_group("sampling (defaults: the paper's settings)")
    d = InverseConfig()
    g.add_argument("--n", type=int, default=d.n, help="samples per run, seeds included")
    g.add_argument("--k", type=int, default=d.k, help="seeds, optimized and then stepped together")
    g.add_argument("--seed-steps", type=int, default=d.seed_steps, help="gradient steps per outer iteration")
    g.add_argument("--max-outer", type=int, default=d.max_outer, help="outer (lambda, mu) iterations allowed")
    g.add_argument("--mu0", type=float, default=d.mu0)
    g.add_argument("--mu-growth", type=float, default=d.mu_growth)
    g.add_argument("--lr", type=float, default=d.lr, help="seed-phase step (normalized, in code units)")
    g.add_argument("--beta", type=float, default=d.beta, help="sampling step (normalized, in code units)")
    g.add_argument("--max-sample-steps", type=int, default=d.max_sample_steps)
    g.add_argument("--diversity", choices=["encoder", "code", "none"], default=d.diversity,
                   help="where the diversity term measures distance (code and none: the paper's ablations)")
    g.add_argument("--diversity-weight", type=float, default=d.diversity_weight)
    g.add_argument("--encoder-layer", help="layer of the target net for E(G(c)); default: its middle block")
    g.add_argument("--init-std", type=float,
                   help=f"std of the random initial codes (default: the generator's DGN-AM value, else {d.init_std:g})")
    g.add_argument("--seed", type=int, default=0)
    add_generator_flags(g)
    add_execution_flags(p)
    p = sub.add_parser("stats", help="per-unit code statistics (mean, std, max) that set DGN-AM's clip bounds")
    p.add_argument("--generator", help="generator whose encoder layer to measure (e.g. mnv2-pool, deepsim-fc6)")
    p.add_argument("--model", help="encoder net (overrides the generator's)")
    p.add_argument("--layer", help="encoder layer (overrides the generator's)")
    p.add_argument("--weights", help="encoder weights URI, or 'random'; default: the embedded weights (a "
                   "package.module:Callable: as it built them)")
    add_preprocessing_flags(p)
    p.add_argument("--images", required=True, help=IMAGES_HELP)
    p.add_argument("--out", default="./stats-out", help="output folder or URI")
    p.add_argument("--k", type=float, default=3.0, help="upper bound = mean + k * std")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--shard-size", type=int, default=256, help="images per Ray task")
    p.add_argument("--device", default="auto",
                   help="auto (a GPU per task wherever the cluster has GPUs, else CPUs), cpu, or cuda (cuda:N: the "
                   "GPU Ray gives each task; an error at once when the cluster has none)")
    p.add_argument("--address", default="local")
    p.add_argument("--storage-option", action="append", type=key_value, default=[], metavar="KEY=VALUE")
    p.add_argument("--config", help="TOML file holding any of the flags")
    from . import import_caffe

    import_caffe.add_subcommand(sub)
    doctor.add_subcommand(sub)

    p = sub.add_parser("train-generator", help="train a generator prior that inverts a layer of an encoder")
    p.add_argument("--generator", default="mnv2-pool", help="generator architecture (registry name)")
    p.add_argument("--encoder", help="encoder net (default: the generator's)")
    p.add_argument("--encoder-layer", help="layer whose codes G inverts (default: the generator's)")
    p.add_argument("--encoder-weights", help="encoder weights URI; default: the embedded weights")
    p.add_argument("--comparator-layer", help="layer of the encoder net for the feature loss "
                   "(default: the encoder layer)")
    p.add_argument("--images", default="offline", help=IMAGES_HELP)
    p.add_argument("--out", default="./generator-out", help="checkpoint and output folder or URI")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--w-pixel", type=float, default=1.0)
    p.add_argument("--w-feature", type=float, default=1.0)
    p.add_argument("--w-adversarial", type=float, default=0.01)
    p.add_argument("--w-code", type=float, default=0.0,
                   help="weight of ||E(G(y)) - y||^2, the feature loss in the encoder's own space (paper: 0)")
    p.add_argument("--synthetic-codes", type=int, default=0,
                   help="extra codes per step drawn inside --bounds, trained with the code loss only")
    p.add_argument("--synthetic-kind", choices=["mix", "box"], default="mix",
                   help="mix: blends and intensified copies of the batch's photo codes; box: uniform in bounds")
    p.add_argument("--bounds", help="code upper bounds (.npy from 'neuron-atlas stats'), for --synthetic-codes")
    p.add_argument("--augment", choices=["photo", "flip", "none"], default="photo",
                   help="photo: random resized crops, flips and colour jitter of each whole picture (a few hundred "
                   "photos); flip: each image as the encoder frames it, randomly mirrored (a dataset such as "
                   "fashion-mnist:train); none: as the encoder frames it")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when torch sees it, else the CPU), cpu, cuda or cuda:N; checkpoints load on any")
    p.add_argument("--storage-option", action="append", type=key_value, default=[], metavar="KEY=VALUE")
    p.add_argument("--config", help="TOML file holding any of the flags")
    return parser


def _apply_config(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return
    try:
        with open(known.config, "rb") as f:
            values = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserInputError(f"cannot read --config {known.config!r}: {e}") from e
    values = {k.replace("-", "_"): v for k, v in values.items()}
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in sub.choices.items():
        dests = {a.dest for a in sp._actions}
        unknown = sorted(set(values) - dests)
        if name in argv and unknown:
            raise UserInputError(f"--config {known.config!r}: unknown keys {unknown}; use the flag names of "
                                 f"'neuron-atlas {name} --help'")
        sp.set_defaults(**{k: v for k, v in values.items() if k in dests})


def _cmd_layers(args) -> int:
    from models.layers import format_layers, layers_json
    from models.loading import BUILT_WEIGHTS, load_net
    from models.registry import resolve_model

    entry = resolve_model(args.model, **preprocessing_kwargs(args))
    if args.video or getattr(entry, "kind", None) == "video":
        return video_cmd.list_layers(args)
    # the layer table needs the architecture only: without --weights, no file is read and nothing re-initialized
    net = load_net(entry, args.weights or BUILT_WEIGHTS, storage_options=dict(args.storage_option))
    print(json.dumps(layers_json(net.layers), indent=1) if args.json else format_layers(net.layers))
    return 0


def _cmd_stats(args) -> int:
    from .stats import StatsSpec, resolve_encoder, run_stats

    model, layer = resolve_encoder(args.generator, args.model, args.layer)
    spec = StatsSpec(model=model, layer=layer, images=args.images, out=args.out, weights=args.weights, k=args.k,
                     storage_options=dict(args.storage_option), batch_size=args.batch_size,
                     shard_size=args.shard_size, address=args.address, generator=args.generator, device=args.device,
                     **preprocessing_kwargs(args))
    s = run_stats(spec, log=lambda m: print(m, file=sys.stderr))
    print(f"stats of {model} {layer}: {s.count} images, {len(s.mean)} units, mean upper bound "
          f"{float(s.upper_bounds(args.k).mean()):.3f}; wrote {args.out}/stats.parquet and {args.out}/bounds.npy")
    return 0


def _cmd_train_generator(args) -> int:
    from tasks.deepsim import LossWeights

    from .stats import resolve_encoder
    from .train_generator import TrainSpec, train_generator

    model, layer = resolve_encoder(args.generator, args.encoder, args.encoder_layer)
    spec = TrainSpec(generator=args.generator, encoder_model=model, encoder_layer=layer,
                     comparator_layer=args.comparator_layer or layer, images=args.images, out=args.out,
                     steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                     weights=LossWeights(args.w_pixel, args.w_feature, args.w_adversarial, args.w_code),
                     encoder_weights=args.encoder_weights, checkpoint_every=args.checkpoint_every, seed=args.seed,
                     synthetic_codes=args.synthetic_codes, synthetic_kind=args.synthetic_kind, bounds=args.bounds,
                     augment=args.augment, storage_options=dict(args.storage_option), device=args.device)
    history = train_generator(spec, log=lambda m: print(m, file=sys.stderr))
    print(f"trained {args.generator} to step {history[-1]['step']}; wrote {args.out}/generator.pt, "
          f"{args.out}/losses.json and {args.out}/loss_curve.png")
    return 0


def _cmd_import_caffe(args) -> int:
    from . import import_caffe

    return import_caffe.run(args)


def _init_std(args) -> float:
    """--init-std, else the generator entry's tuned DGN-AM value, else InverseConfig's default."""
    from tasks.inverse import InverseConfig

    if args.init_std is not None:
        return args.init_std
    return tuned(with_generator(args).generator).get("init_std", InverseConfig.init_std)


def _cmd_inverse(args) -> int:
    from tasks.actor import NetSpec
    from tasks.dgn import DGNConfig
    from tasks.inverse import InverseConfig

    from .cluster import placement_of
    from .inverse import InverseSpec, plan_inverse, run_inverse

    storage = dict(args.storage_option)
    args = with_generator(args)
    net = NetSpec(model=args.model, weights=args.weights, **preprocessing_kwargs(args), generator=args.generator,
                  generator_weights=args.generator_weights,
                  storage_options=storage)
    config = InverseConfig(k=args.k, n=args.n, seed_steps=args.seed_steps, max_outer=args.max_outer, mu0=args.mu0,
                           mu_growth=args.mu_growth, lr=args.lr, beta=args.beta,
                           max_sample_steps=args.max_sample_steps, diversity=args.diversity,
                           diversity_weight=args.diversity_weight, init_std=_init_std(args))
    spec = InverseSpec(net=net, constraints=tuple(args.constraint), config=config, encoder_layer=args.encoder_layer,
                       seed=args.seed, dgn=DGNConfig(upper=args.code_bound), bounds=args.bounds,
                       snapshot=args.snapshot, out=args.out, storage_options=storage,
                       placement=placement_of(args), storage_retry_s=args.storage_retry_s)
    p = plan_inverse(spec)
    print(f"neuron-atlas: {len(p.runs)} inverse-set runs (n={config.n}, k={config.k}, diversity in "
          f"{config.diversity}) -> {args.out}/inverse", file=sys.stderr)
    summary = run_inverse(p, log=lambda m: print(m, file=sys.stderr))
    print(summary.line(args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="neuron-atlas: %(message)s")
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # aiohttp's reset-connection noise; we retry
    parser = build_parser()
    try:
        _apply_config(parser, argv)
        args = parser.parse_args(argv)
        handler = {"layers": _cmd_layers, "atlas": atlas_cmd.run, "plan": plan_cmd.run, "compact": compact_cmd.run,
                   "stats": _cmd_stats,
                   "train-generator": _cmd_train_generator, "import-caffe": _cmd_import_caffe,
                   "inverse": _cmd_inverse, "topk": topk_cmd.run, "nearest": nearest_cmd.run,
                   "snapshots": snapshots_cmd.run, "report": report_cmd.run,
                   "video": video_cmd.run, "doctor": doctor.run}[args.command]
        return handler(args)
    except StorageError as e:  # persistent storage fault: files already written stay valid
        print(f"neuron-atlas: error: {_line(e)}; files already written are complete, rerun to resume",
              file=sys.stderr)
        return 3
    except UserInputError as e:
        print(f"neuron-atlas: error: {_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("neuron-atlas: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _line(e: UserInputError) -> str:
    """The error's one line. One raised inside a Ray task or actor method arrives as Ray's RayTaskError, which
    is also an instance of the original's class but reads as the worker's whole traceback: use the original."""
    cause = getattr(e, "cause", None)
    return str(cause if isinstance(cause, UserInputError) else e)


if __name__ == "__main__":
    sys.exit(main())
