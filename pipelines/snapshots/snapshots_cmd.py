"""`neuron-atlas snapshots`: its flags, and the flags -> SnapshotSpec translation (sweep.py and follow.py do
the work; imported only when the command runs, so the CLI starts without Ray).

    neuron-atlas snapshots --model M --checkpoints URI [--pattern REGEX] [--every N | --steps A:B:C]
        [--follow [--interval S] [--until-idle S]] --layers ... --units ... --seeds ... --out URI

Every flag of `atlas` applies (method, style, objective, execution, ...), except `--weights` and
`--snapshot`: the weights are the checkpoints, and the snapshot label is each one's zero-padded step.
`--steps` takes both of its meanings: an integer is the optimization step count, as in `atlas`; `A:B[:C]`
selects training steps. Give it twice for both (`--steps 256 --steps 0:50000:5000`).
"""

from __future__ import annotations

import argparse
import sys

from models.errors import UserInputError

from ..argtypes import add_model_flags, add_selection_flags
from .. import atlas_cmd
from ..atlas_cmd import add_method_flags
from ..plan_cmd import add_dry_run_flags

__all__ = ["add_subcommand", "run", "steps_arg", "StepsAction"]


def steps_arg(text: str):
    """An int (optimization steps) or 'A:B[:C]' (training steps, a StepRange)."""
    from .checkpoints import parse_step_range

    text = str(text).strip()
    if ":" not in text:
        try:
            return int(text)
        except ValueError:
            pass
    try:
        return parse_step_range(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e}: --steps takes an optimization step count N or training steps "
                                         "A:B[:C] (end exclusive, e.g. 0:50000:5000)") from None


class StepsAction(argparse.Action):
    """Collects --steps values (an int and a range may both be given); a value from --config yields to a
    command-line value of the same kind."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = getattr(namespace, self.dest, None)
        if not getattr(namespace, "_steps_on_command_line", False):
            configured = items if isinstance(items, list) else ([] if items is None else [items])
            items = [v for v in configured if isinstance(steps_arg(str(v)), int) != isinstance(values, int)]
            namespace._steps_on_command_line = True
        setattr(namespace, self.dest, [*items, values])


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("snapshots", help="the same units on every training checkpoint under a prefix, "
                              "optionally following a run as it trains")
    add_model_flags(p)
    g = p.add_argument_group("checkpoints")
    g.add_argument("--checkpoints", help="(required; may come from --config) folder or prefix URI "
                   "(s3://bucket/run/ckpts) of state-dict files (.pt, .pth, .ckpt, .bin), searched recursively")
    g.add_argument("--pattern", help="regex with a named group 'step', matched against each file's path under the "
                   "prefix (default: the last integer in the file name)")
    g.add_argument("--every", type=int, help="keep the training steps that are multiples of N")
    g.add_argument("--follow", action="store_true", help="keep polling for new complete checkpoints")
    g.add_argument("--interval", type=float, default=60.0, help="seconds between polls (and the stability window "
                   "for checkpoints without a .done marker)")
    g.add_argument("--until-idle", type=float, metavar="S",
                   help="with --follow (implied): stop after S seconds without a new snapshot")
    g.add_argument("--tensorboard", metavar="LOGDIR",
                   help="also write each snapshot's images, activations and filmstrips as TensorBoard events at "
                        "its training step, under LOGDIR/neuron-atlas (any fsspec URI; point it at the trainer's "
                        "own log directory; needs pip install 'neuron-atlas[tensorboard]')")
    g = add_selection_flags(p, "comma-separated layer paths; default: the model's demo selection",
                            "'all', '0:64', '3,17,42', '12@6,6' (channel@row,col)")
    g.add_argument("--seeds", type=int, default=2, help="number of seeds per unit (seeds 0..N-1), the same for "
                   "every snapshot")
    add_method_flags(p, steps_type=steps_arg, steps_action=StepsAction,
                     steps_help="N: optimization steps (as in atlas); A:B[:C]: the training steps to keep "
                     "(range, end exclusive); give both with two --steps")
    p.add_argument("--dry-run", action="store_true", help="print what a sweep of the checkpoints there now would "
                   "cost (neuron-atlas plan) and write nothing")
    add_dry_run_flags(p)
    return p


def _split_steps(values) -> tuple[int | None, object | None]:
    """--steps values (one or two, or a TOML value) -> (optimization steps, training StepRange)."""
    from .checkpoints import StepRange

    if values is None:
        return None, None
    if not isinstance(values, list):
        values = [values]
    opt, train = None, None
    for v in values:
        v = v if isinstance(v, (int, StepRange)) else steps_arg(str(v))
        if isinstance(v, int):
            if opt is not None:
                raise UserInputError("--steps N (optimization steps) given twice; keep one")
            opt = v
        else:
            if train is not None:
                raise UserInputError("--steps A:B:C (training steps) given twice; keep one")
            train = v
    return opt, train


def spec_from_args(args: argparse.Namespace):
    """The SnapshotSpec the flags describe (UserInputError for contradictory values)."""
    from .checkpoints import StepSelection
    from .sweep import SnapshotSpec

    if args.weights:
        raise UserInputError("snapshots reads its weights from --checkpoints; drop --weights")
    opt, train = _split_steps(args.steps)
    atlas_args = argparse.Namespace(**{**vars(args), "steps": opt, "snapshot": None})
    return SnapshotSpec(atlas=atlas_cmd.spec_from_args(atlas_args), checkpoints=args.checkpoints, pattern=args.pattern,
                        selection=StepSelection(every=args.every, steps=train),
                        follow=args.follow or args.until_idle is not None, interval=args.interval,
                        until_idle=args.until_idle, tensorboard=getattr(args, "tensorboard", None))


def run(args: argparse.Namespace) -> int:
    """Watch (or sweep once) and summarize; returns the exit status (0)."""
    from .follow import watch
    from .sweep import Sweep

    if args.dry_run:
        from .. import plan_cmd

        return plan_cmd.run(args, snapshots=True)
    spec = spec_from_args(args)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    sweep = Sweep(spec, log=log)
    if not spec.follow:
        sweep.require_checkpoints()
    mode = (f"following every {spec.interval:g} s" + (f" until {spec.until_idle:g} s idle" if spec.until_idle
                                                      is not None else "")) if spec.follow else "once"
    log(f"neuron-atlas: {len(sweep.base.items)} items per snapshot ({sweep.base.spec.method}, "
        f"{sweep.base.spec.steps} steps), checkpoints {sweep.prefix.uri} ({spec.selection.describe()}), "
        f"{mode} -> {args.out}")
    try:
        watch(sweep.round, follow=spec.follow, interval=spec.interval, until_idle=spec.until_idle, log=log)
    except KeyboardInterrupt:
        sweep.finish("interrupted")
        raise
    sweep.finish("finished" if not spec.follow else "idle")
    print(summary_line(sweep, args.out))
    return 0


def summary_line(sweep, out: str) -> str:
    t, n = sweep.totals.timings, sweep.totals
    failed = f"; {n.failed} checkpoint(s) skipped (see manifest.json failed_checkpoints)" if n.failed else ""
    if n.items == 0:
        return (f"nothing to do: {len(sweep.processed)} snapshots, all {n.present} items already under {out}"
                f"{failed}")
    share = t.overhead / t.synthesis if t.synthesis else 0.0
    return (f"done: {n.snapshots} snapshots ({n.items} items written, {n.present} already present){failed}; "
            f"tracking in {out}/{sweep.tracker.dir}; per-snapshot overhead {share:.1%} of synthesis time "
            f"(listing {t.listing:.2f} s, checkpoint reads {t.validate:.2f} s, actor weight loads {t.load:.2f} s, "
            f"tracking {t.tracking:.2f} s; synthesis {t.synthesis:.1f} s)")
