"""Where actors run and what they do with the device they get (pipelines/cluster.py, tasks/device.py): the
address rule, the flags' bounds, GPU pools that grow as GPUs join and never wait without a bound, actors that
refuse a GPU they cannot use, and batches that survive running out of memory with the same results."""

from __future__ import annotations

import time

import pytest
import ray
import torch

import pipelines.cluster as cluster
from models.errors import DeviceError, UserInputError
from models.units import Unit
from pipelines.cluster import Placement, resolve_address
from pipelines.dispatch import Inline, call, dispatch
from pipelines.runner import batch_for_memory
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem, split_batch
from tasks.device import DeviceActor, cuda_problem, pick_device
from tasks.image_am import ImageAMConfig

LUCID = ImageAMConfig.build("lucid", coarse=False)


def test_the_default_address_is_the_cluster_ray_address_names_when_it_answers(monkeypatch):
    lines = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None, lines.append) == "local" and not lines
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # the discard port: nothing answers
    assert resolve_address(None, lines.append) == "local"
    assert lines == ["RAY_ADDRESS=127.0.0.1:9 does not answer; running on this machine only (--address local)"]
    monkeypatch.setattr(cluster, "_answers", lambda address, timeout=2.0: True)
    assert resolve_address(None, lines.append) == "127.0.0.1:9"
    assert resolve_address("local", lines.append) == "local"  # an explicit address is never overridden


@pytest.mark.parametrize("kwargs, words", [
    (dict(gpus_per_actor=0), "--gpus-per-actor 0 must be more than 0"),
    (dict(gpus_per_actor=-1), "--device cpu"),
    (dict(actors=0), "--actors 0"),
    (dict(wait_gpus=-1), "--wait-gpus"),
    (dict(device="tpu"), "--device 'tpu'"),
])
def test_placements_nothing_could_host_are_one_line(kwargs, words):
    with pytest.raises(UserInputError, match=words.replace("(", r"\(")):
        Placement(**kwargs)
    Placement(gpus_per_actor=0, device="cpu")  # CPU actors take no GPU: nothing to check


def test_an_actor_given_a_gpu_that_torch_cannot_use_refuses_it_in_one_line():
    if cuda_problem() is None:
        pytest.skip("this machine can use CUDA")
    with pytest.raises(DeviceError, match="cannot use CUDA: .*or run on CPUs with --device cpu"):
        pick_device("cuda")
    actor = SynthesisActor(NetSpec("tinynet", weights="random"), device="cuda")  # loads nothing
    with pytest.raises(DeviceError):
        actor.ping()  # the driver's first call: the run stops before any work (pipelines/cluster.py)
    assert not hasattr(actor, "target")
    assert isinstance(actor, DeviceActor) and SynthesisActor(NetSpec("tinynet", weights="random")).ping() == "cpu"


class _Nodes:
    """ray.nodes() of a cluster whose GPU nodes join over time."""

    def __init__(self, *gpus: float):
        self.gpus = list(gpus)

    def __call__(self):
        return [{"Alive": True, "Resources": {"CPU": 4.0, **({"GPU": g} if g else {})}} for g in self.gpus]


def test_a_gpu_pool_grows_as_gpus_join_up_to_the_actors_asked_for(monkeypatch):
    nodes, asked = _Nodes(0, 1), []
    monkeypatch.setattr(ray, "nodes", nodes)
    monkeypatch.setattr(cluster, "_ask_autoscaler", asked.append)
    started = iter(range(100))
    pool = cluster.Pool([next(started)], "cuda", "a cluster", lambda: next(started), 3, 1.0)
    assert pool.grow() == []  # nothing joined
    nodes.gpus += [1, 1, 1]
    pool._next_look = 0.0
    assert pool.grow() == [1, 2] and pool.actors == [0, 1, 2]  # up to --actors 3, not the 4 GPUs
    assert asked[-1] == []  # every actor placed: the standing request to the autoscaler is withdrawn
    pool._next_look = 0.0
    assert pool.grow() == []
    unbounded = cluster.Pool([0], "cuda", "a cluster", lambda: "new", None, 0.5)
    assert len(unbounded.grow()) == 7  # --actors unset: as many as the GPUs hold (4 GPUs, 2 actors each)


def test_gpus_per_actor_that_no_node_has_is_one_line_and_no_gpu_is_a_bounded_wait(monkeypatch):
    nodes, asked = _Nodes(0, 1, 1), []
    monkeypatch.setattr(ray, "nodes", nodes)
    monkeypatch.setattr(cluster, "_ask_autoscaler", asked.append)
    args = (object, (), {}, Placement(gpus_per_actor=2), "the Ray cluster at x", False, print)
    with pytest.raises(UserInputError, match="--gpus-per-actor 2 fits no node .* the largest has 1 GPU;"):
        cluster._gpu_pool(*args)
    nodes.gpus = [0]
    t0 = time.monotonic()
    with pytest.raises(UserInputError, match=r"no GPU for an actor joined .* within 0.3 s \(it has no GPU\)"):
        cluster._wait_for_gpus(Placement(wait_gpus=0.3, actors=2), "the Ray cluster at x", lambda m: None)
    assert time.monotonic() - t0 < 3
    assert asked[0] == [{"GPU": 1.0}] * 2 and asked[-1] == []  # asked for the run's GPUs, withdrawn at the end


def test_split_batches_keep_a_units_seeds_together_when_they_form_a_group():
    a, b = [WorkItem(Unit("fc", c), s) for c in (1,) for s in range(3)], [WorkItem(Unit("fc", 2), 0)]
    plain = Batch(tuple(a + b), LUCID, 4)
    assert [len(h.items) for h in split_batch(plain)] == [2, 2]
    grouped = Batch(tuple(a + b), LUCID, 4, diversity=(1.0, None))
    assert [h.items for h in split_batch(grouped)] == [tuple(a), tuple(b)]
    assert split_batch(Batch(tuple(a), LUCID, 4, diversity=(1.0, None))) is None  # one group: cannot be cut
    assert split_batch(Batch(tuple(b), LUCID, 4)) is None


def test_running_out_of_memory_halves_the_batch_and_changes_no_result(capsys):
    items = tuple(WorkItem(Unit("fc", c), s) for c in range(3) for s in range(2))
    batch = Batch(items, LUCID, 6)
    whole = SynthesisActor(NetSpec("tinynet", weights="random")).run(batch)

    class SmallDevice(SynthesisActor):
        sizes: list = []

        def _run(self, b):
            self.sizes.append(len(b.items))
            if len(b.items) > 2:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return super()._run(b)

    actor = SmallDevice(NetSpec("tinynet", weights="random"))
    parts = actor.run(batch)
    assert [r.item for r in parts.results] == list(items)
    assert all((p.image == w.image).all() for p, w in zip(parts.results, whole.results))
    assert [p.act_final for p in parts.results] == pytest.approx([w.act_final for w in whole.results])
    assert "out of memory" in capsys.readouterr().err
    actor.sizes.clear()
    actor.run(batch)  # later batches are cut to the size that fitted, without failing first
    assert max(actor.sizes) <= 2  # never tried a size that did not fit


def test_gpu_batches_fill_most_of_the_free_memory_within_bounds():
    assert batch_for_memory(per_item=100e6, free=10e9) == 80
    assert batch_for_memory(per_item=1e6, free=80e9) == 512
    assert batch_for_memory(per_item=20e9, free=1e9) == 1


def test_bf16_runs_the_net_under_autocast_and_reports_fp32_activations():
    batch = Batch((WorkItem(Unit("features.2", 0), 0),), LUCID, 24)
    fp32 = SynthesisActor(NetSpec("tinynet", weights="random", precision="fp32")).run(batch).results[0]
    bf16 = SynthesisActor(NetSpec("tinynet", weights="random", precision="bf16")).run(batch).results[0]
    assert bf16.act_final > bf16.act_start + 0.05  # it still climbs, to about where fp32 gets
    assert bf16.act_final == pytest.approx(fp32.act_final, abs=0.01)
    assert bf16.activation.dtype.name == "float32"


def test_call_reads_inline_and_ray_actors_alike():
    class Echo:
        def ping(self, x=1):
            return x

    assert call(Inline(Echo()), "ping", 3) == 3


@pytest.mark.integration
def test_dispatch_gives_work_to_actors_that_join_mid_run():
    ray.init(address="local", include_dashboard=False, logging_level="ERROR", num_cpus=2)
    try:
        @ray.remote(num_cpus=1)
        class Worker:
            def ping(self):
                return "cpu"

            def run(self, job):
                time.sleep(0.2)
                return job, id(self)

        joined = []

        def grow():
            if joined:
                return []
            joined.append(Worker.remote())
            return list(joined)

        seen, logs = [], []
        dispatch([Worker.remote()], list(range(40)), lambda a, j: a.run.remote(j),
                 lambda j, v: seen.append(v), logs.append, grow=grow)
        assert sorted(j for j, _ in seen) == list(range(40))  # every job once
        assert len({w for _, w in seen}) == 2 and any("starting on a GPU that joined" in m for m in logs)
    finally:
        ray.shutdown()
