"""The shipped natural-image magnitude spectra that MACO keeps fixed (`models/spectra/`, tasks/maco.py).

`natural_spectrum(channels)` returns the mean magnitude spectrum of the offline photos, `[3, 224, 113]` in the
decorrelated colour space for RGB nets or `[1, 224, 113]` of their luma for greyscale ones; MACO resizes it to
the size it renders. `python -m pipelines.spectra` estimated them (`models/spectra/spectra.json` records it).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

__all__ = ["natural_spectrum", "SPECTRA"]

SPECTRA = Path(__file__).resolve().parent / "spectra"


@lru_cache(maxsize=2)
def _load(name: str) -> np.ndarray:
    return np.load(SPECTRA / name)


def natural_spectrum(channels: int) -> torch.Tensor:
    """The magnitude spectrum [C, H, W//2+1] for a net of `channels` (1 or 3) input channels (a copy)."""
    if channels not in (1, 3):
        raise ValueError(f"natural spectra exist for 1 or 3 channels, not {channels}")
    return torch.from_numpy(_load("natural-grey.npy" if channels == 1 else "natural-rgb.npy").copy())
