"""Helpers shared by the integration tests: run the CLI as a real process, read what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds

from pipelines.sink import PARTITIONING

REPO = Path(__file__).resolve().parents[1]


def cli_env(env: dict | None = None) -> dict:
    out = dict(os.environ if env is None else env)
    out.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return out


def run_cli(*args, cwd, env=None, check=True, timeout=900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=cwd, env=cli_env(env),
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def tree_digest(out: Path) -> dict:
    """{relative path: SHA-256} of every file under `out`."""
    import hashlib

    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def assert_rerun_does_nothing(args, out: Path, cwd) -> None:
    """Running the same command again prints `nothing to do` and leaves every file under `out` as it was."""
    before = tree_digest(out)
    again = run_cli(*args, cwd=cwd)
    assert "nothing to do" in again.stdout
    assert tree_digest(out) == before


def start_cli(*args, cwd, env=None, log=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines", *args], cwd=cwd, env=cli_env(env),
                            stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)


def unit_rows(out: str, filesystem=None) -> list[dict]:
    """Every row of `<out>/units` (local path, or a bucket path with an fsspec filesystem)."""
    return ds.dataset(f"{out}/units", filesystem=filesystem, format="parquet",
                      partitioning=PARTITIONING).to_table().to_pylist()


def key_of(row: dict) -> tuple:
    return (row["model"], row["snapshot"], row["layer"], row["unit"], row["y"], row["x"], row["seed"],
            row["method"], row["hyperparams"])


def wait_for_parts(s3, prefix: str, n: int, proc, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        s3.fs.invalidate_cache()
        parts = [p for p in s3.fs.find(f"{prefix}/units") if p.endswith(".parquet")] if s3.fs.exists(
            f"{prefix}/units") else []
        if len(parts) >= n:
            return
        assert proc.poll() is None, "the run ended before the test could interrupt it"
        time.sleep(0.2)
    raise AssertionError("no batch was written in time")


def assert_each_key_once_with_png(s3, prefix: str, expected: int) -> list[dict]:
    s3.fs.invalidate_cache()
    rows = unit_rows(prefix, filesystem=s3.fs)
    keys = [key_of(r) for r in rows]
    assert len(keys) == len(set(keys)) == expected
    pngs = [p for p in s3.fs.find(f"{prefix}/images") if p.endswith(".png")]
    assert sorted(f"{prefix}/{r['image']}" for r in rows) == sorted(pngs)
    for r in rows[:3]:
        assert s3.fs.cat_file(f"{prefix}/{r['image']}")[:8] == b"\x89PNG\r\n\x1a\n"
    return rows


# `neuron-atlas atlas` on the small self-loading net of tests/selfloading_net.py (used as built): 96 units
# over two layers, batches of 2 items that take a fraction of a second, so a run writes all the time
SMALL_ATLAS = ["atlas", "--model", "tests.selfloading_net:ONetLike", "--input-size", "48", "--layers", "conv4,dense5",
               "--units", "all", "--steps", "3", "--batch-size", "2"]
