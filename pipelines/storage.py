"""An output root on any fsspec filesystem, with atomic writes.

Local files are written to a temporary name in the same directory and renamed into place; remote objects
(S3, GCS, ...) are written with one PUT, which object stores make visible all at once. Either way a reader
never sees a partial file.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Mapping

import fsspec

from models.errors import UserInputError

__all__ = ["Store"]


class Store:
    """Files under `uri` (a local folder or a bucket prefix); paths are '/'-separated and relative."""

    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None = None):
        self.uri = uri.rstrip("/") or uri
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.uri, **dict(storage_options or {}))
        except (ImportError, ValueError) as e:
            raise UserInputError(f"cannot open --out {uri!r}: {e}") from e
        self.root = self.root.rstrip("/")
        self.local = "file" in _protocols(self.fs)

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def write_bytes(self, rel: str, data: bytes) -> None:
        full = self.path(rel)
        if self.local:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            tmp = f"{full}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, full)
        else:
            self.fs.pipe_file(full, data)

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def find(self, rel: str, suffix: str = "") -> list[str]:
        """Relative paths of all files under `rel` ending with `suffix` (temporary files excluded)."""
        base = self.path(rel)
        if not self.fs.exists(base):
            return []
        self.fs.invalidate_cache()
        found = self.fs.find(base)
        prefix = self.root + "/"
        return sorted(p[len(prefix):] if p.startswith(prefix) else p for p in found
                      if p.endswith(suffix) and ".tmp-" not in p)

    def check_writable(self) -> None:
        """Raise UserInputError unless a file can be created under the root (the probe is removed)."""
        if self.local:  # check without creating anything: the nearest existing ancestor must be writable
            here = self.root
            while not os.path.exists(here):
                here = os.path.dirname(here) or "."
            if not os.path.isdir(here) or not os.access(here, os.W_OK | os.X_OK):
                raise UserInputError(f"--out {self.uri!r} is not writable ({here!r} is not a writable folder); "
                                     "pass a folder you can write to")
            return
        probe = f".neuron-atlas-probe-{uuid.uuid4().hex}"
        try:
            self.write_bytes(probe, b"")
            self.fs.rm_file(self.path(probe))
        except (OSError, PermissionError) as e:
            raise UserInputError(f"--out {self.uri!r} is not writable ({type(e).__name__}: {e}); "
                                 "pass a folder or bucket prefix you can write to") from e


def _protocols(fs) -> tuple:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)
