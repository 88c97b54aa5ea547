"""`neuron-atlas nearest`: for every synthesized image under --atlas (atlas items and inverse-set samples),
its k nearest real images in pixel space and in each listed layer's code space: the check that synthetic
images are not copies of training images (DGN-AM supplement, Fig. S22).

Distances are Euclidean between flattened codes (pixel space: the net's input-sized [0, 1] RGB image, real
images resized and centre-cropped as for the net), computed in float64 on the workers, which stream the real
images in shards and keep, per synthesized image and space, the shard's k nearest (tasks/topk.TopK of the
negated distances, ties broken by listing position); the driver merges them exactly. The real images are
never indexed or stored: the cost is linear in their number, and the answer is exact, so no approximate
nearest-neighbour library is needed at any size (the synthesized images, the queries, are few).

Default spaces: `pixel` plus every top-level block of the net: the modules one level inside each top-level
container that hold parameters (CaffeNet/AlexNet: conv1-5 and fc6-8, the paper's 8 spaces; MobileNetV2:
features.0-18 and classifier.1). `--same-class` restricts the neighbours of a logit unit's images (atlas
items, or inverse sets constraining one logit) to real images whose label is that class index (a Parquet
integer `label`, or folders named 0..999); without labels it says so and searches all images.

Output (under --out, default --atlas): `nearest/neighbours/part-<run>.parquet`, one row per (synthesized
image, space, rank): image, kind, model, snapshot, layer, unit, y, x, seed, method, hyperparams, run_id
(inverse sets), sample, space, rank, distance, source, label, images, k, same_class; and one sheet per
synthesized image, `nearest/sheets/<run8>/<its path under images/>`: synthetic | nearest in each space.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import pyarrow as pa
from PIL import Image
from torch import nn

from models.capture import unknown_layer
from models.errors import UserInputError
from models.loading import LoadedNet, load_net
from models.registry import model_slug
from models.retry import RetryPolicy
from tasks.actor import NetSpec, pin_build

from ..cluster import Placement
from ..imagesets import ImageSet, list_image_set
from ..inverse import read_inverse
from ..keys import safe_segment
from ..manifest import utc_now, write_manifest
from ..sink import parquet_bytes, read_units
from ..spec import snapshot_name
from ..storage import Store
from .figures import neighbour_sheet
from .records import NearestShard
from .shards import CommandSummary, Workers, cut_crops, make_shards, run_pass
from .topk_run import command_record, log_ignored
from .worker import (PIXEL, ImageWorker, NearestJob, Queries, default_batch_size, label_classes,
                     labels_are_indices)

__all__ = ["NearestSpec", "NearestPlan", "Query", "plan_nearest", "run_nearest", "top_level_blocks"]


@dataclass(frozen=True)
class NearestSpec:
    atlas: str
    images: str
    model: str | None = None  # default: the model of the runs recorded in the atlas's manifest.json
    weights: str | None = None
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    bgr: bool | None = None
    channels: int | None = None
    layouts: tuple[tuple[str, str], ...] | None = None  # --layout LAYER=KIND overrides
    spaces: tuple[str, ...] = ()  # default: pixel + the net's top-level blocks
    same_class: bool = False
    k: int = 1
    out: str | None = None  # default: --atlas
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    shard_size: int = 256
    batch_size: int | None = None
    placement: Placement = Placement()  # where the actors run: --address, --actors, --device ... (cluster.py)
    storage_retry_s: float = 120.0

    def retry(self) -> RetryPolicy:
        return RetryPolicy(budget_s=self.storage_retry_s)

    def store(self, uri: str | None = None) -> Store:
        return Store(uri or self.out or self.atlas, self.storage_options, self.retry())


@dataclass(frozen=True)
class Query:
    """One synthesized image and what made it."""

    image: str  # path relative to --atlas
    kind: str  # atlas | inverse
    row: tuple  # (model, snapshot, layer, unit, y, x, seed, method, hyperparams, run_id, sample)
    klass: int | None = None  # the logit unit it maximizes or constrains (for --same-class)


_ROW = ("model", "snapshot", "layer", "unit", "y", "x", "seed", "method", "hyperparams", "run_id", "sample")


@dataclass
class NearestPlan:
    spec: NearestSpec
    net: NetSpec
    target: LoadedNet
    queries: list[Query]
    spaces: tuple[str, ...]
    images: ImageSet
    same_class: bool
    run_id: str
    notes: list[str]
    label_classes: dict[str, int] = field(default_factory=dict)  # for --same-class (worker.label_classes)

    @property
    def model(self) -> str:
        return safe_segment(model_slug(self.net.model), "model")


def _first_few(classes: Mapping[str, int], n: int = 3) -> str:
    shown = [f"{lab} -> {i}" for lab, i in list(classes.items())[:n]]
    return ", ".join(shown) + (", ..." if len(classes) > n else "")


def top_level_blocks(net: nn.Module, layers: Mapping[str, Any]) -> list[str]:
    """The modules one level inside each top-level container that hold parameters (or the top-level module
    itself when it is not a container), in execution order; only addressable layers."""
    out = []
    for name, child in net.named_children():
        inner = list(child.named_children()) if isinstance(child, (nn.Sequential, nn.ModuleList)) else []
        for sub, module in (((f"{name}.{n}", m) for n, m in inner) if inner else [(name, child)]):
            if sub in layers and any(True for _ in module.parameters()):
                out.append(sub)
    return sorted(out, key=lambda n: layers[n].order)


def _manifest_net(store: Store) -> tuple[str, str | None]:
    """(model, weights) of the runs recorded in the atlas's manifest; UserInputError unless exactly one."""
    try:
        runs = json.loads(store.read_bytes("manifest.json")).get("runs", {})
    except (FileNotFoundError, json.JSONDecodeError):
        runs = {}
    nets = {(r["model"], r.get("weights")) for r in runs.values() if "model" in r and r.get("command") is None}
    if len(nets) != 1:
        found = ", ".join(sorted(f"{m} ({w})" for m, w in nets)) or "none"
        raise UserInputError(f"cannot tell which model made the images under --atlas {store.uri!r} (manifest.json "
                             f"names {found}); pass --model (and --weights)")
    return next(iter(nets))


def _logit_layers(target: LoadedNet) -> set[str]:
    """Layers whose output is the net's final output vector (classifier.1 and classifier, for MobileNetV2)."""
    last = max(target.layers.values(), key=lambda i: i.order)
    return {n for n, i in target.layers.items() if len(i.shape) == 1 and i.shape == last.shape} if len(
        last.shape) == 1 else set()


def _queries(store: Store, model: str, logits: set[str]) -> list[Query]:
    out = []
    for r in read_units(store).to_pylist():
        if r["model"] == model:
            row = tuple(r.get(c) for c in _ROW)
            out.append(Query(r["image"], "atlas", row, r["unit"] if r["layer"] in logits else None))
    for r in read_inverse(store, "samples").to_pylist():
        if r["model"] == model:
            cons = r["constraints"]
            layer, _, unit = cons[0].partition("@")[0].rpartition(":") if len(cons) == 1 else ("", "", "")
            row = tuple(r.get(c) for c in _ROW)
            out.append(Query(r["image"], "inverse", row, int(unit) if layer in logits else None))
    return sorted(out, key=lambda q: q.image)


def plan_nearest(spec: NearestSpec) -> NearestPlan:
    """Validate everything before anything is written; list the synthesized and the real images."""
    for name in ("k", "shard_size", "batch_size"):
        value = getattr(spec, name)
        if value is not None and value < 1:
            raise UserInputError(f"--{name.replace('_', '-')} {value} must be at least 1")
    atlas = spec.store(spec.atlas)
    model, weights = (spec.model, spec.weights) if spec.model else _manifest_net(atlas)
    net = NetSpec(model=model, weights=spec.weights or weights, input_size=spec.input_size, mean=spec.mean,
                  std=spec.std, bgr=spec.bgr, channels=spec.channels, layouts=spec.layouts,
                  storage_options=spec.storage_options)
    target = load_net(net.entry(), net.weights, storage_options=spec.storage_options)
    queries = _queries(atlas, safe_segment(model_slug(model), "model"), _logit_layers(target))
    if not queries:
        raise UserInputError(f"no synthesized images of model {model!r} under --atlas {spec.atlas!r} (units/ or "
                             f"inverse/samples/); run 'neuron-atlas atlas --out {spec.atlas}' first")
    spaces = tuple(dict.fromkeys(spec.spaces or (PIXEL, *top_level_blocks(target.net, target.layers))))
    for s in spaces:
        if s != PIXEL and s not in target.layers:
            raise unknown_layer(s, model)
    images = list_image_set(spec.images, spec.storage_options, spec.retry())
    notes = []
    same_class = spec.same_class
    if same_class and not any(q.klass is not None for q in queries):
        notes.append("--same-class: no synthesized image maximizes a logit unit; neighbours come from all images")
        same_class = False
    elif same_class and not images.labelled:
        notes.append(f"--same-class: the images under {spec.images!r} carry no labels (a 'label' column or "
                     "class folders); neighbours come from all images")
        same_class = False
    classes = label_classes([s.label for s in images.sources]) if same_class else {}
    if not labels_are_indices(list(classes)):
        notes.append(f"--same-class: the labels are names, so class i is the i-th of the {len(classes)} sorted "
                     f"names (torchvision ImageFolder's rule): {_first_few(classes)}")
    key = json.dumps([model, target.weights_sha256, target.entry.preprocessing.describe(), spaces, spec.k,
                      same_class, spec.images, images.digest, [q.image for q in queries]])
    run_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    spec.store().check_writable()
    return NearestPlan(spec, pin_build(net, target), target, queries, spaces, images, same_class, run_id, notes,
                       classes)


def run_nearest(plan: NearestPlan, *, log=print) -> CommandSummary:
    spec = plan.spec
    store = spec.store()
    store.remove_stale_temporaries()
    part = f"nearest/neighbours/part-{plan.run_id}.parquet"
    what = f"nearest {spec.k} real images of {len(plan.queries)} synthesized images in {len(plan.spaces)} spaces"
    if part in store.find("nearest/neighbours", ".parquet"):
        return CommandSummary(what, "nearest", None)
    snapshot = snapshot_name(None, plan.target.weights_uri)
    record = command_record("nearest", plan.net, plan.target, plan.model, snapshot, plan.images,
                            spec.storage_options, atlas=spec.atlas, spaces=list(plan.spaces), k=spec.k,
                            same_class=plan.same_class, queries=len(plan.queries))
    write_manifest(store, plan.run_id, record, status="running")
    log_ignored(plan.images, log)
    for note in plan.notes:
        log(note)
    queries = Queries(spec.atlas, tuple(q.image for q in plan.queries), dict(spec.storage_options))
    workers = Workers(ImageWorker, (plan.net, queries), spec.placement, log)
    classes = tuple(q.klass for q in plan.queries) if plan.same_class else ()
    state: list[NearestShard] = []

    def submit(actor, shard):
        batch = spec.batch_size or default_batch_size(workers.on_gpu)
        return actor.nearest.remote(NearestJob(shard, plan.spaces, spec.k, batch, classes, plan.label_classes,
                                               dict(spec.storage_options), spec.retry()))

    def merge(p: NearestShard) -> None:
        state[:] = [state[0].merge(p) if state else p]

    summary = run_pass(store, f"nearest/shards/{plan.run_id}", make_shards(plan.images, spec.shard_size),
                       NearestShard, workers, submit, merge, desc="nearest", log=log)
    if summary.read == 0:
        raise UserInputError(f"none of the {len(plan.images.sources)} files under --images {spec.images!r} could be "
                             "read as an image")
    rows = _rows(plan, state[0])
    _write_sheets(plan, store, rows, workers, log)
    store.write_bytes(part, parquet_bytes(pa.Table.from_pylist(rows, schema=NEIGHBOURS_SCHEMA)))
    write_manifest(store, plan.run_id, record, status="finished", finished_at=utc_now(), images_read=summary.read,
                   images_skipped=len(summary.skipped))
    return CommandSummary(what, "nearest", summary)


NEIGHBOURS_SCHEMA = pa.schema([
    ("image", pa.string()), ("kind", pa.string()), ("model", pa.string()), ("snapshot", pa.string()),
    ("layer", pa.string()), ("unit", pa.int32()), ("y", pa.int32()), ("x", pa.int32()), ("seed", pa.int32()),
    ("method", pa.string()), ("hyperparams", pa.string()), ("run_id", pa.string()), ("sample", pa.int32()),
    ("space", pa.string()), ("rank", pa.int32()), ("distance", pa.float64()), ("source", pa.string()),
    ("label", pa.string()), ("images", pa.string()), ("k", pa.int32()), ("same_class", pa.bool_()),
])


def _rows(plan: NearestPlan, result: NearestShard) -> list[dict]:
    src = plan.images.sources
    rows = []
    for qi, q in enumerate(plan.queries):
        for space in plan.spaces:
            for rank, value, index, _, _ in result.spaces[space].entries(qi):
                rows.append({"image": q.image, "kind": q.kind, **dict(zip(_ROW, q.row)), "space": space,
                             "rank": rank, "distance": -value, "source": src[index].uri, "label": src[index].label,
                             "images": plan.spec.images, "k": plan.spec.k, "same_class": plan.same_class,
                             "_index": index})
    return rows


def _write_sheets(plan: NearestPlan, store: Store, rows: list[dict], workers: Workers, log) -> None:
    """One sheet per synthesized image: it, then its nearest real image in each space (rank 0)."""
    size = plan.target.entry.preprocessing.size
    first = {(r["image"], r["space"]): r for r in rows if r["rank"] == 0}
    wanted = {r["_index"]: [(0, 0, *size)] for r in first.values()}
    tiles: dict[int, Image.Image] = {}
    cut_crops(workers, [s.uri for s in plan.images.sources], wanted, dict(plan.spec.storage_options),
              lambda i, _b, png: tiles.__setitem__(i, Image.open(io.BytesIO(png)).convert("RGB")), log,
              retry=plan.spec.retry())
    atlas = plan.spec.store(plan.spec.atlas)
    for q in plan.queries:
        synthetic = Image.open(io.BytesIO(atlas.read_bytes(q.image))).convert("RGB")
        cells = []
        for space in plan.spaces:
            r = first.get((q.image, space))
            cells.append((space, r["distance"] if r else None, tiles.get(r["_index"]) if r else None))
        title = f"{q.image}: nearest real image in each space (Euclidean distance)"
        buf = io.BytesIO()
        neighbour_sheet(synthetic, cells, title).save(buf, format="PNG")
        store.write_bytes(f"nearest/sheets/{plan.run_id[:8]}/{q.image.removeprefix('images/')}", buf.getvalue())
    for r in rows:
        del r["_index"]
