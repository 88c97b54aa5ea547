"""Progress of a long run: a live bar on a terminal, periodic plain lines in logs (done/total, rate, ETA)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

__all__ = ["Progress", "format_seconds"]


def format_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """`update(n)` as items finish; a tqdm bar on a TTY, else one line every `interval` seconds."""

    def __init__(self, total: int, desc: str = "synthesizing", stream=None, interval: float = 30.0):
        self.stream = stream or sys.stderr
        self.total, self.done, self.desc, self.interval = total, 0, desc, interval
        self.t0 = self.last = time.monotonic()
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, unit="item", desc=desc, file=self.stream, smoothing=0.1) if tty else None

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_s = format_seconds(eta) if eta == eta else "?"
        return (f"{self.desc}: {self.done}/{self.total} items ({self.done / max(self.total, 1):.0%}), "
                f"{rate:.2f} items/s, elapsed {format_seconds(elapsed)}, ETA {eta_s}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
