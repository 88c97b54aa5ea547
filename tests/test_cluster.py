"""A multi-node Ray cluster on one machine (ray.cluster_utils.Cluster: a head that takes no tasks and two
worker nodes): losing a worker node mid-run still yields every key exactly once."""

from __future__ import annotations

import time

import pytest

from tests.helpers import key_of, start_cli, unit_rows

pytestmark = pytest.mark.integration
ARGS = ["atlas", "--layers", "features.3", "--units", "0:16", "--seeds", "1", "--steps", "15", "--batch-size", "2"]


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    loopback = {"node_ip_address": "127.0.0.1"}
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **loopback})
    workers = [c.add_node(num_cpus=2, **loopback) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers
    c.shutdown()


def test_losing_a_worker_node_mid_run_loses_nothing(cluster, tmp_path):
    c, workers = cluster
    out = tmp_path / "out"
    log_path = tmp_path / "run.log"
    # a cluster of CPUs: a joined cluster runs GPU actors unless the run asks for CPUs
    proc = start_cli(*ARGS, "--address", c.address, "--device", "cpu", "--actors", "2", "--out", str(out), cwd=tmp_path,
                     log=open(log_path, "w"))
    deadline = time.time() + 300
    while not list(out.glob("units/**/*.parquet")):
        assert proc.poll() is None and time.time() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.2)
    c.remove_node(workers[0])
    assert proc.wait(600) == 0, log_path.read_text()[-3000:]
    log = log_path.read_text()
    assert "lost" in log, log[-3000:]  # the driver saw the actor go and re-queued its batches
    rows = unit_rows(str(out))
    keys = [key_of(r) for r in rows]
    assert len(keys) == len(set(keys)) == 16
    assert all((out / r["image"]).exists() for r in rows)
