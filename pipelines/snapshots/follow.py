"""The polling loop of `snapshots`: one round per poll, until there is nothing more to wait for.

- Without `follow` (cron, a scheduler, a one-off sweep): one round; when that round left checkpoints that
  may still be being written (no marker, not yet stable), one more round `interval` seconds later, then exit.
  What is still pending then is the next invocation's.
- With `follow`: a round every `interval` seconds, for ever, or, with `until_idle`, until `until_idle` seconds
  have passed since the last activity (a new snapshot processed, or a change in the listing: a checkpoint
  appearing or growing). The last poll happens at that deadline, not an interval after it.

The loop itself holds no state beyond the clock: each round (`round_fn`) decides what is new, so a watcher
killed at any moment and started again redoes at most the work its killed round had in flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["Round", "watch"]


@dataclass(frozen=True)
class Round:
    """What one poll found and did."""

    processed: int = 0  # snapshots newly processed (or newly found to be done already)
    pending: int = 0  # checkpoints that may still be being written
    changed: bool = False  # the listing differed from the previous poll's


def watch(round_fn: Callable[[], Round], *, follow: bool, interval: float, until_idle: float | None = None,
          log: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> int:
    """Run rounds as the module docstring says; returns how many rounds ran."""
    rounds, last_activity = 0, clock()
    waited_for_pending = False
    while True:
        r = round_fn()
        rounds += 1
        if r.processed or r.changed:
            last_activity = clock()
        if not follow:
            if r.pending and not waited_for_pending:
                waited_for_pending = True
                log(f"{r.pending} checkpoint(s) without a .done marker may still be being written; looking again "
                    f"in {interval:g} s (write <name>.done after each checkpoint to skip this wait)")
                sleep(interval)
                continue
            if r.pending:
                log(f"{r.pending} checkpoint(s) still changing; the next run takes them")
            return rounds
        wait = interval
        if until_idle is not None:
            left = until_idle - (clock() - last_activity)
            if left <= 0:
                log(f"no new snapshot for {until_idle:g} s; stopping (--until-idle)")
                return rounds
            wait = min(interval, left)
        sleep(wait)
