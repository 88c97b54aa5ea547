"""`neuron-atlas doctor` on this machine and on a Ray cluster whose worker nodes declare GPUs that CUDA cannot
drive (fake GPUs: `ray.cluster_utils.Cluster` nodes with `num_gpus`, on a machine with no NVIDIA driver).

It reports every node (the head that takes no work included) and one actor started as a run would, and exits 2
with one line when a GPU run would fail, 0 when it would start (on CPUs, `--device cpu` passes)."""

from __future__ import annotations

import json

import pytest

from tasks.device import cuda_problem
from tests.helpers import run_cli

pytestmark = [pytest.mark.integration,
              # fake GPUs stand for GPUs that CUDA cannot drive: a machine whose CUDA works cannot rehearse that
              pytest.mark.skipif(cuda_problem() is None, reason="this machine can use CUDA")]
LOOPBACK = {"node_ip_address": "127.0.0.1"}


@pytest.fixture(scope="module")
def fake_gpus():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **LOOPBACK})
    for i in range(2):
        # a runtime-env folder per node, as on separate machines: nodes sharing one re-extract the job's
        # working_dir over each other (Ray's working_dir plugin overwrites), killing workers that start meanwhile
        c.add_node(num_cpus=1, num_gpus=1, runtime_env_dir_name=f"runtime_resources_{i + 1}", **LOOPBACK)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def _rows(stdout: str) -> list[str]:
    """The table's node rows (after its header, before the actor's line)."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("NODE"))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("actor:"))
    return lines[start + 1:end]


def test_doctor_on_this_machine_reports_its_node_and_a_cpu_actor(tmp_path):
    r = run_cli("doctor", "--address", "local", "--device", "cpu", cwd=tmp_path, timeout=300)
    rows = _rows(r.stdout)
    assert len(rows) == 1 and "127.0.0.1" in rows[0], r.stdout
    assert "actor: started on cpu" in r.stdout and r.stdout.splitlines()[-1].startswith("ready: 1 node"), r.stdout


def test_doctor_names_gpus_that_cuda_cannot_use_and_exits_2(fake_gpus, tmp_path):
    r = run_cli("doctor", "--address", fake_gpus.address, cwd=tmp_path, check=False, timeout=300)
    text = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in text, text[-3000:]
    rows = _rows(r.stdout)
    assert len(rows) == 3, r.stdout
    head, gpu_rows = rows[0], rows[1:]
    assert "no GPU for Ray" in head and "no nvidia-smi" in head, head
    assert all("CUDA not usable: Found no NVIDIA driver" in row for row in gpu_rows), r.stdout
    actor = next(ln for ln in r.stdout.splitlines() if ln.startswith("actor:"))
    assert "could not start" in actor and "cannot use CUDA" in actor and "--device cpu" in actor, actor
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("neuron-atlas: error:")]
    assert len(errors) == 1 and r.stderr.rstrip().endswith(errors[0]), r.stderr[-2000:]
    assert "not ready: 2 of 2 GPU nodes cannot use CUDA" in errors[0], errors[0]
    assert "NVIDIA driver 580 or newer" in errors[0] and "cluster.yaml's ImageId" in errors[0], errors[0]


def test_doctor_with_device_cpu_passes_on_the_same_cluster(fake_gpus, tmp_path):
    r = run_cli("doctor", "--address", fake_gpus.address, "--device", "cpu", "--json", cwd=tmp_path, check=False,
                timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    report = json.loads(r.stdout)
    nodes = report["nodes"]
    assert len(nodes) == 3 and [n["gpu"] for n in nodes] == [0, 1, 1], nodes
    assert all("Found no NVIDIA driver" in n["cuda_problem"] and not n["cuda_ok"] for n in nodes[1:]), nodes
    assert all(n["error"] is None and n["torch"] and n["smi_error"] == "no nvidia-smi" for n in nodes), nodes
    assert report["actor"]["device"] == "cpu" and report["actor"]["error"] is None, report["actor"]
    assert report["actor"]["node_id"] in {n["node_id"] for n in nodes[1:]}  # the head takes no work
    assert report["ready"], report["verdict"]
    assert report["verdict"].startswith("ready: 3 nodes answered, 0 of 2 GPU nodes can use CUDA (not needed")


def test_a_driver_too_old_for_torchs_cuda_build_is_named_with_the_driver_it_needs():
    from pipelines.doctor import ActorReport, Diagnosis, NodeReport, _verdict

    old = NodeReport("a" * 56, "10.0.1.7", 4, 1, hostname="ip-10-0-1-7", torch="2.14.1+cu130", torch_cuda="13.0",
                     nvidia_smi=[{"name": "NVIDIA A10G", "driver": "535.183.01"}],
                     cuda_problem="The NVIDIA driver on your system is too old (found version 12020)")
    good = NodeReport("b" * 56, "10.0.1.8", 4, 1, hostname="ip-10-0-1-8", torch="2.14.1+cu130", torch_cuda="13.0",
                      nvidia_smi=[{"name": "NVIDIA A10G", "driver": "580.65.06"}], cuda_devices=["NVIDIA A10G"])
    actor = ActorReport(device="cuda:0", node_id="b" * 56)
    ready, verdict = _verdict([old, good], actor, "auto")
    assert not ready and "1 of 2 GPU nodes cannot use CUDA: 10.0.1.7 aaaaaaaa" in verdict, verdict
    assert "NVIDIA driver 580 or newer for CUDA 13.0" in verdict and "--device cpu" in verdict, verdict
    table = Diagnosis("auto", "auto", [old, good], actor, ready, verdict).table()
    assert "1x NVIDIA A10G, driver 535.183.01" in table and "(driver 535.183.01 < 580)" in table, table
    assert "CUDA usable (NVIDIA A10G)" in table and "actor: started on cuda:0 (node bbbbbbbb)" in table, table
    assert _verdict([good], actor, "auto")[0] and _verdict([old], ActorReport(device="cpu"), "cpu")[0]
