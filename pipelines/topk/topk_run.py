"""`neuron-atlas topk`: the k real images that excite each unit most, and per-unit activation statistics,
over a whole image set, in shards on the Ray workers, resumable.

    neuron-atlas topk --model M --layers L1,L2 [--units SPEC] --images URI --k 9 --out URI

One forward pass per image serves every selected unit of every listed layer. A conv unit's value in an
image is its maximum over positions (with its row and column and the receptive-field box there, whose crop
is saved); a fully connected unit's is its value (the crop is the whole input). Each shard's top-k is
merged exactly on the driver: the result equals a brute-force top-k over all images, ties broken by the
source's position in the sorted listing. Outputs: pipelines/topk/topk_out.py. Finished shards are recorded,
so a killed run, rerun, loses and duplicates nothing; a finished run, rerun, prints `nothing to do`.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import torch

from models.layers import default_selection, select_layers
from models.errors import UserInputError
from models.loading import LoadedNet, load_net
from models.registry import model_slug
from models.retry import RetryPolicy
from models.units import parse_units, resolve_units
from tasks.actor import NetSpec, pin_build
from tasks.attribution import METHOD as ATTRIBUTION_METHOD
from tasks.quantiles import MAX_ABS, MIN_ABS, REL_ERROR
from tasks.receptive import Geometry, NotTraceable, receptive_fields

from ..cluster import Placement
from ..imagesets import ImageSet, list_image_set
from ..keys import safe_segment
from ..manifest import _nets, _versions, utc_now, write_manifest
from ..sink import parquet_bytes
from ..spec import snapshot_name
from ..storage import Store
from .records import TopkShard
from .shards import CommandSummary, Workers, cut_crops, make_shards, per_source, run_pass
from .topk_out import crop_path, examples, examples_table, figure_path, part_path, stats_table
from .worker import Figure, FigureJob, ImageWorker, TopkJob, default_batch_size

__all__ = ["TopkSpec", "TopkPlan", "plan_topk", "run_topk", "selection", "geometry_of",
           "command_record", "log_ignored"]


@dataclass(frozen=True)
class TopkSpec:
    net: NetSpec
    layers: tuple[str, ...]
    images: str
    units: str = "all"
    layer_units: tuple[tuple[str, str], ...] = ()
    k: int = 9
    snapshot: str | None = None
    out: str = "./atlas-out"
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    shard_size: int = 256
    batch_size: int | None = None  # default: worker.default_batch_size (8 on CPU, 128 on GPU)
    placement: Placement = Placement()  # where the actors run: --address, --actors, --device ... (cluster.py)
    storage_retry_s: float = 120.0
    maps: bool = True  # conv units' activation maps with their examples, and their overlays
    attribution: bool = False  # an attribution overlay for every example (one backward pass per example)

    def retry(self) -> RetryPolicy:
        return RetryPolicy(budget_s=self.storage_retry_s)

    def store(self) -> Store:
        return Store(self.out, self.storage_options, self.retry())


@dataclass
class TopkPlan:
    spec: TopkSpec
    target: LoadedNet
    images: ImageSet
    selection: list[tuple[str, list[int]]]  # (layer, channels)
    geometry: dict[str, Geometry | None]
    model: str  # path-safe model name
    snapshot: str
    run_id: str
    note: str | None = None  # why boxes are whole images, when they are


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UserInputError(f"--{name} {value} must be at least 1")


def _channels(layer: str, spec: str, target: LoadedNet, model: str) -> list[int]:
    info = target.layers[layer]
    if len(info.shape) not in (1, 3):
        raise UserInputError(f"layer {layer!r} has output shape {list(info.shape)}; topk needs conv maps [C, H, W] "
                             f"or vectors [C] (see 'neuron-atlas layers --model {model}')")
    selections = parse_units(spec)
    pinned = next((s for s in selections if s.y is not None), None)
    if pinned is not None:
        raise UserInputError(f"topk ranks a conv unit by its maximum over all positions; drop the "
                             f"'@{pinned.y},{pinned.x}' from --units")
    return list(dict.fromkeys(u.channel for u in resolve_units(selections, info, model)))


def selection(layers: tuple[str, ...], units: str, layer_units, target: LoadedNet, model: str
              ) -> list[tuple[str, list[int]]]:
    """(layer, channels) for every listed layer, else for the model's default selection (the units a default
    atlas synthesizes, so `topk` without --layers explains them); UserInputError for unknown layers or units."""
    chosen = (select_layers(layers, units, layer_units, target.layers, model) if layers
              else default_selection(target.entry, layer_units))
    if not chosen:
        raise UserInputError(f"pass --layers; 'neuron-atlas layers --model {model}' lists them")
    out = []
    for layer, spec in chosen:
        if safe_segment(layer, "layer") != layer:
            raise UserInputError(f"layer name {layer!r} cannot name an output path")
        out.append((layer, _channels(layer, spec, target, model)))
    return out


def geometry_of(target: LoadedNet, layers: list[str]) -> tuple[dict[str, Geometry | None], str | None]:
    """Receptive fields of `layers` (tasks/receptive.py), or whole images with the reason why."""
    example = torch.zeros(1, *target.entry.example_input_shape, device=target.device)
    try:
        return receptive_fields(target.net, layers, target.to_input(example)), None
    except NotTraceable as e:
        note = f"receptive fields unknown (torch.fx cannot trace the model: {e}); crops are whole images"
        return {layer: None for layer in layers}, note


def plan_topk(spec: TopkSpec) -> TopkPlan:
    """Validate everything before anything is written; list the images."""
    for name in ("k", "shard_size", "batch_size"):
        _positive(name.replace("_", "-"), getattr(spec, name))
    target = load_net(spec.net.entry(), spec.net.weights, storage_options=spec.storage_options)
    sel = selection(spec.layers, spec.units, spec.layer_units, target, spec.net.model)
    images = list_image_set(spec.images, spec.storage_options, spec.retry())
    geometry, note = geometry_of(target, [layer for layer, _ in sel])
    snapshot = snapshot_name(spec.snapshot, target.weights_uri)
    model = safe_segment(model_slug(spec.net.model), "model")
    key = json.dumps([model, snapshot, target.weights_sha256, target.entry.preprocessing.describe(), sel, spec.k,
                      spec.images, images.digest, [REL_ERROR, MIN_ABS, MAX_ABS],
                      {"maps": spec.maps, "attribution": spec.attribution}])
    run_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    spec.store().check_writable()
    return TopkPlan(replace(spec, net=pin_build(spec.net, target)), target, images, sel, geometry, model, snapshot,
                    run_id, note)


def command_record(command: str, net: NetSpec, target: LoadedNet, model: str, snapshot: str, images: ImageSet,
                   storage_options: Mapping[str, Any], **extra) -> dict:
    """The manifest entry of a `topk` or `nearest` command."""
    return {**_nets(net, target, None, None), "command": command, "method": command, "model_slug": model,
            "snapshot": snapshot, "images": images.uri, "images_listed": len(images.sources), **extra,
            "storage_options": sorted(storage_options),  # names only, never values
            "versions": _versions()}


def log_ignored(images: ImageSet, log) -> None:
    for path in images.ignored:
        log(f"ignored {path}: not a .jpg/.jpeg/.png image")


def run_topk(plan: TopkPlan, *, log=print) -> CommandSummary:
    spec = plan.spec
    store = spec.store()
    store.remove_stale_temporaries()
    what = f"top-{spec.k} images of {sum(len(ch) for _, ch in plan.selection)} units in {len(plan.selection)} layers"
    wanted = [part_path("stats", plan.model, plan.snapshot, layer, plan.run_id) for layer, _ in plan.selection]
    if set(wanted) <= set(store.find("topk/stats", ".parquet")):
        return CommandSummary(what, "topk", None)
    record = command_record("topk", spec.net, plan.target, plan.model, plan.snapshot, plan.images,
                            spec.storage_options, k=spec.k,
                            layers={layer: len(ch) for layer, ch in plan.selection},
                            quantiles=f"log-bucket histogram, relative error {REL_ERROR}",
                            receptive_fields=plan.note or "torch.fx geometry",
                            **({"attribution": ATTRIBUTION_METHOD} if spec.attribution else {}))
    write_manifest(store, plan.run_id, record, status="running")
    log_ignored(plan.images, log)
    if plan.note:
        log(plan.note)
    full = {layer: len(ch) == plan.target.layers[layer].units and ch == sorted(ch) for layer, ch in plan.selection}
    layers = tuple((layer, None if full[layer] else tuple(ch)) for layer, ch in plan.selection)
    workers = Workers(ImageWorker, (spec.net,), spec.placement, log)
    state: list[TopkShard] = []

    def submit(actor, shard):
        batch = spec.batch_size or default_batch_size(workers.on_gpu)
        return actor.topk.remote(TopkJob(shard, layers, spec.k, batch, dict(spec.storage_options), spec.retry(),
                                         spec.maps))

    def merge(part: TopkShard) -> None:
        state[:] = [state[0].merge(part) if state else part]

    summary = run_pass(store, f"topk/shards/{plan.run_id}", make_shards(plan.images, spec.shard_size), TopkShard,
                       workers, submit, merge, desc="top-k", log=log)
    if summary.read == 0:
        first = summary.skipped[0] if summary.skipped else ("?", "?")
        raise UserInputError(f"none of the {len(plan.images.sources)} files under --images {spec.images!r} could be "
                             f"read as an image (first: {first[0]}: {first[1]})")
    _write_outputs(plan, store, state[0], workers, log)
    write_manifest(store, plan.run_id, record, status="finished", finished_at=utc_now(), images_read=summary.read,
                   images_skipped=len(summary.skipped))
    return CommandSummary(what, "topk", summary)


def _write_outputs(plan: TopkPlan, store: Store, result: TopkShard, workers: Workers, log) -> None:
    """Crops and overlays (those not written yet), then each layer's examples part, then its stats part (the
    done mark)."""
    spec = plan.spec
    size = plan.target.entry.preprocessing.size
    rows = {layer: examples(result.layers[layer][0], ch, plan.geometry[layer], size,
                            lambda index, box: crop_path(plan.model, plan.snapshot, plan.images, index, box),
                            lambda index, unit, kind, layer=layer: figure_path(plan.model, plan.snapshot, plan.images,
                                                                               index, layer, unit, kind),
                            spec.attribution)
            for layer, ch in plan.selection}
    present = set(store.find(f"topk/images/{plan.model}/{plan.snapshot}", ".png"))
    wanted: dict[int, list] = {}
    paths: dict[int, list[str]] = {}
    for index, box, image in sorted({(r.index, r.box, r.image) for layer_rows in rows.values() for r in layer_rows}):
        if image not in present:  # each distinct (image, box) once: examples that share a picture share its file
            wanted.setdefault(index, []).append(box)
            paths.setdefault(index, []).append(image)
    sources = [s.uri for s in plan.images.sources]
    with ThreadPoolExecutor(max_workers=8) as pool:
        writes = []
        lost = cut_crops(workers, sources, wanted, dict(spec.storage_options),
                         lambda i, b, png: writes.append(pool.submit(store.write_bytes, paths[i][b], png)), log,
                         retry=spec.retry())
        missing = {p for i in lost for p in paths[i]}
        missing |= _draw_figures(plan, store, rows, workers, pool, writes, log)
        for w in writes:
            w.result()  # a storage fault stops the run here, before any table names the crop
    for layer, ch in plan.selection:
        store.write_bytes(part_path("examples", plan.model, plan.snapshot, layer, plan.run_id),
                          parquet_bytes(examples_table(rows[layer], plan.images, spec.k, plan.run_id, missing)))
        store.write_bytes(part_path("stats", plan.model, plan.snapshot, layer, plan.run_id),
                          parquet_bytes(stats_table(result.layers[layer][1], ch, spec.images, plan.run_id)))


def _draw_figures(plan: TopkPlan, store: Store, rows: dict, workers: Workers, pool, writes: list, log) -> set[str]:
    """Draw the overlays the examples name and that are not under --out yet (on the workers, one read of each
    image); returns the paths of those whose image could not be read now."""
    present = {p for kind in ("maps", "attributions")
               for p in store.find(f"topk/{kind}/{plan.model}/{plan.snapshot}", ".png")}
    wanted: dict[int, list[Figure]] = {}
    paths: dict[int, list[str]] = {}
    for layer, layer_rows in rows.items():
        shape = plan.target.layers[layer].shape
        for r in layer_rows:
            mark = None if r.y is None else ((r.y + 0.5) * plan.target.entry.preprocessing.size[0] / shape[1],
                                             (r.x + 0.5) * plan.target.entry.preprocessing.size[1] / shape[2])
            for kind, path, heat in (("map", r.overlay, r.map), ("attribution", r.attribution, None)):
                if path is not None and path not in present:
                    present.add(path)
                    wanted.setdefault(r.index, []).append(Figure(kind, layer, r.unit, r.y, r.x, mark, heat))
                    paths.setdefault(r.index, []).append(path)
    if wanted:
        log(f"drawing {sum(map(len, paths.values())):,} overlays of where units fire")
    spec = plan.spec
    batch = spec.batch_size or default_batch_size(workers.on_gpu)
    lost = per_source(workers, [s.uri for s in plan.images.sources], wanted,
                      lambda srcs, figs: FigureJob(srcs, figs, batch, dict(spec.storage_options), spec.retry()),
                      "figures", lambda i, b, png: writes.append(pool.submit(store.write_bytes, paths[i][b], png)),
                      "overlays", log)
    return {p for i in lost for p in paths[i]}
