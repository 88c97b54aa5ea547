"""A snapshot sweep's pictures where a trainer already looks: TensorBoard event files (`snapshots --tensorboard`).

Under `LOGDIR/neuron-atlas/` (a run beside the trainer's own: pointing TensorBoard at the trainer's log
directory shows both, on one step axis), one event file per processed snapshot, named
`events.out.tfevents.<unix time>.neuron-atlas.<label>` (the label is the zero-padded training step), holding at
the snapshot's own training step:
- per tracked (layer, unit, seed): the saved PNG itself under `neuron-atlas/<layer>/<unit>/s<seed>` (`<unit>`
  is `u12`, or `u12@3,4` for a unit at a position), and its final activation as a scalar under
  `neuron-atlas/<layer>/<unit>/s<seed>/activation`;
- per tracked unit: its filmstrip so far (every snapshot processed by then, a row per seed) under
  `neuron-atlas/<layer>/<unit>/filmstrip`.
(The sweep computes no recognizability score of its own; the snapshot demo's score lives in its report.)

Exactly once: a snapshot whose label already names an event file is never written again, so a resumed or
re-followed sweep adds only what is missing; each file appears whole (a local file is written under a name
TensorBoard ignores and renamed; on object storage the file is built in memory and uploaded in one PUT).
Names sort by the time they were written, as TensorBoard expects of the files of one run.

TensorBoard is an optional dependency (`pip install 'neuron-atlas[tensorboard]'`): its protocol buffers
describe the events; without it `require_tensorboard` raises the one-line error at start-up.
"""

from __future__ import annotations

import io
import os
import struct
import time
from typing import Any, Callable, Iterable, Mapping

from PIL import Image

from models.errors import UserInputError
from models.units import position_text

from ..keys import safe_segment
from ..storage import Store

__all__ = ["RUN", "TensorBoardLog", "require_tensorboard", "unit_tag", "event_records"]

RUN = "neuron-atlas"
_PREFIX = "events.out.tfevents."
INSTALL = "pip install 'neuron-atlas[tensorboard]' (or pip install tensorboard)"


def require_tensorboard() -> None:
    """UserInputError, in one line, unless TensorBoard's event protocol buffers can be imported."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2  # noqa: F401
    except ImportError as e:
        raise UserInputError(f"--tensorboard needs the tensorboard package, which is not installed here ({e}); "
                             f"{INSTALL}") from None


def unit_tag(layer: str, unit: int, y: int | None, x: int | None) -> str:
    """`neuron-atlas/<layer>/u<unit>[@y,x]`: the stable tag prefix of one unit."""
    return f"{RUN}/{layer}/u{unit}" + position_text(y, x)


def _masked_crc32c(data: bytes) -> int:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    return masked_crc32c(data)


def _record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC-32C, the data, the data's masked CRC-32C (little-endian)."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", _masked_crc32c(header)) + data + struct.pack("<I", _masked_crc32c(data))


def _image_value(tag: str, png: bytes):
    from tensorboard.compat.proto.summary_pb2 import Summary

    with Image.open(io.BytesIO(png)) as img:
        colorspace = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}.get(img.mode, 3)
        return Summary.Value(tag=tag, image=Summary.Image(height=img.height, width=img.width, colorspace=colorspace,
                                                          encoded_image_string=png))


def event_records(step: int, images: Iterable[tuple[str, bytes]], scalars: Iterable[tuple[str, float]],
                  wall_time: float | None = None) -> bytes:
    """An event file's bytes: the version event, then one event at `step` with every image and scalar."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    wall = time.time() if wall_time is None else wall_time
    values = [_image_value(tag, png) for tag, png in images]
    values += [Summary.Value(tag=tag, simple_value=float(v)) for tag, v in scalars]
    first = Event(wall_time=wall, file_version="brain.Event:2")
    event = Event(wall_time=wall, step=int(step), summary=Summary(value=values))
    return _record(first.SerializeToString()) + _record(event.SerializeToString())


class TensorBoardLog:
    """The event files of one sweep under `<logdir>/neuron-atlas/`; see the module docstring."""

    def __init__(self, logdir: str, storage_options: Mapping[str, Any] | None = None):
        require_tensorboard()
        self.store = Store(f"{logdir.rstrip('/')}/{RUN}", storage_options)
        self._labels: set[str] | None = None

    def labels(self) -> set[str]:
        """The snapshot labels that already have their event file (listed once, then kept up to date)."""
        if self._labels is None:
            names = [posix.rsplit("/", 1)[-1] for posix in self.store.find("")]
            self._labels = {n.rsplit(f".{RUN}.", 1)[1] for n in names if n.startswith(_PREFIX) and f".{RUN}." in n}
        return self._labels

    def sync(self, rows: list[dict], read: Callable[[str], bytes]) -> list[str]:
        """Write the event file of every snapshot in the tracking rows `rows` (pipelines/snapshots/tracking.py)
        that has none yet; `read(rel)` gives the bytes of an image or filmstrip under --out. Returns the labels
        written, in step order."""
        by_label: dict[str, list[dict]] = {}
        for r in rows:
            by_label.setdefault(r["snapshot"], []).append(r)
        missing = sorted((label for label in by_label if label not in self.labels()),
                         key=lambda label: by_label[label][0]["step"])
        for label in missing:
            self._write(label, by_label[label], read)
        return missing

    def _write(self, label: str, rows: list[dict], read: Callable[[str], bytes]) -> None:
        images, scalars, strips = [], [], {}
        for r in sorted(rows, key=lambda r: (r["layer"], r["unit"], r["y"] or 0, r["x"] or 0, r["seed"])):
            tag = f"{unit_tag(r['layer'], r['unit'], r['y'], r['x'])}/s{r['seed']}"
            images.append((tag, read(r["image"])))
            scalars.append((f"{tag}/activation", r["activation_final"]))
            strips.setdefault(f"{unit_tag(r['layer'], r['unit'], r['y'], r['x'])}/filmstrip", r["filmstrip"])
        images += [(tag, read(rel)) for tag, rel in strips.items()]
        data = event_records(rows[0]["step"], images, scalars)
        name = f"{_PREFIX}{int(time.time()):010d}.{RUN}.{safe_segment(label, 'snapshot')}"
        if self.store.local:  # a name without "tfevents" until whole: TensorBoard never reads half a file
            final = self.store.path(name)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            partial = self.store.path(f".{label}.partial")
            with open(partial, "wb") as f:
                f.write(data)
            os.replace(partial, final)
        else:
            self.store.write_bytes(name, data)
        self.labels().add(label)
