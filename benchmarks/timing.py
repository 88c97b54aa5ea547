"""Clock readings that mean what they say on any device.

CUDA queues kernels and returns at once, so `time.perf_counter()` read right after GPU work measures the time
to enqueue it, not to run it. Every timed region of the benchmarks starts and ends with `clock(device)`: the
device's queued work has finished before the clock is read. On a CPU (or `meta`) it is `time.perf_counter()`.
"""

from __future__ import annotations

import time

import torch

__all__ = ["clock", "sync"]


def sync(device: torch.device | str) -> None:
    """Wait until the work queued on `device` has finished (a no-op off CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device | str) -> float:
    """`time.perf_counter()` once `device` has finished its queued work: the start or end of a timed region."""
    sync(device)
    return time.perf_counter()
