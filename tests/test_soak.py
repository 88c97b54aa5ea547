"""Crash soak (integration): the resume promise under repeated SIGKILL, and under a restart of the S3 server.

One atlas run on the moto S3 server is killed with SIGKILL at 10 seeded random moments and rerun each time.
A moment is measured in progress, not seconds, so the kills land mid-run on a quiet machine as on a loaded
one: each attempt is killed a seeded random 0-0.2 s after it has written a seeded random 1-8 new PNGs. The bucket is versioned, so every PUT leaves a version: at the end every key exists exactly once, no
PNG or Parquet object of an item finished before a kill (its units row existed) got a new version after it,
and the manifest says the run finished (the finished run then compacts its partitions: a Parquet part it
removes must be named as a source by a compact file beside it). A second run has the S3 server SIGKILLed and restarted mid-run (its
request log replayed, as a durable store would come back with its data) and finishes with nothing lost.
"""

from __future__ import annotations

import json
import random
import signal
import time

import pytest

from tests.helpers import SMALL_ATLAS, assert_each_key_once_with_png, run_cli, start_cli, unit_rows, wait_for_parts
from tests.s3server import s3_stack

pytestmark = pytest.mark.integration

KILLS, SEED = 10, 13
ARGS = [*SMALL_ATLAS, "--seeds", "3"]
ITEMS = (32 + 64) * 3  # conv4 and dense5 units, three seeds
MAX_NEW_PNGS = 8  # per attempt before its kill: 10 kills stay well short of ITEMS however fast the machine


def latest_versions(s3, bucket: str) -> dict[str, tuple[str, int]]:
    """key -> (id of its current version, number of versions) of every PNG and Parquet object."""
    out: dict[str, tuple[str, int]] = {}
    for page in s3.client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            if v["Key"].endswith((".png", ".parquet")):
                latest, n = out.get(v["Key"], ("", 0))
                out[v["Key"]] = (v["VersionId"] if v["IsLatest"] else latest, n + 1)
    return out


def merged_sources(s3, bucket: str) -> set[str]:
    """Keys of the Parquet parts that the compact files in the bucket record as merged."""
    import pyarrow.parquet as pq

    s3.fs.invalidate_cache()
    out = set()
    for path in s3.fs.find(bucket):
        if path.rsplit("/", 1)[-1].startswith("compact-"):
            with s3.fs.open(path, "rb") as f:
                names = json.loads(pq.read_metadata(f).metadata[b"neuron-atlas.sources"])
            folder = path[len(bucket) + 1:].rsplit("/", 1)[0]
            out |= {f"{folder}/{name}" for name in names}
    return out


def assert_kept_or_merged(s3, bucket: str, keys) -> None:
    """Every key is still an object, or a Parquet part that a compact file merged."""
    gone = set(keys) - object_keys(s3, bucket)
    assert gone <= merged_sources(s3, bucket), sorted(gone - merged_sources(s3, bucket))[:5]
    assert all(k.endswith(".parquet") for k in gone)


def object_keys(s3, bucket: str) -> set[str]:
    return {o["Key"] for page in s3.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])}


def finished_objects(s3, bucket: str) -> set[str]:
    """Keys of the PNG and Parquet objects of every item whose units row exists."""
    s3.fs.invalidate_cache()
    if not s3.fs.exists(f"{bucket}/run/units"):
        return set()
    parts = [p[len(bucket) + 1:] for p in s3.fs.find(f"{bucket}/run/units") if p.endswith(".parquet")]
    rows = unit_rows(f"{bucket}/run", filesystem=s3.fs)
    return ({f"run/{r['image']}" for r in rows} | set(parts)
            | {p.replace("run/units/", "run/activations/", 1) for p in parts})


def wait_for_pngs(s3, bucket: str, count: int, proc, timeout: float = 300) -> bool:
    """Wait until the run's images/ holds at least `count` PNGs; False when the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        listing = s3.client.list_objects_v2(Bucket=bucket, Prefix="run/images/")
        if listing.get("KeyCount", 0) >= count:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def s3():
    with s3_stack() as stack:
        yield stack


@pytest.fixture
def s3_durable(tmp_path):
    """An S3 server whose restart() brings its objects back (moto's request log, replayed)."""
    with s3_stack(recording=str(tmp_path / "moto-requests.jsonl")) as stack:
        yield stack


def test_ten_sigkills_at_random_moments_then_every_key_once_and_nothing_finished_rewritten(s3, tmp_path):
    bucket = "na-soak"
    s3.client.create_bucket(Bucket=bucket)
    s3.client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    out, rng, t0 = f"s3://{bucket}/run", random.Random(SEED), time.monotonic()
    frozen: dict[str, str] = {}  # finished object -> its version when a kill found it finished
    kills, before = [], 0
    for i in range(KILLS):
        proc = start_cli(*ARGS, "--out", out, cwd=tmp_path, env=s3.env, log=open(tmp_path / f"run{i}.log", "w"))
        new, delay = rng.randint(1, MAX_NEW_PNGS), rng.uniform(0.0, 0.2)
        if wait_for_pngs(s3, bucket, before + new, proc):
            time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        current = latest_versions(s3, bucket)
        done = finished_objects(s3, bucket)
        for key in done:
            frozen.setdefault(key, current[key][0])
        before = sum(k.endswith(".png") for k in current)
        kills.append((new, round(delay, 2), len(unit_rows(f"{bucket}/run", filesystem=s3.fs)) if done else 0))
    last = run_cli(*ARGS, "--out", out, cwd=tmp_path, env=s3.env)
    wall = time.monotonic() - t0

    assert_each_key_once_with_png(s3, f"{bucket}/run", ITEMS)
    final = latest_versions(s3, bucket)
    live = object_keys(s3, bucket)
    rewritten = sorted(k for k, v in frozen.items() if k in live and final[k][0] != v)
    assert not rewritten, rewritten[:5]
    assert_kept_or_merged(s3, bucket, frozen)
    assert 0 < kills[-1][2] < ITEMS, kills  # the kills interrupted a run that still had work left
    manifest = json.loads(s3.fs.cat_file(f"{bucket}/run/manifest.json"))
    run = manifest["runs"][manifest["latest_run"]]
    assert run["status"] == "finished" and run["items"] == ITEMS and run["finished_at"]
    in_flight = sum(n > 1 for k, (_, n) in final.items() if k.endswith(".png"))
    resumed = next(ln for ln in last.stderr.splitlines() if ln.startswith("resuming"))
    print(f"\nsoak: {KILLS} SIGKILLs (new PNGs, then delay, rows present): {kills}; final run: "
          f"{resumed}; {ITEMS} keys once; "
          f"{len(frozen)} finished objects, {len(rewritten)} rewritten; {in_flight} PNGs of in-flight batches "
          f"written again; {wall:.0f} s wall")


def test_s3_server_restart_mid_run_loses_nothing(s3_durable, tmp_path):
    s3 = s3_durable
    bucket = "na-restart"
    s3.client.create_bucket(Bucket=bucket)
    out = f"s3://{bucket}/run"
    log = tmp_path / "run.log"
    proc = start_cli(*ARGS, "--out", out, cwd=tmp_path, env=s3.env, log=open(log, "w"))
    wait_for_parts(s3, f"{bucket}/run", 3, proc)
    written = object_keys(s3, bucket)
    t0, refused = time.monotonic(), s3.proxy.refused
    s3.proxy.outage()  # clients are refused until the new server holds the old one's objects
    s3.server.restart()
    s3.proxy.restore()
    downtime = time.monotonic() - t0
    assert proc.wait(600) == 0, log.read_text()[-2000:]
    rows = assert_each_key_once_with_png(s3, f"{bucket}/run", ITEMS)
    assert len(written) > 3
    assert_kept_or_merged(s3, bucket, written)  # what was there before the restart stayed (or was compacted)
    assert {r["snapshot"] for r in rows} == {next(iter(rows))["snapshot"]}
    manifest = json.loads(s3.fs.cat_file(f"{bucket}/run/manifest.json"))
    assert manifest["runs"][manifest["latest_run"]]["status"] == "finished"
    print(f"\nserver restart: down {downtime:.1f} s (SIGKILL, new process, log replayed); run finished, "
          f"{ITEMS} keys once, {s3.proxy.refused - refused} connections refused meanwhile")
