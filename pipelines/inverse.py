"""`neuron-atlas inverse`: inverse-set runs (tasks/inverse.py) fanned out over the actors, written under
`<out>/inverse/`, resumable like atlas items.

    --constraint LAYER:UNIT[@Y,X]:Z1:Z2   repeated: one run whose samples satisfy all (an intersection)
    --constraint LAYER:UNITS:Z1:Z2        UNITS a list or range ('3,17', '0:8'): one run per unit

Output, per run (run_id = digest of model, snapshot, constraints, seed and hyperparameters):
    inverse/images/<model>/<snapshot>/<run_id>/<sample>.png      one 8-bit image per kept sample
    inverse/samples/model=../snapshot=../part-<run_id>.parquet   one row per sample
    inverse/runs/model=../snapshot=../part-<run_id>.parquet      one row per run, written last (= done)
    inverse/sheets/<model>/<snapshot>/<run_id>.png               the samples sorted by activation
A run whose range cannot be reached within the step budget still writes what it found, then the command
stops with one line saying how close it got.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from models.capture import unknown_layer
from models.errors import UserInputError
from models.loading import LoadedNet, load_net
from models.registry import model_slug
from models.retry import RetryPolicy, with_retries
from models.units import parse_units, resolve_units
from tasks.actor import InverseJob, NetSpec, SynthesisActor, pin_build
from tasks.dgn import DGNConfig
from tasks.inverse import Constraint, InverseConfig, InverseResult

from .cluster import Placement, start_pool
from .dispatch import dispatch
from .keys import hyperparams_json, safe_segment
from .manifest import inverse_record, utc_now, write_manifest
from .progress import Progress
from .sheet import contact_sheet
from .sink import parquet_bytes, pil_image, png_bytes
from .spec import generator_hp, prepare_generator, snapshot_name
from .storage import Store

__all__ = ["InverseSpec", "InverseRun", "plan_inverse", "run_inverse", "parse_constraint", "default_encoder_layer"]

_PARTITIONING = ds.partitioning(pa.schema([("model", pa.string()), ("snapshot", pa.string())]), flavor="hive")


@dataclass(frozen=True)
class InverseSpec:
    net: NetSpec
    constraints: tuple[str, ...]
    config: InverseConfig = InverseConfig()
    encoder_layer: str | None = None  # default: the middle block of the target net
    seed: int = 0
    dgn: DGNConfig = DGNConfig()  # code bounds: lower, and a constant upper when no --bounds
    bounds: str | None = None
    snapshot: str | None = None
    out: str = "./atlas-out"
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    placement: Placement = Placement()  # where the actors run: --address, --actors, --device ... (cluster.py)
    storage_retry_s: float = 120.0

    def retry(self) -> RetryPolicy:
        return RetryPolicy(budget_s=self.storage_retry_s)

    def store(self) -> Store:
        return Store(self.out, self.storage_options, self.retry())


@dataclass(frozen=True)
class InverseRun:
    run_id: str
    job: InverseJob
    hyperparams: str


@dataclass
class InversePlan:
    spec: InverseSpec
    runs: list[InverseRun]
    model: str  # path-safe model name
    snapshot: str
    code_upper: np.ndarray | None
    target: LoadedNet
    generator: LoadedNet

    @property
    def manifest_id(self) -> str:
        """The manifest entry's key: a digest of every run of the command."""
        return hashlib.sha256(" ".join(r.run_id for r in self.runs).encode()).hexdigest()[:12]


def parse_constraint(text: str) -> tuple[str, str, float, float]:
    """LAYER:UNITS:Z1:Z2 -> (layer, units spec, z1, z2); UNITS may itself hold ':' (a range)."""
    parts = text.split(":")
    if len(parts) < 4:
        raise UserInputError(f"--constraint {text!r} must look like LAYER:UNIT[@Y,X]:Z1:Z2, "
                             "e.g. classifier.1:980:10:14")
    layer, units, z1, z2 = parts[0], ":".join(parts[1:-2]), parts[-2], parts[-1]
    try:
        return layer, units, float(z1), float(z2)
    except ValueError:
        raise UserInputError(f"--constraint {text!r}: Z1 and Z2 must be numbers, got {z1!r} and {z2!r}") from None


def default_encoder_layer(target: LoadedNet) -> str:
    """The middle of the shallowest run (at least 3) of spatial layers: features.9 for MobileNetV2."""
    spatial = [info for info in sorted(target.layers.values(), key=lambda i: i.order) if info.spatial]
    for depth in sorted({i.name.count(".") for i in spatial}):
        row = [i.name for i in spatial if i.name.count(".") == depth]
        if len(row) >= 3:
            return row[len(row) // 2]
    if not spatial:
        raise UserInputError("the target net has no spatial layer to measure diversity in; pass --encoder-layer")
    return spatial[len(spatial) // 2].name


def plan_inverse(spec: InverseSpec) -> InversePlan:
    """Validate constraints, nets and storage; list every run (one per unit of a multi-unit constraint)."""
    if not spec.constraints:
        raise UserInputError("pass at least one --constraint LAYER:UNIT[@Y,X]:Z1:Z2")
    target = load_net(spec.net.entry(), spec.net.weights, storage_options=spec.storage_options, retry=spec.retry())
    generator, upper, digest = prepare_generator(spec.net, spec.bounds, spec.storage_options, spec.retry())
    encoder_layer = spec.encoder_layer or default_encoder_layer(target)
    if encoder_layer not in target.layers:
        raise unknown_layer(encoder_layer, spec.net.model)
    groups: list[list[Constraint]] = []
    for text in spec.constraints:
        layer, units, z1, z2 = parse_constraint(text)
        if layer not in target.layers:
            raise unknown_layer(layer, spec.net.model)
        resolved = resolve_units(parse_units(units), target.layers[layer], spec.net.model)
        groups.append([Constraint(u, z1, z2) for u in resolved])
    multi = [g for g in groups if len(g) > 1]
    if multi and len(groups) > 1:
        raise UserInputError("a --constraint naming several units makes one run per unit; it cannot be "
                             "intersected with other --constraint flags (give one unit each to intersect)")
    constraint_sets = [(c,) for c in multi[0]] if multi else [tuple(g[0] for g in groups)]
    snapshot = snapshot_name(spec.snapshot, target.weights_uri)
    model = safe_segment(model_slug(spec.net.model), "model")
    hp = hyperparams_json({**spec.config.hyperparams(), "encoder_layer": encoder_layer,
                           "lower": spec.dgn.lower, "upper": spec.dgn.upper, "bounds_digest": digest,
                           **generator_hp(spec.net, generator)})
    runs = []
    for cs in constraint_sets:
        key = json.dumps([model, snapshot, [str(c) for c in cs], spec.seed, hp])
        run_id = hashlib.sha256(key.encode()).hexdigest()[:16]
        runs.append(InverseRun(run_id, InverseJob(cs, spec.config, encoder_layer, spec.seed, spec.dgn), hp))
    spec.store().check_writable()
    return InversePlan(replace(spec, net=pin_build(spec.net, target)), runs, model, snapshot, upper, target,
                       generator)


SAMPLES_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("sample", pa.int32()), ("seed", pa.int32()), ("method", pa.string()),
    ("constraints", pa.list_(pa.string())), ("z1", pa.list_(pa.float64())), ("z2", pa.list_(pa.float64())),
    ("activation", pa.list_(pa.float64())), ("in_range", pa.bool_()), ("image", pa.string()),
    ("hyperparams", pa.string()),
])
RUNS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("seed", pa.int32()), ("constraints", pa.list_(pa.string())),
    ("z1", pa.list_(pa.float64())), ("z2", pa.list_(pa.float64())), ("k", pa.int32()), ("n", pa.int32()),
    ("samples", pa.int32()), ("status", pa.string()), ("seed_iterations", pa.int32()),
    ("seed_steps", pa.int32()), ("sampling_steps", pa.int32()), ("diversity", pa.float64()),
    ("diversity_space", pa.string()), ("encoder_layer", pa.string()), ("closest", pa.list_(pa.float64())),
    ("sheet", pa.string()), ("seconds", pa.float64()), ("hyperparams", pa.string()),
])


@dataclass
class InverseSummary:
    total: int
    skipped: int
    done: int
    incomplete: list[str]  # one line per run that stopped short
    wall_s: float

    def line(self, out: str) -> str:
        if self.done == 0:
            return f"nothing to do: all {self.total} inverse-set runs already under {out}/inverse"
        return (f"done: {self.done} inverse-set runs ({self.skipped} already present) in {self.wall_s:.1f} s; "
                f"results in {out}/inverse")


def _paths(plan: InversePlan, run_id: str) -> tuple[str, str, str]:
    part = f"model={plan.model}/snapshot={plan.snapshot}/part-{run_id}.parquet"
    return (f"inverse/images/{plan.model}/{plan.snapshot}/{run_id}", part,
            f"inverse/sheets/{plan.model}/{plan.snapshot}/{run_id}.png")


def _sheet(result: InverseResult, constraints: tuple[Constraint, ...], columns: int = 10) -> bytes:
    order = np.argsort(result.activations[:, 0].numpy()) if len(result.images) else []
    images = [pil_image(result.images[i].numpy()) for i in order]
    labels = [" ".join(f"{v:.2f}" for v in result.activations[i].tolist()) for i in order]
    title = " & ".join(str(c) for c in constraints)
    sheet = contact_sheet(images, labels, columns=min(columns, max(1, len(images))), tile=96,
                          rows_titles=[(0, f"{title}: {len(images)} samples by activation ({result.status})")])
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def write_run(store: Store, plan: InversePlan, run: InverseRun, result: InverseResult, seconds: float) -> None:
    """PNGs, then the sample rows, then the contact sheet, then the run row (the run's done marker)."""
    images_dir, part, sheet_path = _paths(plan, run.run_id)
    cs = run.job.constraints
    names = [f"{images_dir}/{i:04d}.png" for i in range(len(result.images))]
    for name, img in zip(names, result.images):
        store.write_bytes(name, png_bytes(img.numpy()))
    z1, z2 = [c.z1 for c in cs], [c.z2 for c in cs]
    labels = [c.label for c in cs]
    acts = result.activations.double().numpy() if len(names) else np.zeros((0, len(cs)))
    m = len(names)
    samples = pa.table({
        "run_id": [run.run_id] * m, "sample": list(range(m)), "seed": [run.job.seed] * m,
        "method": ["inverse"] * m, "constraints": [labels] * m, "z1": [z1] * m, "z2": [z2] * m,
        "activation": [list(a) for a in acts],
        "in_range": [bool(((a >= np.array(z1)) & (a <= np.array(z2))).all()) for a in acts],
        "image": names, "hyperparams": [run.hyperparams] * m,
    }, schema=SAMPLES_SCHEMA)
    store.write_bytes(f"inverse/samples/{part}", parquet_bytes(samples))
    store.write_bytes(sheet_path, _sheet(result, cs))
    cfg = run.job.config
    row = pa.table({
        "run_id": [run.run_id], "seed": [run.job.seed], "constraints": [labels], "z1": [z1], "z2": [z2],
        "k": [cfg.k], "n": [cfg.n], "samples": [m], "status": [result.status],
        "seed_iterations": [result.seed_iterations], "seed_steps": [result.seed_steps],
        "sampling_steps": [result.sampling_steps], "diversity": [result.diversity],
        "diversity_space": [cfg.diversity], "encoder_layer": [run.job.encoder_layer],
        "closest": [[float(v) for v in result.best.tolist()]], "sheet": [sheet_path], "seconds": [seconds],
        "hyperparams": [run.hyperparams],
    }, schema=RUNS_SCHEMA)
    store.write_bytes(f"inverse/runs/{part}", parquet_bytes(row))


def read_inverse(store: Store, what: str = "runs") -> pa.Table:
    """`inverse/runs` or `inverse/samples` as one Arrow table (model and snapshot from the hive path)."""
    files = [store.path(p) for p in store.find(f"inverse/{what}", ".parquet")]
    if not files:
        return pa.table({})

    def load() -> pa.Table:
        return ds.dataset(files, filesystem=store.fs, format="parquet", partitioning=_PARTITIONING,
                          partition_base_dir=store.path(f"inverse/{what}")).to_table()
    return with_retries(load, f"{store.uri}/inverse/{what}", store.retry)


def _shortfall(run: InverseRun, result: InverseResult, out: str) -> str:
    cs = run.job.constraints
    what = " & ".join(str(c) for c in cs)
    closest = ", ".join(f"{c.label} reached {v:.3g}" for c, v in zip(cs, result.best.tolist()))
    if result.status == "seeds-out-of-reach":
        cfg = run.job.config
        return (f"range {what} not reached by all {cfg.k} seeds within {result.seed_iterations} x "
                f"{cfg.seed_steps} steps ({closest}); kept {len(result.images)} samples in range under {out}; "
                f"pick a range nearer the values reached, or raise --max-outer / --seed-steps")
    return (f"range {what}: the sampling budget (--max-sample-steps {run.job.config.max_sample_steps}) ran out "
            f"with {len(result.images)} of {run.job.config.n} samples, kept under {out}")


def run_inverse(plan: InversePlan, *, log=print) -> InverseSummary:
    """Compute every run of `plan` not yet under --out and record the command in manifest.json; raises
    UserInputError naming each run that could not reach its range (after writing what it found)."""
    spec = plan.spec
    store = spec.store()
    t0 = time.perf_counter()
    store.remove_stale_temporaries()
    done_table = read_inverse(store, "runs")
    done = set(done_table.column("run_id").to_pylist()) if done_table.num_rows else set()
    todo = [r for r in plan.runs if r.run_id not in done]
    skipped = len(plan.runs) - len(todo)
    if not todo:
        return InverseSummary(len(plan.runs), skipped, 0, [], time.perf_counter() - t0)
    if skipped:
        log(f"resuming: skipping {skipped} of {len(plan.runs)} runs already under {spec.out}")
    pool = start_pool(SynthesisActor, (spec.net,), {"code_upper": plan.code_upper}, spec.placement, log)
    record = inverse_record(plan)
    write_manifest(store, plan.manifest_id, record, status="running")
    progress = Progress(len(todo), desc="inverse sets")
    incomplete: list[str] = []

    def on_result(run: InverseRun, value) -> None:
        result, seconds = value
        write_run(store, plan, run, result, seconds)
        if result.status != "complete":
            incomplete.append(_shortfall(run, result, spec.out))
        progress.update(1)

    dispatch(pool.actors, todo, lambda actor, run: actor.inverse.remote(run.job), on_result, log, grow=pool.grow)
    progress.close()
    summary = InverseSummary(len(plan.runs), skipped, len(todo), incomplete, time.perf_counter() - t0)
    write_manifest(store, plan.manifest_id, record, status="finished", finished_at=utc_now(),
                   incomplete=len(incomplete))
    if incomplete:
        raise UserInputError("; ".join(incomplete))
    return summary
