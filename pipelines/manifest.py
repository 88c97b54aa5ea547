"""`<out>/manifest.json`: what produced the files under --out.

One entry per distinct run configuration (keyed by the digest of its hyperparameters and selection):
the config, package versions, model and generator weight digests, start/finish times and item counts.
Storage options are recorded by name only: credentials never reach the manifest.
"""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata

from .spec import Plan
from .storage import Store

__all__ = ["write_manifest", "run_record"]

_PACKAGES = ("neuron-atlas", "torch", "torchvision", "ray", "pyarrow", "fsspec", "s3fs", "numpy", "pillow")


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_record(plan: Plan) -> dict:
    s = plan.spec
    rec = {
        "model": s.net.model, "model_slug": plan.model_slug, "snapshot": plan.snapshot,
        "weights": plan.target.weights_uri, "weights_sha256": plan.target.weights_sha256,
        "preprocessing": plan.target.entry.preprocessing.describe(),
        "method": s.method, "hyperparams": json.loads(plan.hyperparams),
        "layers": sorted({k.layer for k, _ in plan.items}), "items": len(plan.items), "seeds": s.seeds,
        "storage_options": sorted(s.storage_options),  # names only, never values
        "versions": _versions(),
    }
    if plan.generator is not None:
        rec.update(generator=s.net.generator, generator_weights=plan.generator.weights_uri,
                   generator_sha256=plan.generator.weights_sha256, bounds=s.bounds)
    return rec


def write_manifest(store: Store, plan: Plan, run_id: str, **status) -> None:
    """Merge this run's record (plus `status` fields such as finished_at) into manifest.json."""
    try:
        manifest = json.loads(store.read_bytes("manifest.json"))
    except (FileNotFoundError, json.JSONDecodeError):
        manifest = {}
    runs = manifest.setdefault("runs", {})
    rec = runs.setdefault(run_id, {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    rec.update(run_record(plan))
    rec.update(status)
    manifest["format"] = 1
    manifest["latest_run"] = run_id
    store.write_bytes("manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())
