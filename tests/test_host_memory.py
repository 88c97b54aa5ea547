"""Freed host memory stays in the process (models/host_memory.py): repeated same-size allocations, as every
synthesis step makes, stop faulting in fresh pages."""

from __future__ import annotations

import math
import resource

import pytest
import torch

from models.host_memory import keep_freed_memory

_SHAPE = (5, 96, 112, 112)  # a layer's output at batch 5: 24 MB
_PAGES = math.prod(_SHAPE) * 4 // 4096  # pages of one such float32 tensor


@pytest.mark.skipif(not hasattr(resource, "RUSAGE_THREAD"), reason="glibc's mallopt, Linux's per-thread counts")
def test_a_steps_worth_of_tensors_is_reused_without_page_faults():
    assert keep_freed_memory() and keep_freed_memory()  # in force, and idempotent

    def step():  # the output and its gradient
        y = torch.empty(_SHAPE).fill_(1.0)
        g = torch.empty_like(y).fill_(2.0)
        return float((y[0, 0, 0, 0] + g[0, 0, 0, 0]).item())

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # every page is touched by this thread, whose faults alone are counted (threads
    try:                      # earlier tests left running fault on their own)
        for _ in range(3):  # the heap grows to the steps' high-water mark, then stays
            step()
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for _ in range(20):
            assert step() == 3.0
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults
    finally:
        torch.set_num_threads(threads)
    # without the setting: 17,000-100,000 over the 20 steps here (glibc adapts its thresholds); with it none,
    # or one tensor's pages once when the heap's layout shifts
    assert faults < 1.5 * _PAGES, f"{faults} page faults over 20 steps ({_PAGES} pages a tensor)"
