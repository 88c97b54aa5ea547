"""`neuron-atlas report`: its flags, and the flags -> ReportSpec translation (pipelines/report/build.py makes
the site).

    neuron-atlas report OUT [--site URI] [--page-size N] [--thumb-size PX]

Prints one summary line (pages written and unchanged, thumbnails made) and how to open the site.
"""

from __future__ import annotations

import argparse
import sys

from ..argtypes import key_value

__all__ = ["add_subcommand", "run"]


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="a static HTML atlas over everything under OUT (default: OUT/site)")
    p.add_argument("out", metavar="OUT", help="the --out folder or URI of earlier runs (atlas, topk, nearest, ...)")
    p.add_argument("--site", help="folder or URI to write the site to (default: OUT/site); pages link relatively")
    p.add_argument("--page-size", type=int, default=500, help="units per layer page")
    p.add_argument("--thumb-size", type=int, default=128, help="longest side of the grid thumbnails, in pixels")
    p.add_argument("--workers", type=int, default=8, help="threads making thumbnails and writing pages")
    p.add_argument("--storage-option", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="fsspec storage option for OUT and the site (e.g. endpoint_url=http://127.0.0.1:5000)")
    p.add_argument("--storage-retry-s", type=float, default=120.0,
                   help="seconds of backoff for transient storage faults before the command stops")
    p.add_argument("--config", help="TOML file holding any of the flags")
    return p


def run(args: argparse.Namespace) -> int:
    from .build import ReportSpec, build_site

    spec = ReportSpec(out=args.out, site=args.site, page_size=args.page_size, thumb_px=args.thumb_size,
                      storage_options=dict(args.storage_option), storage_retry_s=args.storage_retry_s,
                      workers=args.workers)
    summary = build_site(spec, log=lambda m: print(m, file=sys.stderr))
    print(summary.line())
    print(summary.how_to_open())
    return 0
