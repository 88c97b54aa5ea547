"""argparse value types and flag groups shared by the subcommands."""

from __future__ import annotations

import argparse

from models.errors import UserInputError
from models.layout import parse_layout

__all__ = ["key_value", "floats3", "preprocessing_kwargs", "layout_arg", "objective_arg", "coarse_arg",
           "add_model_flags", "add_preprocessing_flags", "add_generator_flags",
           "add_selection_flags", "add_execution_flags"]


def key_value(text: str) -> tuple[str, str]:
    """'KEY=VALUE' -> (KEY, VALUE)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def floats3(text: str) -> tuple[float, ...]:
    """'a,b,c' (or 'a' for a 1-channel net) -> per-channel floats (mean or std)."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) not in (1, 3):
        raise argparse.ArgumentTypeError(f"{text!r} is not one or three comma-separated numbers (one per input "
                                         "channel), e.g. 0.485,0.456,0.406")
    return vals


def preprocessing_kwargs(args: argparse.Namespace) -> dict:
    """The preprocessing flags as keyword arguments of `resolve_model` and `NetSpec`."""
    # a --config file gives LAYER=KIND strings, which argparse's type does not see
    layouts = tuple(parse_layout(v) if isinstance(v, str) else tuple(v) for v in getattr(args, "layout", None) or ())
    layouts = layouts or None
    return {"input_size": args.input_size, "mean": args.mean, "std": args.std, "bgr": args.bgr,
            "channels": getattr(args, "channels", None), "layouts": layouts}


def layout_arg(text: str) -> tuple[str, str]:
    """--layout LAYER=KIND -> (layer, kind); models/layout.parse_layout says what KIND may be."""
    try:
        return parse_layout(text)
    except UserInputError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def coarse_arg(text: str) -> tuple[float, float] | bool:
    """--coarse SCALE[:FRACTION] -> (scale, fraction of the steps, default 0.5); 'none' -> False."""
    if text.strip().lower() == "none":
        return False
    scale, _, until = text.partition(":")
    try:
        return float(scale), float(until) if until else 0.5
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not SCALE[:FRACTION] (e.g. 0.7:0.5) or none") from None


def diversity_arg(text: str) -> tuple[float, str | None]:
    """--diversity WEIGHT[:LAYER] -> (weight, layer or None)."""
    weight, _, layer = text.partition(":")
    try:
        return float(weight), layer.strip() or None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WEIGHT[:LAYER] (e.g. 1 or 1:features.18)") from None


def objective_arg(text: str) -> tuple[str, int | None, int | None, float]:
    """'unit' | 'channel' | 'softmax' | 'blend:A,B:GAMMA' -> (kind, A, B, gamma)."""
    if text in ("unit", "channel", "softmax"):
        return text, None, None, 0.0
    parts = text.split(":")
    try:
        if parts[0] == "blend" and len(parts) == 3:
            a, b = (int(v) for v in parts[1].split(","))
            gamma = float(parts[2])
            if gamma >= 0:
                return "blend", a, b, gamma
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not 'unit', 'channel', 'softmax' or 'blend:A,B:GAMMA' "
                                     "(two units of the layer and a penalty weight >= 0, e.g. blend:980,970:0.1)")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="mobilenet_v2", help="registry name or package.module:Callable")
    g.add_argument("--weights", help="weights URI (any fsspec URI), or 'random'; default: the embedded weights")
    add_preprocessing_flags(g)
    g.add_argument("--storage-option", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="fsspec storage option for every URI (e.g. endpoint_url=http://127.0.0.1:5000)")
    g.add_argument("--config", help="TOML file holding any of the flags")


def add_preprocessing_flags(g) -> None:
    """--input-size, --channels, --mean, --std, --bgr: how a package.module:Callable model takes its images."""
    g.add_argument("--input-size", type=int, help="input size for a package.module:Callable model")
    g.add_argument("--channels", type=int, choices=(1, 3), help="input channels of a package.module:Callable "
                   "model (default 3, or as many as --mean gives); 1: greyscale pictures")
    g.add_argument("--mean", type=floats3, help="per-channel mean, in the net's channel order and scale")
    g.add_argument("--std", type=floats3, help="per-channel std")
    g.add_argument("--bgr", action=argparse.BooleanOptionalAction, default=None, help="the net expects BGR")
    g.add_argument("--layout", action="append", type=layout_arg, default=[], metavar="LAYER=KIND",
                   help="read LAYER's output as KIND: channels_first, channels_last, tokens (tokens:P: P prefix "
                        "tokens such as the class token) or vector; default: inferred from the module and a probe "
                        "forward ('neuron-atlas layers' shows it)")


def add_selection_flags(p: argparse.ArgumentParser, layers_help: str, units_help: str):
    """The 'selection' group every per-unit command shares: --layers, --units, --layer-units; returns it."""
    g = p.add_argument_group("selection")
    g.add_argument("--layers", help=layers_help)
    g.add_argument("--units", default="all", help=units_help)
    g.add_argument("--layer-units", action="append", type=key_value, default=[], metavar="LAYER=SPEC",
                   help="units for one layer, overriding --units")
    return g


def add_generator_flags(g) -> None:
    g.add_argument("--generator", help="generator prior G (registry name; default: the model's own prior, e.g. "
                   "fashion-fc for the Fashion-MNIST nets, else mnv2-pool, the shipped MobileNetV2 demo prior)")
    g.add_argument("--generator-weights", help="generator weights URI, or 'random'")
    g.add_argument("--bounds", help="per-code-unit upper bounds (.npy, .parquet column 'upper', or text)")
    g.add_argument("--code-bound", type=float, help="constant upper bound for every code unit")


def add_execution_flags(p: argparse.ArgumentParser):
    g = p.add_argument_group("execution")
    g.add_argument("--out", default="./atlas-out", help="output folder or URI (s3://bucket/prefix, ...)")
    g.add_argument("--address", default=None,
                   help="the Ray cluster: 'auto', host:port or ray://host:port; 'local' (this machine only: one "
                        "actor runs in this process without Ray, more start a local Ray instance), 'inline' or "
                        "'local-ray'; default: the cluster RAY_ADDRESS names (ray job submit sets it), else local")
    g.add_argument("--actors", type=int, help="number of actors (default: one per GPU, growing as GPUs join; "
                   "1 on CPUs)")
    g.add_argument("--gpus-per-actor", type=float, default=1.0, help="GPUs each actor holds (a fraction shares one)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",  # cluster.Placement
                   help="auto: GPUs on a cluster (waiting for them, --wait-gpus), on this machine its GPUs if any, "
                        "else its CPUs; cpu: CPU actors anywhere; cuda: GPU actors or one error line")
    g.add_argument("--wait-gpus", type=float, default=600.0, metavar="SECONDS",
                   help="how long a cluster without GPUs may take to bring them (the autoscaler is asked at once) "
                        "before the run stops with one line")
    g.add_argument("--storage-retry-s", type=float, default=120.0,
                   help="seconds of backoff for transient storage faults before the run stops")
    return g
