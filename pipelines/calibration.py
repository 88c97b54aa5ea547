"""Per-layer cost figures of an atlas plan: seconds per batch-step and bytes per item, for one device and batch
size, measured where the run's actors run or read from a file.

`measure` starts ONE actor through `cluster.start_pool` with the run's placement (`--actors` set to 1): on a
local run that is an actor in this process, as the run's would be; with `--address` a cluster it is a GPU
actor on a worker, never the driver's device (a CPU head). Per layer it runs one batch of the run's batch size
for that device (`atlas_batch_size(--batch-size, pool.on_gpu)`; fewer items when the layer has fewer) for two
warm-up steps, then `steps` timed steps; the time is the actor's own `BatchResult.seconds` (measured inside
the actor, synchronized on CUDA), so neither Ray's transfers nor the driver's clock count. Bytes come from
writing that batch through the real sink into a counting store.

`read_calibration` reads the same figures from a file written by `neuron-atlas plan --json` (run on a GPU
worker, or as `plan --address auto`): its `device`, `batch_size` and per layer `seconds_per_batch_step`,
`bytes_per_item` and `batch_items` (items of the timed batch; files written before it existed: the smaller
of the batch size and the layer's to-do). A file that cannot be read or is not such a file is one
UserInputError line.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from models.errors import UserInputError

__all__ = ["Figures", "Calibration", "measure", "read_calibration"]


@dataclass(frozen=True)
class Figures:
    """One layer's cost: seconds per optimization step of a batch of `items` items, and PNG bytes per item
    (None: unknown, a file from before bytes per item were written)."""

    seconds_per_batch_step: float
    bytes_per_item: float | None
    items: int

    def seconds_for(self, items: int) -> float:
        """Seconds per step of a batch of `items`: scaled linearly per item from the measured batch (a GPU's
        time grows less than linearly with the batch, so a larger batch is overestimated there)."""
        return self.seconds_per_batch_step * items / self.items


@dataclass(frozen=True)
class Calibration:
    """Figures per layer on `device` (an actor's ping string: "cuda:0", "cpu") at batch size `batch_size`;
    `source`: the file they were read from, "" when measured; `seconds`: how long measuring took."""

    device: str
    batch_size: int
    layers: dict[str, Figures]
    source: str = ""
    seconds: float = 0.0

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


class _CountingStore:
    """A store that only counts the bytes written to it (the sink's writes, measured without any I/O)."""

    def __init__(self):
        self.bytes = 0

    def write_bytes(self, rel: str, data: bytes, content_type: str | None = None) -> None:
        self.bytes += len(data)


def measure(p, todo_of: dict[str, list], steps: int, log: Callable[[str], None] = print) -> Calibration:
    """Calibrate plan `p` (pipelines/spec.Plan) on one actor placed as the run's would be (module docstring), for
    each layer of `todo_of` (layer -> its to-do (key, item) pairs) that has work; the actor is stopped after.
    Raises UserInputError where the run itself could not start its actors."""
    from tasks.actor import Batch, SynthesisActor

    from . import cluster
    from .dispatch import call
    from .runner import atlas_batch_size, first_of_partition
    from .sink import write_batch

    t0 = time.perf_counter()
    pool = cluster.start_pool(SynthesisActor, (p.spec.net,), {"code_upper": p.code_upper},
                              replace(p.spec.placement, actors=1), log)
    try:
        actor = pool.actors[0]
        device = call(actor, "ping")
        batch_size = atlas_batch_size(p.spec.batch_size, pool.on_gpu)
        figures = {}
        for layer, todo in todo_of.items():
            if not todo:
                continue
            batch = first_of_partition(todo, batch_size)
            work = Batch(tuple(w for _, w in batch), p.spec.config, 2, p.spec.objective)
            call(actor, "run", work)  # warm-up: first-call allocations, kernel choices, the folded net
            result = call(actor, "run", replace(work, steps=steps))
            counter = _CountingStore()
            write_batch(counter, [k for k, _ in batch], result.results, p.spec.steps, result.device)
            figures[layer] = Figures(result.seconds / steps, counter.bytes / len(batch), len(batch))
            log(f"calibrated {layer} on {device}: {figures[layer].seconds_per_batch_step * 1000:.1f} ms per step "
                f"of a batch of {len(batch)}")
    finally:
        pool.stop()
    return Calibration(device, batch_size, figures, seconds=time.perf_counter() - t0)


def _number(x: Any) -> float:
    """`x` as a finite number >= 0; ValueError for anything else (bools, strings, NaN)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
        raise ValueError(x)
    return float(x)


def read_calibration(path: str) -> Calibration:
    """The figures in the file at `path`, as `neuron-atlas plan --json` writes them (module docstring); layers
    whose figures are null there (nothing to do when it was written) are left out. UserInputError, one line,
    for a file that cannot be read or is not such a file."""
    where = f"--calibration {path}"
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise UserInputError(f"{where}: cannot read it ({e.strerror or e})") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserInputError(f"{where}: not JSON ({first}); write one with 'neuron-atlas plan ... --json > "
                             f"{path}' on the run's device") from None
    try:
        device, batch_size = doc["device"], int(_number(doc["batch_size"]))
        if not isinstance(device, str) or batch_size < 1:
            raise ValueError(device)
        figures = {}
        for row in doc["layers"]:
            if row.get("seconds_per_batch_step") is None:
                continue
            per_item = row.get("bytes_per_item")
            if per_item is None and row.get("bytes") is not None and row.get("todo"):
                per_item = row["bytes"] / row["todo"]  # a file from before bytes_per_item was written
            items = row.get("batch_items") or min(batch_size, int(_number(row.get("todo") or batch_size)))
            figures[str(row["layer"])] = Figures(_number(row["seconds_per_batch_step"]),
                                                 None if per_item is None else _number(per_item),
                                                 max(1, int(_number(items))))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UserInputError(f"{where}: not a calibration file (want the JSON of 'neuron-atlas plan --json': "
                             "device, batch_size, and per layer seconds_per_batch_step and bytes_per_item)") from None
    return Calibration(device, batch_size, figures, source=path)
