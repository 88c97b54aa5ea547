"""`make bench-scale`: the pipeline at a million items, on the loopback S3 server (moto in server mode).

    python -m benchmarks.scale_bench [--quick] [--json F]

1. plan: `neuron-atlas plan` of ResNet-50 (random weights), `--layers all --units all`, 37 seeds (about a
   million items), `--no-calibrate`, as a fresh process: wall time and the process's peak RSS;
2. pipeline overhead: 100,000 items (fashion_cnn, every unit of every layer, 80 seeds) through the real
   driver, dispatch, a Ray actor and the sink onto S3, with synthesis replaced by a test double that returns
   a 28 x 28 image and an activation vector at once (`TrivialActor`, the synthesis step only); per item;
3. resume check (`done_keys`) against a million done keys written as 64-row parts (15,625 files per dataset),
   then `compact` of them, then the resume check again;
4. DuckDB (with s3fs registered as its filesystem): the units of one layer joined with their activations, on
   the raw parts and after compaction;
5. the site (`neuron-atlas report`) over a synthetic 100,000-unit atlas (benchmarks/report_bench.py).
`--quick` divides the sizes by 20 (for a smoke test of the harness).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

__all__ = ["main", "measure_scale", "scale_report", "TrivialActor"]

KEY = ["model", "snapshot", "layer", "unit", "y", "x", "seed", "method", "hyperparams"]


class TrivialActor:
    """The synthesis step's test double: a SynthesisActor whose batches finish at once (no optimization)."""

    def __init__(self, spec, *, device=None, threads=None, code_upper=None, seed=0):
        from tasks.actor import pick_device

        self.device = pick_device(device)
        self.image = np.full((28, 28, 1), 128, np.uint8)

    def ping(self) -> str:
        return str(self.device)

    def run(self, batch):
        from tasks.actor import BatchResult, ItemResult

        t0 = time.perf_counter()
        results = [ItemResult(w, self.image, 0.0, 1.0, 1.0, np.zeros(8, np.float32), "unit") for w in batch.items]
        return BatchResult(results, time.perf_counter() - t0, str(self.device))


def put_rate(store, log, n: int = 2000) -> float:
    """Small-object PUTs per second the S3 server takes from 16 threads (what bounds writes to it)."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: store.write_bytes(f"o/{i}.bin", b"x" * 600), range(n)))
    rate = n / (time.perf_counter() - t0)
    log(f"S3 server: {rate:.0f} PUTs of 600 bytes per second from 16 threads")
    return round(rate)


def _child_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def bench_plan(seeds: int, env: dict, out: str, log) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipelines", "plan", "--model", "resnet50", "--weights", "random",
                           "--layers", "all", "--units", "all", "--seeds", str(seeds), "--no-calibrate", "--json",
                           "--out", out], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    items = json.loads(proc.stdout)["total"]["items"]
    r = {"items": items, "seconds": round(wall, 1), "rss_mib": round(_child_rss_mib())}
    log(f"plan of {items:,} items: {wall:.1f} s, peak RSS {r['rss_mib']} MiB")
    return r


def bench_overhead(seeds: int, out: str, options: dict, log) -> dict:
    from pipelines.cluster import init_ray
    from pipelines.runner import start_actors, synthesize
    from pipelines.spec import AtlasSpec, plan
    from tasks.actor import NetSpec
    from tasks.image_am import ImageAMConfig

    spec = AtlasSpec(net=NetSpec("fashion_cnn", storage_options=options), config=ImageAMConfig(), layers=("all",),
                     units="all", seeds=seeds, steps=1, out=out, storage_options=options, batch_size=64)
    p = plan(spec)
    init_ray("local")
    pool = start_actors(p.spec, None, actor_class=TrivialActor)
    t0 = time.perf_counter()
    done = synthesize(pool, p.spec, p.spec.store(), p.items, log=lambda m: None)
    wall = time.perf_counter() - t0
    r = {"items": done.written, "batch": 64, "seconds": round(wall, 1),
         "ms_per_item": round(1000 * wall / done.written, 3)}
    log(f"pipeline overhead: {done.written:,} items in {wall:.1f} s = {r['ms_per_item']:.2f} ms per item (batch 64)")
    return r


def _write_done_keys(store, n: int, per_part: int = 64) -> str:
    """n done keys as `per_part`-row parts of units/ and activations/ (one layer per 250,000 keys)."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from pipelines.keys import batch_digest, ItemKey
    from pipelines.sink import ACTIVATIONS_SCHEMA, UNITS_SCHEMA, parquet_bytes

    hp = '{"steps":1}'
    jobs = []
    for start in range(0, n, per_part):
        layer = f"layer{start // 250_000}"
        units = np.arange(start, min(n, start + per_part), dtype=np.int32)
        keys = [ItemKey("m", "s", layer, int(u), None, None, 0, "image", hp) for u in units]
        part = f"model=m/snapshot=s/layer={layer}/part-{batch_digest(keys)}.parquet"
        k = len(units)
        base = {"unit": units, "y": pa.nulls(k, pa.int32()), "x": pa.nulls(k, pa.int32()),
                "seed": np.zeros(k, np.int32), "method": ["image"] * k, "hyperparams": [hp] * k}
        u = pa.table({**base, "objective": ["unit"] * k, "activation_start": np.zeros(k),
                      "activation_final": np.ones(k), "activation_best": np.ones(k), "steps": np.ones(k, np.int32),
                      "image": [f"images/{x}.png" for x in units], "device": ["cpu"] * k}).select(
            UNITS_SCHEMA.names).cast(UNITS_SCHEMA)
        a = pa.table({**base, "activation": [np.ones(8, np.float32)] * k}).select(ACTIVATIONS_SCHEMA.names).cast(
            ACTIVATIONS_SCHEMA)
        jobs += [(f"units/{part}", parquet_bytes(u)), (f"activations/{part}", parquet_bytes(a))]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda job: store.write_bytes(*job), jobs))
    return "layer0"


def _duckdb_query(store, layer: str) -> tuple[float, int]:
    import duckdb

    con = duckdb.connect()
    con.register_filesystem(store.fs)
    root = store.uri.rstrip("/")
    sql = f"""
        SELECT u.unit, u.activation_final, a.activation FROM
        (SELECT DISTINCT ON (model, snapshot, layer, unit, y, x, seed, method, hyperparams) *
         FROM read_parquet('{root}/units/**/*.parquet', hive_partitioning = true)) u
        JOIN (SELECT DISTINCT ON (model, snapshot, layer, unit, y, x, seed, method, hyperparams) *
              FROM read_parquet('{root}/activations/**/*.parquet', hive_partitioning = true)) a
        USING (model, snapshot, layer, unit, seed, method, hyperparams)
        WHERE u.layer = '{layer}'"""
    t0 = time.perf_counter()
    rows = con.sql(sql).fetchall()
    return time.perf_counter() - t0, len(rows)


def bench_storage(n: int, store, log) -> dict:
    from pipelines.compaction import compact
    from pipelines.sink import done_keys

    t0 = time.perf_counter()
    layer = _write_done_keys(store, n)
    write_s = time.perf_counter() - t0
    log(f"wrote {n:,} done keys as 64-row parts in {write_s:.0f} s")
    t0 = time.perf_counter()
    keys = done_keys(store)
    resume_s = time.perf_counter() - t0
    assert len(keys) == n
    log(f"resume check over {n:,} done keys (parts): {resume_s:.1f} s")
    q_before, rows = _duckdb_query(store, layer)
    log(f"DuckDB, units of {layer} joined with activations, on the parts: {q_before:.1f} s ({rows:,} rows)")
    c = compact(store, log=log)
    log(c.line(store.uri))
    t0 = time.perf_counter()
    assert len(done_keys(store)) == n
    resume_after = time.perf_counter() - t0
    q_after, rows_after = _duckdb_query(store, layer)
    assert rows_after == rows
    log(f"after compaction: resume check {resume_after:.1f} s, DuckDB {q_after:.2f} s "
        f"({q_before / max(q_after, 1e-9):.0f}x faster)")
    return {"keys": n, "write_s": round(write_s, 1), "resume_s": round(resume_s, 1),
            "compaction_s": round(c.seconds, 1), "files_before": c.files_before, "files_after": c.files_after,
            "resume_after_s": round(resume_after, 1), "duckdb_before_s": round(q_before, 2),
            "duckdb_after_s": round(q_after, 2), "duckdb_speedup": round(q_before / max(q_after, 1e-9), 1),
            "duckdb_rows": rows}


def measure_scale(quick: bool = False, skip: set[str] = frozenset(), log=print) -> dict:
    """Every section of the module docstring (sizes / 20 with `quick`) except those in `skip`."""
    from pipelines.storage import Store
    from tests.s3server import MotoServer, s3_env

    div = 20 if quick else 1
    server = MotoServer()
    env = s3_env(server.url)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    import boto3

    boto3.client("s3", endpoint_url=server.url).create_bucket(Bucket="scale")
    options = {"endpoint_url": server.url}
    results: dict = {"quick": quick}
    try:
        if "plan" not in skip:
            results["plan"] = bench_plan(max(1, 37 // div), env, "s3://scale/plan", log)
        if "overhead" not in skip:
            with tempfile.TemporaryDirectory() as tmp:  # the pipeline's own cost: PNG and Parquet on a local disk
                results["overhead_local"] = bench_overhead(max(1, 80 // div), os.path.join(tmp, "out"), {}, log)
            # the same onto the S3 server: its request rate bounds this one (measured below)
            results["overhead_s3"] = bench_overhead(max(1, 16 // div), "s3://scale/overhead", options, log)
            results["s3_put_per_s"] = put_rate(Store("s3://scale/rate", options), log)
        if "storage" not in skip:
            results["storage"] = bench_storage(1_000_000 // div, Store("s3://scale/keys", options), log)
        if "site" not in skip:
            from .report_bench import measure_report

            with tempfile.TemporaryDirectory():
                r = measure_report(100_000 // div, log)
            results["site"] = {"units": r["units"], "seconds": round(r["fresh"]["seconds"], 1)
                               if "seconds" in r["fresh"] else r["fresh"]}
    finally:
        server.stop()
    return results


def scale_report(r: dict) -> list[str]:
    """Markdown lines for BENCHMARKS.md."""
    lines = ["", "**At a million items** (benchmarks/scale_bench.py, `make bench-scale`; S3 = the loopback moto "
             "server):", ""]
    if "plan" in r:
        p = r["plan"]
        lines.append(f"- plan of {p['items']:,} items (ResNet-50, `--layers all --units all`): {p['seconds']} s, "
                     f"peak RSS {p['rss_mib']:,} MiB")
    for key, where in (("overhead_local", "a local disk"), ("overhead_s3", "the S3 server")):
        if key in r:
            o = r[key]
            lines.append(f"- pipeline overhead onto {where}, {o['items']:,} items at batch {o['batch']} (synthesis "
                         f"replaced by a test double): {o['ms_per_item']:.2f} ms per item")
    if "s3_put_per_s" in r:
        lines.append(f"- the S3 server's own rate: {r['s3_put_per_s']:,} small PUTs per second from 16 threads")
    if "storage" in r:
        s = r["storage"]
        lines.append(f"- {s['keys']:,} done keys as {s['files_before']:,} parts: resume check {s['resume_s']} s; "
                     f"compaction {s['compaction_s']} s to {s['files_after']} files; resume check after "
                     f"{s['resume_after_s']} s; DuckDB (one layer's units joined with their activations, "
                     f"{s['duckdb_rows']:,} rows) {s['duckdb_before_s']} s on the parts, {s['duckdb_after_s']} s "
                     f"after compaction ({s['duckdb_speedup']}x)")
    if "site" in r:
        lines.append(f"- the site over a {r['site']['units']:,}-unit atlas: {r['site']['seconds']} s")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default="benchmarks/scale.json")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: plan,overhead,storage,site")
    a = ap.parse_args(argv)

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    results = measure_scale(a.quick, set(a.skip.split(",")), log)
    os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(results, f, indent=1)
    log(f"wrote {a.json}")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
