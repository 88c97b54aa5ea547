"""Helpers shared by the integration tests: run the CLI as a real process, read what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
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
