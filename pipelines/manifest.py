"""`<out>/manifest.json`: what produced the files under --out.

One entry per distinct run configuration (keyed by the digest of its hyperparameters and selection; atlas
and inverse-set runs alike):
the config, package versions, model and generator weight digests, start/finish times and item counts.
Storage options are recorded by name only: credentials never reach the manifest.
"""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from typing import TYPE_CHECKING

from models.loading import LoadedNet
from tasks.actor import NetSpec

from .spec import Plan
from .storage import Store

if TYPE_CHECKING:  # pipelines.inverse imports this module
    from .inverse import InversePlan

__all__ = ["write_manifest", "run_record", "inverse_record", "utc_now"]

_PACKAGES = ("neuron-atlas", "torch", "torchvision", "ray", "pyarrow", "fsspec", "s3fs", "numpy", "pillow")


def utc_now() -> str:
    """The time as the manifest records it (ISO 8601, UTC, seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _nets(net: NetSpec, target: LoadedNet, generator: LoadedNet | None, bounds: str | None) -> dict:
    rec = {"model": net.model, "weights": target.weights_uri, "weights_sha256": target.weights_sha256,
           "preprocessing": target.entry.preprocessing.describe()}
    if generator is not None:
        rec.update(generator=net.generator, generator_weights=generator.weights_uri,
                   generator_sha256=generator.weights_sha256, bounds=bounds)
    return rec


def run_record(plan: Plan) -> dict:
    """The manifest entry of an atlas run."""
    s = plan.spec
    return {
        **_nets(s.net, plan.target, plan.generator, s.bounds), "model_slug": plan.model_slug,
        "snapshot": plan.snapshot, "method": s.method, "hyperparams": json.loads(plan.hyperparams),
        "layers": sorted({k.layer for k, _ in plan.items}), "items": len(plan.items), "seeds": s.seeds,
        "storage_options": sorted(s.storage_options),  # names only, never values
        "versions": _versions(),
    }


def inverse_record(plan: InversePlan) -> dict:
    """The manifest entry of an inverse-set command (all its runs share the hyperparameters)."""
    s = plan.spec
    return {
        **_nets(s.net, plan.target, plan.generator, s.bounds), "model_slug": plan.model, "snapshot": plan.snapshot,
        "method": "inverse", "hyperparams": json.loads(plan.runs[0].hyperparams), "seed": s.seed,
        "constraints": [[str(c) for c in r.job.constraints] for r in plan.runs], "runs": len(plan.runs),
        "storage_options": sorted(s.storage_options),  # names only, never values
        "versions": _versions(),
    }


def write_manifest(store: Store, run_id: str, record: dict, **status) -> None:
    """Merge this run's `record` (run_record or inverse_record, plus `status` fields such as finished_at)
    into manifest.json."""
    try:
        manifest = json.loads(store.read_bytes("manifest.json"))
    except (FileNotFoundError, json.JSONDecodeError):
        manifest = {}
    runs = manifest.setdefault("runs", {})
    rec = runs.setdefault(run_id, {"started_at": utc_now()})
    rec.update(record)
    rec.update(status)
    manifest["format"] = 1
    manifest["latest_run"] = run_id
    store.write_bytes("manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())
