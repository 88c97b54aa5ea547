"""Everything runs on the device it is given: the benchmark, `train-generator` and `stats` (fast tier).

The `meta` device stands in for a GPU (tests/device_checks.HostSyncGuard: ops run on shapes, copies to the CPU
and scalar read-backs return zeros). An op that mixes device tensors with host tensors, which on CUDA is the
error "Expected all tensors to be on the same device", is recorded by the guard; every test fails on one.
Benchmark timings are checked against a stand-in device clock: its queued work takes one second and finishes
only when waited for (benchmarks/timing.sync), so a timed region that does not wait for the device at its end
(or reads the host's clock directly) does not measure exactly one second per region.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import dgn_quality, facets_bench, timing
from benchmarks.run import ablation, mixed_units
from benchmarks.step_bench import measure_step
from models.errors import UserInputError
from pipelines.cli import main
from pipelines.stats import resolve_device, shard_placement
from pipelines.train_generator import TrainSpec, train_generator
from tasks.actor import NetSpec, SynthesisActor
from tasks.deepsim import LossWeights
from tasks.image_am import ImageAMConfig
from tests.device_checks import ACCELERATOR, HostSyncGuard
from tests.test_idx import write_split

MNV2 = NetSpec("mobilenet_v2", weights="random")  # the benchmark's net; weights do not matter on `meta`


def mismatches(guard: HostSyncGuard) -> list[str]:
    """The guard's records of ops that mixed device and host tensors. Indexing a device tensor with host indices
    is not one: PyTorch allows it on CUDA (and on meta)."""
    return [v for v in guard.violations if "mixes device tensors" in v and not v.startswith("index.Tensor")]


@pytest.fixture
def device_clock(monkeypatch):
    """benchmarks/timing on a stand-in device whose queued work takes exactly one second (module docstring)."""
    now = [0.0]

    def sync(device) -> None:
        if torch.device(device).type == ACCELERATOR.type:
            now[0] += 1.0

    monkeypatch.setattr(timing, "sync", sync)
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))


def test_the_model_level_ablation_runs_the_plain_module_on_the_actors_device(device_clock):
    with HostSyncGuard(armed=True) as guard:
        actor = SynthesisActor(MNV2, device=ACCELERATOR.type)
        units = mixed_units((("features.3", 0), ("classifier.1", 0)), 2, actor)
        row = ablation(actor, units, ImageAMConfig.from_preset("none"), 2, 2, 4.0, log=lambda m: None)
    assert mismatches(guard) == []
    assert row["plain_s"] == 1.0  # one timed region, closed by waiting for the device
    assert "synthesis_net" not in vars(actor) and "model_input" not in vars(actor)  # the actor is itself again


def test_every_timed_region_of_the_step_benchmark_waits_for_the_device(device_clock):
    steps = 1
    with HostSyncGuard(armed=True) as guard:
        r = measure_step(ACCELERATOR.type, log=lambda m: None, net=MNV2, steps=steps)
    assert mismatches(guard) == []
    one_region = 1.0 / steps / r["batch"] * 1000  # ms per item-step of one second of device work
    assert r["device"] == "meta" and "BatchNorm not folded into the convolutions" in r["ms"]
    assert all(ms == one_region for ms in r["ms"].values()), r["ms"]
    c = r["compile"]
    assert c["eager_ms"] == one_region
    if "error" not in c:  # a machine without a compiler says so and measures the rest
        assert c["compiled_ms"] == one_region and c["compile_s"] == 1.0


def test_the_benchmarks_photo_paths_move_photos_to_the_actors_device():
    with HostSyncGuard(armed=True) as guard:
        fashion = SynthesisActor(NetSpec("fashion_cnn", "random", generator="fashion-fc", generator_weights="random"),
                                 device=ACCELERATOR.type)
        codes = dgn_quality._photo_codes(fashion, torch.rand(4, 1, 28, 28))  # "ablation: codes from real photos"
        cfg, _ = dgn_quality._dgn_settings()
        images, acts, _ = dgn_quality._run_from_codes(fashion, cfg, 2, 1, codes.repeat(3, 1)[:10])
        mnv2 = SynthesisActor(MNV2, device=ACCELERATOR.type)
        pooled = facets_bench._pooled(mnv2, [np.zeros((224, 224, 3), np.uint8)] * 2)
    assert mismatches(guard) == []
    assert codes.device == ACCELERATOR and images.shape == (10, 1, 28, 28) and len(acts) == 10
    assert pooled.device.type == "cpu" and pooled.shape == (2, 1280)


def _train_spec(tmp_path, kind: str, device: str) -> TrainSpec:
    data = tmp_path / "data"
    data.mkdir()
    write_split(data, "train", n=8)
    np.save(tmp_path / "bounds.npy", np.full(512, 2.0, np.float32))
    return TrainSpec(generator="fashion-fc", encoder_model="fashion_cnn", encoder_layer="classifier.2",
                     comparator_layer="features.10", images=str(data), out=str(tmp_path / "out"), steps=2,
                     batch_size=4, encoder_weights="random", checkpoint_every=1, augment="flip",
                     weights=LossWeights(1.0, 0.1, 0.01, 0.1), synthetic_codes=2, synthetic_kind=kind,
                     bounds=str(tmp_path / "bounds.npy"), device=device)


@pytest.mark.parametrize("kind", ["box", "mix"])
def test_train_generator_trains_on_the_given_device_and_checkpoints_on_the_cpu(tmp_path, kind):
    with HostSyncGuard(armed=True) as guard:
        history = train_generator(_train_spec(tmp_path, kind, ACCELERATOR.type), log=lambda m: None)
    assert mismatches(guard) == []
    assert [r["step"] for r in history] == [1, 2]
    reads = [v for v in guard.violations if v.startswith("scalar read-back")]
    assert reads and all("tasks/deepsim.py" in v for v in reads)  # the trainer's per-step losses, nothing more
    for name in ("checkpoint.pt", "generator.pt"):  # device-independent: loads where no GPU (or meta) exists
        state = torch.load(tmp_path / "out" / name, weights_only=True)
        tensors = [t for t in torch.utils._pytree.tree_leaves(state) if isinstance(t, torch.Tensor)]
        assert tensors and {t.device.type for t in tensors} == {"cpu"}


def test_device_flags_resolve_or_fail_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    for bad in ("cuda", "cuda:1", "gpu", "cuda:x"):
        with pytest.raises(UserInputError):
            resolve_device(bad)
    args = ["train-generator", "--generator", "fashion-fc", "--encoder-weights", "random", "--images",
            str(tmp_path), "--out", str(tmp_path / "o"), "--device"]
    for device, says in (("cuda", "torch sees no CUDA device"), ("tpu", "use auto, cpu, cuda or cuda:N")):
        assert main([*args, device]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_stats_tasks_ask_ray_for_a_gpu_whenever_they_may_use_one():
    assert shard_placement("auto", 0) == ("cpu", {})
    assert shard_placement("auto", 2) == ("auto", {"num_gpus": 1})  # decided in the task, which sees its GPU
    assert shard_placement("cpu", 4) == ("cpu", {})
    assert shard_placement("cuda", 1) == ("cuda", {"num_gpus": 1})
    assert shard_placement("cuda:3", 8) == ("cuda", {"num_gpus": 1})  # the task sees only the GPU Ray gave it
    for device, gpus in (("cuda", 0), ("cuda:0", 0.0), ("gpu", 1)):
        with pytest.raises(UserInputError):
            shard_placement(device, gpus)


def _images(folder, n: int = 5) -> list[str]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return sorted(str(p) for p in folder.iterdir())


class _Ref:
    """A finished task's object reference (hashable, as Ray's are)."""

    def __init__(self, value):
        self.value = value


class _TaskRay:
    """Ray's task API as run_stats uses it, on a cluster with `gpus` GPUs: each task runs at once in this process,
    a task given `cuda` on the `meta` stand-in; `options` records what each remote function asked Ray for."""

    def __init__(self, gpus: float):
        self.gpus, self.options, self.devices = gpus, [], []

    def cluster_resources(self) -> dict:
        return {"CPU": 2.0, "GPU": self.gpus}

    def remote(self, fn):
        ray = self

        class Remote:
            def options(self, **kw):
                ray.options.append(kw)
                return self

            def remote(self, *args):
                ray.devices.append(args[-1])
                return _Ref(fn(*args[:-1], ACCELERATOR.type if args[-1] == "cuda" else args[-1]))
        return Remote()

    @staticmethod
    def wait(refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    @staticmethod
    def get(ref):
        return ref.value


def test_stats_encodes_every_shard_on_a_gpu_it_asked_ray_for(monkeypatch, tmp_path):
    import ray

    import pipelines.cluster
    from pipelines.stats import StatsSpec, run_stats

    _images(tmp_path / "imgs")
    fake = _TaskRay(gpus=1.0)
    monkeypatch.setattr(pipelines.cluster, "init_ray", lambda address: None)
    for name in ("cluster_resources", "remote", "wait", "get"):
        monkeypatch.setattr(ray, name, getattr(fake, name))
    spec = StatsSpec(model="tinynet", weights="random", layer="features.2", images=str(tmp_path / "imgs"),
                     out=str(tmp_path / "o"), batch_size=2, shard_size=3, device="cuda")
    with HostSyncGuard(armed=True) as guard:
        s = run_stats(spec, log=lambda m: None)
    assert mismatches(guard) == []
    assert fake.options == [{"num_gpus": 1}] and fake.devices == ["cuda", "cuda"]  # two shards, each on a GPU
    assert s.count == 5 and s.mean.shape == (6 * 8 * 8,) and (tmp_path / "o" / "bounds.npy").exists()
    back = [v for v in guard.violations if "copied to the host at tasks/stats.py" in v]
    assert len(back) == 3  # the codes of each batch (2 + 1, then 2) came from the device


def test_stats_device_cuda_on_a_cluster_without_gpus_is_one_line(monkeypatch, tmp_path, capsys):
    import ray

    import pipelines.cluster

    _images(tmp_path / "imgs")
    monkeypatch.setattr(pipelines.cluster, "init_ray", lambda address: None)  # a cluster of CPUs only
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert main(["stats", "--model", "tinynet", "--weights", "random", "--layer", "features.2", "--images",
                 str(tmp_path / "imgs"), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--device cuda: the Ray cluster has no GPUs" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
