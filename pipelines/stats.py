"""`neuron-atlas stats`: per-unit code statistics of an encoder layer over a set of real images, and the
per-unit bounds file DGN-AM clips its codes to (upper = mean + k*sigma, lower 0 for post-ReLU codes).

Images come from any fsspec URI (a folder or bucket prefix of .jpg/.jpeg/.png files, or Parquet rows of image
bytes: pipelines/imagesets.py) or `offline` (the photos bundled with skimage and scikit-learn;
`offline-photos` leaves out the 200 LFW faces). The list is
cut into shards that Ray tasks encode in parallel; each returns exact (count, mean, M2, max) sums that the
driver merges exactly.

Devices (`--device`): `auto` (the default) encodes on a GPU wherever the cluster has one, else on CPUs; `cpu`
always on CPUs; `cuda` (or `cuda:N`: Ray picks the GPU, so the index is not kept) on GPUs, an error at once
when the cluster has none. A task that encodes on a GPU asks Ray for one (`num_gpus=1`: Ray hides the GPUs
from tasks that ask for none) and decides `auto` where it runs; net and images go to its device.

Writes under --out: `stats.parquet` (unit, mean, std, max, count, upper), `bounds.npy` (float32 upper bounds,
what `atlas --bounds` reads) and `stats.json` (what was measured, with the weights digest).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from models.capture import unknown_layer
from models.errors import UserInputError
from models.loading import load_net
from models.registry import resolve_model
from tasks.actor import NetSpec, pick_device, pin_build
from tasks.stats import RunningStats, encode

from .imagesets import list_image_set, load_image
from .photos import preprocessing_input
from .progress import Progress
from .storage import Store

__all__ = ["StatsSpec", "run_stats", "list_images", "load_image", "device_kind", "resolve_device", "shard_stats",
           "shard_placement"]


@dataclass(frozen=True)
class StatsSpec:
    model: str
    layer: str
    images: str
    out: str
    weights: str | None = None
    k: float = 3.0
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    shard_size: int = 256
    address: str = "local"
    generator: str | None = None  # recorded only: the generator whose encoder this is
    input_size: int | None = None  # preprocessing of a package.module:Callable model (registry entries: theirs)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    bgr: bool | None = None
    channels: int | None = None
    layouts: tuple[tuple[str, str], ...] | None = None  # --layout LAYER=KIND overrides
    device: str = "auto"  # auto, cpu, cuda or cuda:N (module docstring)

    def net(self) -> NetSpec:
        return NetSpec(self.model, self.weights, self.input_size, self.mean, self.std, self.bgr, self.channels,
                       self.layouts, storage_options=self.storage_options)


def resolve_encoder(generator: str | None, model: str | None, layer: str | None) -> tuple[str, str]:
    """(model, layer) from --model/--layer, or from the generator's registry entry."""
    if model and layer:
        return model, layer
    if generator:
        entry = resolve_model(generator)
        encoder = getattr(entry, "encoder", None)
        if encoder is None:
            raise UserInputError(f"generator {generator!r} names no encoder; pass --model and --layer")
        return model or encoder[0], layer or encoder[1]
    raise UserInputError("stats needs --generator, or --model and --layer (the encoder layer the generator inverts)")


def list_images(uri: str, storage_options: Mapping[str, Any]) -> list:
    """Image sources of `uri` (pipelines/imagesets.py: offline sets, folders and prefixes, Parquet rows)."""
    return [s.uri for s in list_image_set(uri, storage_options).sources]


def device_kind(requested: str) -> str:
    """What `--device requested` names: auto, cpu, cuda (any index) or meta (shapes without data, for tests),
    without asking whether this process can use it; anything else raises a one-line UserInputError."""
    if requested == "auto":
        return "auto"
    try:
        kind = torch.device(requested).type
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda", "meta"):
        raise UserInputError(f"--device {requested!r}: use auto, cpu, cuda or cuda:N")
    return kind


def resolve_device(requested: str = "auto") -> torch.device:
    """The device `--device requested` names, decided in the process that computes: `auto` is CUDA where torch
    sees it, else the CPU; others as given (device_kind). A CUDA device this process cannot see raises a
    one-line UserInputError."""
    if device_kind(requested) == "auto":
        return pick_device(None)
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"--device {requested}: torch sees no CUDA device here "
                                 "(torch.cuda.is_available() is False); use --device cpu or auto")
        if (device.index or 0) >= torch.cuda.device_count():
            raise UserInputError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) here")
    return pick_device(str(device))


def shard_placement(requested: str, cluster_gpus: float) -> tuple[str, dict]:
    """(the device a task resolves, its Ray resource options) for `--device requested` on a cluster with
    `cluster_gpus` GPUs: a task that may use a GPU asks Ray for one (the only way it sees one) and computes on
    the one Ray gives it (`cuda:N` becomes `cuda`); `cuda` on a cluster without GPUs raises UserInputError."""
    kind = device_kind(requested)
    if kind == "cuda" and cluster_gpus < 1:
        raise UserInputError(f"--device {requested}: the Ray cluster has no GPUs (ray.cluster_resources() lists "
                             "none); use --device cpu or auto, or join a cluster with GPU nodes (--address)")
    if kind in ("cuda", "auto") and cluster_gpus >= 1:
        return kind, {"num_gpus": 1}
    return ("cpu" if kind == "auto" else kind), {}


def shard_stats(spec: NetSpec, layer: str, sources: list, batch_size: int, device: str = "cpu") -> RunningStats:
    """Encode one shard of images on `device` (resolve_device: `auto` decided here) and summarize its codes
    (runs inside a Ray task; a net used as built must have the driver's digest, `spec.built_sha256`)."""
    dev = resolve_device(device)
    entry = spec.entry()
    net = load_net(entry, spec.weights, storage_options=spec.storage_options, device=dev,
                   expect_sha256=spec.built_sha256)
    pre = entry.preprocessing
    x = torch.tensor(np.stack([preprocessing_input(load_image(s, spec.storage_options), pre) for s in sources]))
    return RunningStats.of(encode(net.net, net.to_input, x.to(dev), layer, batch_size, net.layouts))


def run_stats(spec: StatsSpec, log=print) -> RunningStats:
    """Validate, fan the shards out over Ray, merge exactly, write the three outputs; returns the stats."""
    import ray

    from .cluster import init_ray

    if spec.k <= 0:
        raise UserInputError(f"--k {spec.k} must be positive")
    device_kind(spec.device)  # a misspelt --device fails before anything is loaded
    net = spec.net()
    target = load_net(net.entry(), net.weights, storage_options=spec.storage_options)
    if spec.layer not in target.layers:
        raise unknown_layer(spec.layer, spec.model)
    sources = list_images(spec.images, spec.storage_options)
    store = Store(spec.out, spec.storage_options)
    store.check_writable()
    shards = [sources[i:i + spec.shard_size] for i in range(0, len(sources), spec.shard_size)]
    init_ray(spec.address)
    device, resources = shard_placement(spec.device, ray.cluster_resources().get("GPU", 0))
    remote = ray.remote(shard_stats).options(**resources)
    net = pin_build(net, target)
    pending = [remote.remote(net, spec.layer, s, spec.batch_size, device) for s in shards]
    sizes = {ref: len(s) for ref, s in zip(pending, shards)}
    progress = Progress(len(sources), desc="encoding")
    total = None
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        try:
            part = ray.get(ready[0])
        except ray.exceptions.RayTaskError:
            # this error stops the run and is reported; the other shards' copies of it are not news
            os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"
            raise
        total = part if total is None else total.merge(part)
        progress.update(sizes[ready[0]])
    progress.close()
    _write(store, spec, total, target.weights_sha256)
    return total


def _write(store: Store, spec: StatsSpec, s: RunningStats, weights_sha: str | None) -> None:
    upper = s.upper_bounds(spec.k)
    table = pa.table({"unit": np.arange(len(s.mean), dtype=np.int32), "mean": s.mean, "std": s.std,
                      "max": s.max, "count": np.full(len(s.mean), s.count, dtype=np.int64), "upper": upper})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    store.write_bytes("stats.parquet", sink.getvalue().to_pybytes())
    buf = io.BytesIO()
    np.save(buf, upper.astype(np.float32))
    store.write_bytes("bounds.npy", buf.getvalue())
    meta = {"model": spec.model, "layer": spec.layer, "weights_sha256": weights_sha, "images": spec.images,
            "count": s.count, "units": len(s.mean), "k": spec.k, "upper": "mean + k * std (population std)",
            "generator": spec.generator, "upper_mean": float(upper.mean())}
    store.write_bytes("stats.json", json.dumps(meta, indent=2).encode())
