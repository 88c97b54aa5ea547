"""`neuron-atlas import-caffe`: the authors' Caffe generator weights -> a PyTorch state dict file.

Reads a .caffemodel (and optionally its .prototxt, to cross-check layer types) from any fsspec URI, maps
it onto a registry generator (`models.caffe_import`), and writes `torch.save(state_dict)` to `--out` in one
write (atomic for local files), ready for `--generator-weights`. User errors raise `UserInputError`; the
CLI turns them into one line and exit status 2.
"""

from __future__ import annotations

import argparse
import io
import os

import torch

from models.caffe_import import import_caffemodel
from models.errors import UserInputError

from .argtypes import key_value
from .storage import Store

__all__ = ["add_subcommand", "run"]


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    """Add `import-caffe` to the CLI's subparsers; returns its parser."""
    p = subparsers.add_parser("import-caffe", help="convert Caffe DeePSiM generator weights to a PyTorch file")
    p.add_argument("--caffemodel", required=True, metavar="URI", help=".caffemodel weights (any fsspec URI)")
    p.add_argument("--prototxt", metavar="URI", help="the net's .prototxt, to cross-check layer types")
    p.add_argument("--generator", default="deepsim-fc6", help="registry generator the weights belong to")
    p.add_argument("--out", required=True, metavar="URI", help="where to write the state dict (torch.save)")
    p.add_argument("--storage-option", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="fsspec storage option for every URI (e.g. endpoint_url=http://127.0.0.1:5000)")
    return p


def run(args: argparse.Namespace) -> int:
    """Convert, write `--out`, print one summary line; returns the exit status (0)."""
    storage = dict(args.storage_option)
    out = Store(args.out, storage)
    if out.local and os.path.isdir(out.root):  # checked first: a bad --out should not cost a conversion
        raise UserInputError(f"--out {args.out!r} is a folder; "
                             f"pass a file name such as {args.out.rstrip('/')}/generator.pt")
    sd = import_caffemodel(args.caffemodel, args.generator, args.prototxt, storage)
    buf = io.BytesIO()
    torch.save(sd, buf)
    # Store writes the whole file at once (temp + rename locally, one PUT remotely): never half-written
    out.write_bytes("", buf.getvalue())
    print(f"wrote {args.out}: {len(sd)} tensors for {args.generator} from {args.caffemodel}")
    return 0
