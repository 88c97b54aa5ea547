"""The Ray actor of `topk` and `nearest`: holds the target net on its device and turns shards of image names
into mergeable results (pipelines/topk/records.py), reading the pixels itself.

`ImageWorker` is a plain class (tests use it without Ray). Per shard it reads and decodes the images (the
next batch is decoded in a background thread while the net runs on the current one), runs the net once
per batch only as deep as the deepest layer it needs, and for `topk` reduces every selected unit of every
layer to one value per image (tasks/topk.unit_maxima) whatever the number of units, inside the capture
hook, on a copy of the net with BatchNorms folded and in-place activations back (models/inference.py); for `nearest` it
measures the distance from every image to every synthesized one in each code space. Unreadable images are
skipped and reported, never fatal. Crops (`crops`) come back as PNG bytes: only the driver writes.
"""

from __future__ import annotations

import contextlib
import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from models.capture import Capture
from models.inference import inference_copy
from models.loading import load_net
from models.retry import RetryPolicy
from tasks.actor import NetSpec
from tasks.device import DeviceActor
from tasks.quantiles import UnitStats
from tasks.attribution import gradient_x_input
from tasks.topk import TopK, unit_maps, unit_maxima

from ..imagesets import read_images
from ..photos import as_uint8, preprocessing_input
from ..sink import png_bytes
from ..storage import Store
from .overlays import Backdrop, overlay
from .records import NearestShard, TopkShard
from .shards import Shard, ShardResult

__all__ = ["ImageWorker", "TopkJob", "NearestJob", "CropJob", "Figure", "FigureJob", "Queries", "PIXEL",
           "default_batch_size", "label_classes", "labels_are_indices"]

PIXEL = "pixel"  # the pixel space of `nearest`: the net's input-sized [0, 1] RGB image


def default_batch_size(on_gpu: bool) -> int:
    """Images per forward pass: 128 on a GPU; 8 on a CPU, where a small batch's activations stay in cache
    (MobileNetV2, 2 cores: 7.0 ms per image at 8, 9.2 ms at 32)."""
    return 128 if on_gpu else 8


@dataclass(frozen=True)
class TopkJob:
    shard: Shard
    layers: tuple[tuple[str, tuple[int, ...] | None], ...]  # (layer, selected channels; None = all)
    k: int
    batch_size: int
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # reading the images (--storage-retry-s)
    maps: bool = True  # keep each conv unit's activation map with its top-k examples


@dataclass(frozen=True)
class NearestJob:
    shard: Shard
    spaces: tuple[str, ...]  # PIXEL or layer paths
    k: int
    batch_size: int
    classes: tuple[int | None, ...] = ()  # per synthesized image: only real images of this class (same-class)
    label_classes: Mapping[str, int] = field(default_factory=dict)  # a real image's label -> its class index
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class CropJob:
    sources: tuple[str, ...]
    boxes: tuple[tuple[tuple[int, int, int, int], ...], ...]  # per source: (y0, x0, y1, x1) boxes, half-open
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class Figure:
    """One picture of where a unit fires in one image: `kind` "map" (its stored activation map `heat`) or
    "attribution" (tasks/attribution.py, computed here), with a ring at `mark` (view pixels) when given."""

    kind: str
    layer: str
    channel: int
    y: int | None
    x: int | None
    mark: tuple[float, float] | None
    heat: np.ndarray | None = None


@dataclass(frozen=True)
class FigureJob:
    sources: tuple[str, ...]
    figures: tuple[tuple[Figure, ...], ...]  # per source
    batch_size: int = 8
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class Queries:
    """The synthesized images `nearest` searches for: PNG paths under an output root."""

    root: str
    paths: tuple[str, ...]
    storage_options: Mapping[str, Any] = field(default_factory=dict)


def label_classes(labels: Sequence[str | None]) -> dict[str, int]:
    """Each distinct label's class index: the label itself when every label is an integer ('285', or an
    integer Parquet label); otherwise its position among the sorted distinct labels, torchvision
    ImageFolder's rule (ImageNet's synset folders n01440764 ... n15075141 give the indices 0 ... 999)."""
    distinct = sorted({lab for lab in labels if lab is not None})
    if labels_are_indices(distinct):
        return {lab: int(lab) for lab in distinct}
    return {lab: i for i, lab in enumerate(distinct)}


def labels_are_indices(labels: Sequence[str]) -> bool:
    """Whether every label is itself a class index (an integer)."""
    return all(lab.strip().isdigit() for lab in labels)


class ImageWorker(DeviceActor):
    def __init__(self, net: NetSpec, queries: Queries | None = None, *, threads: int | None = None,
                 device: str | None = None):
        if not self.open_device(device, threads):
            return
        self.spec = net
        self.net = load_net(net.entry(), net.weights, storage_options=net.storage_options, device=self.device,
                            expect_sha256=net.built_sha256)
        self.pre = net.entry().preprocessing
        self.size = self.pre.size
        self.queries = queries
        self._query_codes: dict[str, torch.Tensor] = {}
        self._fast: dict[frozenset[str], torch.nn.Module] = {}  # captured layers -> inference copy
        # decoding overlaps the forward pass; on a GPU it is the bottleneck, so it gets more threads
        self._pool = ThreadPoolExecutor(max_workers=4 if self.device.type == "cuda" else 1)

    def _decode(self, sources, job) -> tuple[list[int], torch.Tensor, list[tuple[str, str]]]:
        images, failed = read_images(sources, job.storage_options, job.retry)
        ok = [i for i, img in enumerate(images) if img is not None]
        x = torch.from_numpy(np.stack([preprocessing_input(images[i], self.pre) for i in ok])) if ok else None
        return ok, x, failed

    def _batches(self, job: TopkJob | NearestJob, failed: list) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(positions in the shard, [B, C, H, W] [0, 1] images on the device) per batch of readable images."""
        sources, size = job.shard.sources, job.batch_size
        starts = range(0, len(sources), size)
        pending = None
        for n, b in enumerate(starts):
            if pending is None:
                pending = self._pool.submit(self._decode, sources[b:b + size], job)
            ok, x, bad = pending.result()
            pending = (self._pool.submit(self._decode, sources[starts[n + 1]:starts[n + 1] + size], job)
                       if n + 1 < len(starts) else None)
            failed += bad
            if ok:
                yield [b + i for i in ok], x.to(self.device).contiguous(memory_format=torch.channels_last)

    def _inference_net(self, layers: list[str]) -> torch.nn.Module:
        """The net for forward-only passes capturing `layers` (made once per layer set)."""
        key = frozenset(layers)
        if key not in self._fast:
            self._fast[key] = inference_copy(self.net.net, key, self.net.inplace, fuse=self.device.type == "cpu")
        return self._fast[key]

    @torch.no_grad()
    def topk(self, job: TopkJob) -> ShardResult:
        """The shard's top-k and statistics for every selected unit of every layer of the job; with `job.maps`,
        each conv unit's top-k carries its examples' activation maps (tasks/topk.unit_maps), kept batch by
        batch so that only k maps per unit are ever held."""
        t0 = time.perf_counter()
        failed: list[tuple[str, str]] = []
        positions: list[int] = []
        parts: dict[str, list] = {layer: [] for layer, _ in job.layers}
        running: dict[str, TopK] = {}
        select = {layer: None if ch is None else torch.tensor(ch, device=self.device) for layer, ch in job.layers}

        def maxima(layer: str, a: torch.Tensor) -> tuple:
            a = a if select[layer] is None else a.index_select(1, select[layer])
            found = tuple(t.to("cpu", copy=True) if t is not None else None for t in unit_maxima(a.float()))
            return found + ((unit_maps(a).to("cpu", copy=True),) if job.maps and a.dim() == 4 else (None,))

        net = self._inference_net(list(parts))
        with Capture(net, list(parts), model_name=self.spec.model, reduce=maxima, layouts=self.net.layouts) as cap:
            for pos, x in self._batches(job, failed):
                acts = cap(self.net.to_input(x))
                index = job.shard.start + np.asarray(pos, np.int64)
                positions += pos
                for layer, parts_of in parts.items():
                    values, ys, xs, maps = acts[layer]
                    parts_of.append((values, ys, xs))
                    if maps is not None:  # only the k best maps per unit are kept, batch by batch
                        top = TopK.candidates(values.numpy(), index, ys.numpy(), xs.numpy(), maps.numpy())
                        running[layer] = (running[layer] if layer in running else
                                          TopK.empty(job.k, top.columns, top.maps.shape[2:])).merge(top, job.k)
        index = job.shard.start + np.asarray(positions, np.int64)
        layers = {}
        for layer, chunks in parts.items():
            units = self.net.layers[layer].units if select[layer] is None else len(select[layer])
            values = torch.cat([c[0] for c in chunks]).numpy() if chunks else np.zeros((0, units), np.float32)
            ys = torch.cat([c[1] for c in chunks]).numpy() if chunks and chunks[0][1] is not None else None
            xs = torch.cat([c[2] for c in chunks]).numpy() if chunks and chunks[0][2] is not None else None
            top = running.get(layer) or TopK.of(values, index, job.k, ys, xs)
            layers[layer] = (top, UnitStats.of(values))
        return ShardResult(TopkShard(layers), len(positions), failed, time.perf_counter() - t0)

    def _capture(self, layers: list[str]):
        """A Capture of `layers` whose entries are [B, D] float32 codes (copies), or no capture at all (pixel
        space only)."""
        if not layers:
            return contextlib.nullcontext()
        return Capture(self._inference_net(layers), layers, model_name=self.spec.model, layouts=self.net.layouts,
                       reduce=lambda _layer, a: a.flatten(1).to(torch.float32, copy=True))

    def _codes(self, cap: Capture | None, x01: torch.Tensor, spaces) -> dict[str, torch.Tensor]:
        acts = cap(self.net.to_input(x01)) if cap is not None else {}
        return {s: x01.flatten(1).float() if s == PIXEL else acts[s] for s in spaces}

    def _load_queries(self, spaces, batch_size: int) -> dict[str, torch.Tensor]:
        missing = [s for s in spaces if s not in self._query_codes]
        if missing:
            q = self.queries
            store = Store(q.root, q.storage_options)
            images = [np.asarray(Image.open(io.BytesIO(store.read_bytes(p))).convert("RGB")) for p in q.paths]
            x = torch.from_numpy(np.stack([_exact_or_resized(img, self.pre) for img in images]))
            layers = [s for s in missing if s != PIXEL]
            with self._capture(layers) as cap:
                codes = [self._codes(cap, x[i:i + batch_size].to(self.device), missing)
                         for i in range(0, len(x), batch_size)]
            self._query_codes.update({s: torch.cat([c[s] for c in codes]) for s in missing})
        return {s: self._query_codes[s] for s in spaces}

    @torch.no_grad()
    def nearest(self, job: NearestJob) -> ShardResult:
        """Per space and synthesized image, the shard's k nearest images (Euclidean, in float64)."""
        t0 = time.perf_counter()
        queries = self._load_queries(job.spaces, job.batch_size)
        failed: list[tuple[str, str]] = []
        positions: list[int] = []
        dists: dict[str, list[torch.Tensor]] = {s: [] for s in job.spaces}
        layers = [s for s in job.spaces if s != PIXEL]
        with self._capture(layers) as cap:
            for pos, x in self._batches(job, failed):
                positions += pos
                for s, codes in self._codes(cap, x, job.spaces).items():
                    dists[s].append(torch.cdist(codes.double(), queries[s].double()).cpu())  # [B, Q]
        index = job.shard.start + np.asarray(positions, np.int64)
        n_queries = len(next(iter(queries.values())))
        allowed = _class_mask(job.classes, [job.shard.labels[p] for p in positions], n_queries, job.label_classes)
        spaces = {}
        for s, chunks in dists.items():
            d = torch.cat(chunks).numpy() if chunks else np.zeros((0, n_queries))
            spaces[s] = TopK.of(np.where(allowed, -d, -np.inf), index, job.k)
        return ShardResult(NearestShard(spaces), len(positions), failed, time.perf_counter() - t0)

    def crops(self, job: CropJob) -> tuple[list[list[bytes]], list[tuple[str, str]]]:
        """PNG bytes of each box of each source, cut from the net's input view of the image (empty lists for
        the sources that could not be read), and (source, reason) for those."""
        images, failed = read_images(job.sources, job.storage_options, job.retry)
        out = []
        for img, boxes in zip(images, job.boxes):
            if img is None:
                out.append([])
                continue
            view = as_uint8(preprocessing_input(img, self.pre))
            out.append([png_bytes(np.ascontiguousarray(view[y0:y1, x0:x1])) for y0, x0, y1, x1 in boxes])
        return out, failed

    def figures(self, job: FigureJob) -> tuple[list[list[bytes]], list[tuple[str, str]]]:
        """PNG bytes of each figure of each source over the net's input view of the image (empty lists for the
        sources that could not be read), and (source, reason) for those. Attributions run in batches of
        `job.batch_size` (image, unit) rows through the net as loaded (one forward and backward per batch)."""
        images, failed = read_images(job.sources, job.storage_options, job.retry)
        views = [None if img is None else preprocessing_input(img, self.pre) for img in images]
        heats: dict[tuple[int, int], np.ndarray] = {}
        rows = [(i, n, f) for i, (v, figs) in enumerate(zip(views, job.figures)) if v is not None
                for n, f in enumerate(figs) if f.kind == "attribution"]
        for b in range(0, len(rows), job.batch_size):
            chunk = rows[b:b + job.batch_size]
            x = torch.from_numpy(np.stack([views[i] for i, _, _ in chunk])).to(self.device)
            units = [(f.layer, f.channel, f.y, f.x) for _, _, f in chunk]
            with Capture(self.net.net, sorted({u[0] for u in units}), model_name=self.spec.model,
                         layouts=self.net.layouts) as cap:
                maps = gradient_x_input(cap, self.net.to_input(x), units)
            for (i, n, _), m in zip(chunk, maps.cpu().numpy()):
                heats[i, n] = m
        out = []
        for i, (v, figs) in enumerate(zip(views, job.figures)):
            if v is None:
                out.append([])
                continue
            rgb = as_uint8(v)
            back = Backdrop(np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb)
            out.append([overlay(back, heats[i, n] if f.kind == "attribution" else f.heat, f.mark)
                        for n, f in enumerate(figs)])
        return out, failed


def _exact_or_resized(img: np.ndarray, pre) -> np.ndarray:
    """A synthesized image (uint8 RGB [H, W, 3], greyscale ones as three equal channels) as the net saw it:
    [C, H, W] in [0, 1], resized only if it is not input-sized."""
    size = pre.size
    if img.shape[:2] != tuple(size):
        img = np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR))
    img = img[..., :1] if pre.channels == 1 else img
    return (img.astype(np.float32) / 255.0).transpose(2, 0, 1)


def _class_mask(classes: tuple[int | None, ...], labels: list[str | None], n_queries: int,
                label_classes: Mapping[str, int]) -> np.ndarray:
    """[N, Q] booleans: may real image n be a neighbour of query q (same-class restriction)."""
    allowed = np.ones((len(labels), n_queries), bool)
    if classes:
        real = np.array([label_classes.get(lab, -1) if lab is not None else -1 for lab in labels])
        for q, c in enumerate(classes):
            if c is not None:
                allowed[:, q] = real == c
    return allowed
