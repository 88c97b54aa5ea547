"""The frozen run spec of an atlas job (STYLE 6: CLI/TOML -> run spec -> work items -> actors).

`plan()` validates everything against the real network before anything is written (unknown layer, unit or
position out of range, unreadable weights or bounds, unwritable --out all raise UserInputError) and turns
the spec into the full work list.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from models.capture import unknown_layer
from models.layers import default_selection, select_layers
from models.errors import UserInputError
from models.loading import RANDOM_WEIGHTS, LoadedNet, load_net
from models.registry import model_slug, registry, resolve_model
from models.units import Unit, parse_units, resolve_units
from tasks.actor import NetSpec, WorkItem, pin_build
from tasks.dgn import DGNConfig
from tasks.diversity import DiversitySpec, default_layer
from tasks.image_am import ImageAMConfig
from tasks.objectives import ObjectiveSpec

from .cluster import Placement
from .init_photos import InitPhotos, read_init_photos
from .keys import ItemKey, hyperparams_json, safe_segment
from models.retry import RetryPolicy
from models.storage_client import read_uri
from .storage import Store

__all__ = ["AtlasSpec", "Plan", "plan", "read_bounds", "prepare_generator", "generator_hp", "snapshot_name"]


@dataclass(frozen=True)
class AtlasSpec:
    net: NetSpec
    config: ImageAMConfig | DGNConfig
    layers: tuple[str, ...] = ()  # empty: the model's default selection
    units: str = "all"
    layer_units: tuple[tuple[str, str], ...] = ()  # per-layer overrides of `units`
    seeds: int = 2
    steps: int = 200
    snapshot: str | None = None  # default: the weights file's stem
    out: str = "./atlas-out"
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    bounds: str | None = None  # URI of per-unit code upper bounds (DGN-AM)
    batch_size: int | None = None
    placement: Placement = Placement()  # where the actors run: --address, --actors, --device ... (cluster.py)
    storage_retry_s: float = 120.0  # how long transient storage faults are retried before the run stops
    objective: ObjectiveSpec = ObjectiveSpec()
    diversity: DiversitySpec | None = None  # a unit's seeds optimized as one group (tasks/diversity.py)
    init: str | None = None  # --init: the photos the seeds start from (pipelines/init_photos.py)
    init_photos: InitPhotos | None = None  # read by plan()

    def retry(self) -> RetryPolicy:
        return RetryPolicy(budget_s=self.storage_retry_s)

    def store(self) -> Store:
        return Store(self.out, self.storage_options, self.retry())

    @property
    def method(self) -> str:
        return "dgn" if isinstance(self.config, DGNConfig) else "image"


@dataclass
class Plan:
    spec: AtlasSpec
    target: LoadedNet
    generator: LoadedNet | None
    items: list[tuple[ItemKey, WorkItem]]  # every item of the run, in layer order
    code_upper: np.ndarray | None
    hyperparams: str
    snapshot: str

    @property
    def model_slug(self) -> str:
        return model_slug(self.spec.net.model)


def read_bounds(uri: str, storage_options: Mapping[str, Any], retry: RetryPolicy | None = None
                ) -> tuple[np.ndarray, str]:
    """Per-unit upper bounds from .npy, .parquet (column 'upper') or whitespace text (the authors' files)."""
    import pyarrow.parquet as pq

    try:
        blob = read_uri(uri, storage_options, retry)
    except (OSError, ValueError) as e:
        raise UserInputError(f"cannot read --bounds {uri!r}: {e}") from e
    try:
        if uri.endswith(".npy"):
            arr = np.load(io.BytesIO(blob), allow_pickle=False)
        elif uri.endswith(".parquet"):
            arr = pq.read_table(io.BytesIO(blob), columns=["upper"]).column("upper").to_numpy()
        else:
            arr = np.loadtxt(io.StringIO(blob.decode()), dtype=np.float32).reshape(-1)
    except Exception as e:
        raise UserInputError(f"--bounds {uri!r} is not a .npy, .parquet (column 'upper') or text file of "
                             f"numbers: {e}") from e
    return np.asarray(arr, dtype=np.float32).reshape(-1), hashlib.sha256(blob).hexdigest()


def snapshot_name(snapshot: str | None, weights_uri: str) -> str:
    """--snapshot, else the weights file's stem ('random' for random weights, 'built-<sha8>' for a net used
    as its callable built it), as a path segment."""
    if snapshot:
        return safe_segment(snapshot, "snapshot")
    if weights_uri == RANDOM_WEIGHTS:
        return "random"
    stem = os.path.basename(weights_uri.rstrip("/")).split(".")[0]
    return safe_segment(stem or "weights", "snapshot")


def plan(spec: AtlasSpec, *, target: LoadedNet | None = None, extra_hp: Mapping[str, Any] | None = None) -> Plan:
    """Validate `spec` against the network and storage, and list every (key, work item) of the run.

    `target`: the net already loaded by a caller that loads its own kind of model (video models), whose
    `layers` give one time step's shapes; `extra_hp`: that caller's settings, added to every key."""
    if spec.seeds < 1:
        raise UserInputError(f"--seeds {spec.seeds} must be at least 1")
    if spec.steps < 1:
        raise UserInputError(f"--steps {spec.steps} must be at least 1")
    if spec.batch_size is not None and spec.batch_size < 1:
        raise UserInputError(f"--batch-size {spec.batch_size} must be at least 1")
    entry = spec.net.entry()
    if target is None:
        target = load_net(entry, spec.net.weights, storage_options=spec.storage_options, retry=spec.retry())
    config, code_upper, generator = spec.config, None, None
    if spec.method == "dgn":
        generator, code_upper, config = _prepare_dgn(spec)
    selection = _selection(spec, entry, target)
    snapshot = snapshot_name(spec.snapshot, target.weights_uri)
    photos = None
    if spec.init:
        if generator is not None and generator.entry.encoder is None:
            raise UserInputError(f"--init with --method dgn starts from the encoder's code of the photo, and "
                                 f"generator {spec.net.generator!r} names no encoder; use --method image")
        photos = read_init_photos(spec.init, spec.seeds, entry.preprocessing, spec.storage_options, spec.retry())
    hp = hyperparams_json({"steps": spec.steps, **config.hyperparams(), **spec.objective.hyperparams(),
                           **generator_hp(spec.net, generator), **(extra_hp or {}),
                           **(spec.diversity.hyperparams(spec.seeds) if spec.diversity else {}),
                           **(photos.hyperparams() if photos else {})})
    slug = safe_segment(model_slug(spec.net.model), "model")
    items: list[tuple[ItemKey, WorkItem]] = []
    for layer, units_spec in selection:
        if layer not in target.layers:
            raise unknown_layer(layer, spec.net.model)
        if safe_segment(layer, "layer") != layer:
            raise UserInputError(f"layer name {layer!r} cannot name an output path")
        _check_objective(spec.objective, layer, target.layers[layer].shape)
        _check_diversity(spec.diversity, layer, target, spec.net.model)
        for u in _units(spec.objective, units_spec, target.layers[layer], spec.net.model):
            for seed in range(spec.seeds):
                key = ItemKey(slug, snapshot, layer, u.channel, u.y, u.x, seed, spec.method, hp)
                items.append((key, WorkItem(u, seed)))
    spec.store().check_writable()
    # workers must build what was planned: a net used as built carries its digest to them
    return Plan(replace(spec, config=config, net=pin_build(spec.net, target), init_photos=photos), target, generator,
                items, code_upper, hp, snapshot)


def _check_diversity(diversity: DiversitySpec | None, layer: str, target: LoadedNet, model: str) -> None:
    """The Gram layer exists and has spatial maps (--diversity WEIGHT:LAYER), or the default one exists."""
    if diversity is None:
        return
    if diversity.layer is None:
        default_layer(layer, target.layers)
    elif diversity.layer not in target.layers:
        raise unknown_layer(diversity.layer, model)
    elif len(target.layers[diversity.layer].shape) != 3:
        raise UserInputError(f"--diversity {diversity.weight:g}:{diversity.layer}: that layer has no spatial maps "
                             f"(shape {target.layers[diversity.layer].shape}); name a conv layer")


def _units(obj: ObjectiveSpec, units_spec: str, info, model: str) -> list[Unit]:
    """The layer's selected units; the channel objective averages over positions, so its units have none."""
    selections = parse_units(units_spec)
    if obj.kind != "channel":
        return resolve_units(selections, info, model)
    pinned = next((s for s in selections if s.y is not None), None)
    if pinned is not None:
        raise UserInputError(f"--objective channel averages channel {pinned.lo} over every position; drop the "
                             f"'@{pinned.y},{pinned.x}' (or use --objective unit)")
    return list(dict.fromkeys(Unit(u.layer, u.channel) for u in resolve_units(selections, info, model)))


def _check_objective(obj: ObjectiveSpec, layer: str, shape: tuple[int, ...]) -> None:
    if obj.kind == "softmax" and len(shape) != 1:
        raise UserInputError(f"--objective softmax needs a logit layer (one value per class); {layer!r} has "
                             f"shape {shape}: use a classifier layer such as the model's last")
    if obj.kind == "blend" and not 0 <= obj.partner < shape[0]:
        raise UserInputError(f"--objective blend: unit {obj.partner} is out of range for layer {layer!r} "
                             f"({shape[0]} units)")


def _prepare_dgn(spec: AtlasSpec) -> tuple[LoadedNet, np.ndarray | None, DGNConfig]:
    """Load and check the generator and its code bounds; the bounds file's digest joins the config."""
    generator, upper, digest = prepare_generator(spec.net, spec.bounds, spec.storage_options, spec.retry())
    config = replace(spec.config, bounds_digest=digest) if digest else spec.config
    return generator, upper, config


def prepare_generator(net: NetSpec, bounds: str | None, storage_options: Mapping[str, Any],
                      retry: RetryPolicy | None = None) -> tuple[LoadedNet, np.ndarray | None, str | None]:
    """The generator named by `net` and its per-unit code upper bounds (with the bounds file's digest)."""
    if not net.generator:
        raise UserInputError("DGN-AM and inverse sets need --generator (e.g. mnv2-pool, deepsim-fc6 or tiny)")
    gen_entry = resolve_model(net.generator)
    if getattr(gen_entry, "kind", None) != "generator":
        gens = ", ".join(n for n, e in registry().items() if getattr(e, "kind", "") == "generator")
        raise UserInputError(f"--generator {net.generator!r} is not a generator; use one of {gens}")
    if not net.generator_weights and gen_entry.default_weights is None:
        raise UserInputError(f"generator {gen_entry.name!r} has no embedded weights; pass "
                             f"--generator-weights URI (or --generator-weights {RANDOM_WEIGHTS})")
    generator = load_net(gen_entry, net.generator_weights, storage_options=storage_options, retry=retry)
    if not bounds and gen_entry.default_bounds is not None and not net.generator_weights:
        bounds = gen_entry.default_bounds()  # the bounds that go with the embedded weights
    if not bounds:
        return generator, None, None
    upper, digest = read_bounds(bounds, storage_options, retry)
    need = int(np.prod(gen_entry.code_shape))
    if upper.size != need:
        raise UserInputError(f"--bounds {bounds!r} has {upper.size} values but generator "
                             f"{gen_entry.name!r} has {need} code units")
    return generator, upper, digest


def _selection(spec: AtlasSpec, entry, target: LoadedNet) -> list[tuple[str, str]]:
    """(layer, units spec) pairs: --layers expanded (paths, patterns, `all`; models/layers.py), else the entry's
    default selection."""
    if spec.layers:
        return select_layers(spec.layers, spec.units, spec.layer_units, target.layers, spec.net.model)
    default = default_selection(entry, spec.layer_units)
    if not default:
        raise UserInputError(f"pass --layers for model {spec.net.model!r}; "
                             f"'neuron-atlas layers --model {spec.net.model}' lists them")
    return default


def generator_hp(net: NetSpec, generator: LoadedNet | None) -> dict:
    """The generator's name and weights digest, for the hyperparams (so new weights make new keys)."""
    if generator is None:
        return {}
    return {"generator": net.generator, "generator_sha256": (generator.weights_sha256 or RANDOM_WEIGHTS)[:16]}
