"""The trainer's side of a snapshot sweep: save a checkpoint so that `neuron-atlas snapshots --follow` sees it
whole, with its step in its name and its metrics beside it. Framework-neutral: it takes a state dict.

    from pipelines.snapshots.trainer import save_checkpoint
    save_checkpoint(model.state_dict(), "s3://bucket/run42/ckpts", step, metrics={"val_accuracy": acc})

writes, in this order, under the prefix (any fsspec URI; `storage_options` as for s3fs):
1. `<name>_<step:09d>.json`: the metrics, when given (the sweep's tracking table reads `val_accuracy` and
   keeps the rest as JSON text);
2. `<name>_<step:09d>.pt`: the state dict, written atomically (a local file under a temporary name, renamed
   when whole; an object store's single PUT), so no reader ever sees part of it;
3. `<name>_<step:09d>.pt.done`: the completion marker, last. Once any marker exists under a prefix, the watcher
   takes a checkpoint only when its own marker exists (pipelines/snapshots/completeness.py), so a trainer
   killed at any point of a save leaves nothing the watcher takes as complete.
The step is the last integer of the name, as the watcher parses it (pipelines/snapshots/checkpoints.py).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any, Mapping

import torch

from models.errors import UserInputError

from ..storage import Store
from .checkpoints import LABEL_WIDTH
from .completeness import MARKER

__all__ = ["save_checkpoint", "checkpoint_name"]


def checkpoint_name(step: int, name: str = "ckpt") -> str:
    """The checkpoint's file name for `step`: `<name>_<step zero-padded>.pt` (its step is its last integer)."""
    if step < 0 or int(step) != step:
        raise UserInputError(f"step {step!r} must be a whole number >= 0")
    if not name or "/" in name:
        raise UserInputError(f"checkpoint name {name!r} must be a non-empty file name (no '/')")
    return f"{name}_{int(step):0{LABEL_WIDTH}d}.pt"


def save_checkpoint(state_dict: Mapping[str, Any], prefix: str, step: int, *,
                    metrics: Mapping[str, Any] | None = None, name: str = "ckpt",
                    storage_options: Mapping[str, Any] | None = None) -> str:
    """Save `state_dict` as the checkpoint of training step `step` under `prefix` (module docstring: sidecar,
    checkpoint, marker); returns the checkpoint's URI. `metrics` must be JSON-serializable numbers or text."""
    file = checkpoint_name(step, name)
    store = Store(prefix, storage_options)
    if metrics is not None:
        store.write_bytes(file[:-3] + ".json", _metrics_json(metrics), "application/json")
    buffer = io.BytesIO()
    torch.save(dict(state_dict), buffer)
    store.write_bytes(file, buffer.getvalue())
    store.write_bytes(file + MARKER, b"")
    return f"{store.uri}/{file}"


def _metrics_json(metrics: Mapping[str, Any]) -> bytes:
    clean = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None  # JSON has no NaN; the sweep reads a missing value as null
        clean[str(key)] = value
    try:
        return json.dumps(clean, sort_keys=True).encode()
    except TypeError as e:
        raise UserInputError(f"metrics must be numbers or text: {e}") from e
