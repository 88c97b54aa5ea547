"""When a listed checkpoint may be read: never while the trainer may still be writing it.

The rule, per prefix and per poll:
- markers in use (some `<name>.done` or `<stem>.done` exists anywhere under the prefix): a checkpoint is
  complete once its own marker exists. The trainer writes the marker after the checkpoint, so a checkpoint
  without one is never read, however long it has been still.
- no marker anywhere: a checkpoint is complete once its size and modification stamp were the same at two
  polls at least `settle_s` seconds apart. A file still being written changes between polls and waits.
On object stores a PUT appears whole, so either rule only adds a poll of delay there.

`Completeness` keeps what the earlier polls saw (in memory: after a restart a checkpoint without a marker
waits for a second poll again, which costs time, never correctness).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .checkpoints import Checkpoint, Listed, companions

__all__ = ["Completeness", "Split", "markers_in_use", "has_marker"]

MARKER = ".done"


def markers_in_use(listing: Mapping[str, Listed]) -> bool:
    """Whether the prefix follows the marker convention (any `.done` object under it)."""
    return any(rel.endswith(MARKER) for rel in listing)


def has_marker(rel: str, listing: Mapping[str, Listed]) -> bool:
    return any(name in listing for name in companions(rel, MARKER))


@dataclass
class Split:
    """One poll's verdict: `complete` may be read; `pending` may still be being written."""

    complete: list[Checkpoint] = field(default_factory=list)
    pending: list[Checkpoint] = field(default_factory=list)
    markers: bool = False


class Completeness:
    """The completeness rule of the module docstring, remembering each file's first sighting of its signature."""

    def __init__(self, settle_s: float):
        self.settle_s = settle_s
        self._seen: dict[str, tuple[tuple[int, str], float]] = {}  # rel -> (signature, first poll that saw it)

    def split(self, checkpoints: Iterable[Checkpoint], listing: Mapping[str, Listed], now: float) -> Split:
        """Sort `checkpoints` (from the poll at time `now` that produced `listing`) into complete and pending."""
        out = Split(markers=markers_in_use(listing))
        for ckpt in checkpoints:
            sig = ckpt.signature
            before = self._seen.get(ckpt.rel)
            if before is None or before[0] != sig:
                self._seen[ckpt.rel] = before = (sig, now)
            if out.markers:
                ok = has_marker(ckpt.rel, listing)
            else:  # an empty file is a checkpoint whose writer has not started yet
                ok = sig[0] > 0 and now - before[1] >= self.settle_s
            (out.complete if ok else out.pending).append(ckpt)
        return out
