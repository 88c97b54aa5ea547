"""`neuron-atlas compact OUT`: merge each partition's Parquet parts into few files (pipelines/compaction.py).

Safe at any kill and idempotent: run it again to finish; a finished atlas, snapshots or video run compacts the
partitions it wrote by itself. OUT must be an output folder of neuron-atlas (a manifest.json or one of the
compacted datasets under it) and writable.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_subcommand", "run"]


def add_subcommand(subparsers) -> None:
    from .argtypes import key_value

    p = subparsers.add_parser("compact", help="merge each partition's Parquet parts into few files (safe at any "
                              "kill; finished runs do it themselves)")
    p.add_argument("out", help="output folder or URI of atlas, snapshots or video runs")
    p.add_argument("--target-mb", type=float, default=64.0, help="files at least this large are left as they are")
    p.add_argument("--storage-option", action="append", type=key_value, default=[], metavar="KEY=VALUE")
    p.add_argument("--storage-retry-s", type=float, default=120.0)


def run(args: argparse.Namespace) -> int:
    from models.errors import UserInputError
    from models.retry import RetryPolicy

    from .compaction import COMPACTED_DATASETS, compact
    from .storage import Store

    if args.target_mb <= 0:
        raise UserInputError(f"--target-mb {args.target_mb} must be positive")
    store = Store(args.out, dict(args.storage_option), RetryPolicy(budget_s=args.storage_retry_s))
    try:
        store.read_bytes("manifest.json")
        is_output = True
    except FileNotFoundError:
        is_output = any(store.find(d, ".parquet") for d in COMPACTED_DATASETS)
    if not is_output:
        raise UserInputError(f"{args.out!r} is not a neuron-atlas output folder (no manifest.json, no "
                             f"{', '.join(d + '/' for d in COMPACTED_DATASETS)}); pass the --out of a run")
    store.check_writable()
    summary = compact(store, target_bytes=int(args.target_mb * 2 ** 20),
                      log=lambda m: print(m, file=sys.stderr))
    print(summary.line(args.out))
    return 0
