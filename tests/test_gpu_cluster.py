"""The first GPU cluster run, rehearsed on Ray clusters whose nodes declare GPUs that CUDA cannot drive (fake
GPUs: `ray.cluster_utils.Cluster` nodes with `num_gpus`, on a machine with no NVIDIA driver).

Each run must end quickly with one error line and exit 2, never computing on the CPUs nobody asked for:
an actor Ray gave a GPU that torch cannot use, `--actors` beyond the GPUs, `--gpus-per-actor` beyond every
node, a head-only cluster whose GPUs never come (`--wait-gpus`)."""

from __future__ import annotations

import time

import pytest

from tasks.device import cuda_problem
from tests.helpers import run_cli

pytestmark = [pytest.mark.integration,
              # fake GPUs stand for GPUs that CUDA cannot drive: a machine whose CUDA works cannot rehearse that
              pytest.mark.skipif(cuda_problem() is None, reason="this machine can use CUDA")]
ARGS = ["atlas", "--model", "fashion_cnn", "--layers", "features.2", "--units", "0:2", "--seeds", "1", "--steps", "2"]
LOOPBACK = {"node_ip_address": "127.0.0.1"}


def _cluster(gpu_nodes: int):
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **LOOPBACK})
    for i in range(gpu_nodes):
        # a runtime-env folder per node, as on separate machines: nodes sharing one re-extract the job's
        # working_dir over each other, killing workers that start meanwhile
        c.add_node(num_cpus=1, num_gpus=1, runtime_env_dir_name=f"runtime_resources_{i + 1}", **LOOPBACK)
    c.wait_for_nodes()
    return c


@pytest.fixture(scope="module")
def fake_gpus():
    c = _cluster(2)
    yield c
    c.shutdown()


def _fails_in_one_line(tmp_path, *flags, within: float) -> str:
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = run_cli(*ARGS, *flags, "--out", str(out), cwd=tmp_path, check=False, timeout=300)
    took = time.monotonic() - t0
    text = r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("neuron-atlas: error:")]
    assert r.returncode == 2, text[-3000:]
    assert len(errors) == 1 and "Traceback" not in text, text[-3000:]
    assert took < within, (took, text[-2000:])
    assert not list(out.glob("units/**/*.parquet")) and not list(out.glob("images/**/*.png")), "a unit was written"
    return errors[0]


def test_gpus_that_cuda_cannot_use_stop_the_run_with_one_line(fake_gpus, tmp_path):
    line = _fails_in_one_line(tmp_path, "--address", fake_gpus.address, within=120)
    assert "CUDA" in line and "--device cpu" in line, line


def test_more_actors_than_gpus_end_in_one_line(fake_gpus, tmp_path):
    line = _fails_in_one_line(tmp_path, "--address", fake_gpus.address, "--actors", "5", within=60)
    assert "CUDA" in line, line


def test_more_gpus_per_actor_than_any_node_has_is_one_line(fake_gpus, tmp_path):
    line = _fails_in_one_line(tmp_path, "--address", fake_gpus.address, "--gpus-per-actor", "2", within=60)
    assert "--gpus-per-actor 2" in line and "largest has 1 GPU" in line, line


def test_a_run_that_asks_for_cpus_runs_on_the_gpu_cluster(fake_gpus, tmp_path):
    out = tmp_path / "out"
    r = run_cli(*ARGS, "--address", fake_gpus.address, "--device", "cpu", "--out", str(out), cwd=tmp_path,
                timeout=300)
    assert "on cpu" in r.stdout + r.stderr
    assert len(list(out.glob("images/**/*.png"))) == 2


def test_a_head_only_cluster_waits_for_gpus_as_long_as_it_was_told(tmp_path):
    c = _cluster(0)
    try:
        t0 = time.monotonic()
        line = _fails_in_one_line(tmp_path, "--address", c.address, "--wait-gpus", "10", within=45)
        assert time.monotonic() - t0 >= 10
        assert "within 10 s" in line and "--device cpu" in line, line
    finally:
        c.shutdown()
