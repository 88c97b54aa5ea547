"""`neuron-atlas plan` / `atlas --dry-run`: per-layer items, done, bytes and time; writes nothing."""

import json

import pytest

from pipelines.cli import main


def test_plan_writes_nothing_and_counts_items_per_layer(tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["plan", "--model", "tinynet", "--weights", "random", "--layers", "features.*,fc", "--units", "0:2",
                 "--seeds", "2", "--steps", "4", "--out", str(out), "--json", "--calibration-steps", "1"])
    assert code == 0 and not out.exists()
    est = json.loads(capsys.readouterr().out)
    assert [(lay["layer"], lay["items"], lay["done"]) for lay in est["layers"]] == [
        ("features.0", 4, 0), ("features.1", 4, 0), ("features.2", 4, 0), ("features.3", 4, 0), ("fc", 4, 0)]
    assert all(lay["seconds_per_batch_step"] > 0 and lay["bytes"] > 0 for lay in est["layers"])
    total = est["total"]["seconds"]
    assert total["1"] >= total["4"] >= total["16"] > 0


def test_plan_counts_what_a_run_already_did_and_dry_run_is_the_same(tmp_path, capsys):
    from pipelines.atlas_cmd import spec_from_args
    from pipelines.cli import build_parser
    from pipelines.runner import remaining
    from pipelines.sink import write_batch
    from pipelines.spec import plan
    from tasks.actor import Batch, SynthesisActor

    out = tmp_path / "atlas"
    flags = ["--model", "tinynet", "--weights", "random", "--layers", "fc", "--units", "0:4", "--seeds", "1",
             "--steps", "3", "--style", "yosinski", "--out", str(out)]
    p = plan(spec_from_args(build_parser().parse_args(["atlas", *flags])))
    first = p.items[:3]  # a run that wrote 3 of its 4 items, as a killed run leaves them
    actor = SynthesisActor(p.spec.net, device="cpu")
    r = actor.run(Batch(tuple(w for _, w in first), p.spec.config, 3))
    write_batch(p.spec.store(), [k for k, _ in first], r.results, 3, r.device)
    assert len(remaining(p, {k.as_tuple() for k, _ in first}, log=lambda m: None)) == 1
    before = sorted(q.relative_to(out) for q in out.rglob("*"))
    assert main(["atlas", *flags, "--dry-run", "--json", "--calibration-steps", "1"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["layers"][0]["items"] == 4 and est["layers"][0]["done"] == 3 and est["layers"][0]["todo"] == 1
    assert sorted(q.relative_to(out) for q in out.rglob("*")) == before  # nothing written
    assert main(["plan", *flags, "--no-calibrate"]) == 0
    text = capsys.readouterr().out
    assert "fc" in text and "total" in text


@pytest.mark.parametrize("flag,value", [("--calibration-steps", "0"), ("--estimate-actors", "0,2")])
def test_bad_plan_flags_are_one_line(flag, value, capsys):
    code = main(["plan", "--model", "tinynet", "--weights", "random", "--layers", "fc", flag, value])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]


def test_snapshots_and_topk_dry_runs_count_their_items_and_write_nothing(tmp_path, capsys):
    import numpy as np
    import torch
    from PIL import Image

    from tests.conftest import tiny_net

    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    for step in (10, 20, 30):
        torch.save(tiny_net().state_dict(), ckpts / f"ckpt_{step:06d}.pt")
    out = tmp_path / "never"
    assert main(["snapshots", "--model", "tinynet", "--checkpoints", str(ckpts), "--every", "10", "--layers", "fc",
                 "--units", "0:2", "--seeds", "2", "--steps", "2", "--style", "yosinski", "--out", str(out),
                 "--dry-run", "--json", "--calibration-steps", "1"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["total"]["items"] == 3 * 2 * 2 and est["total"]["seconds"]["1"] > 0

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    assert main(["topk", "--model", "tinynet", "--weights", "random", "--layers", "fc,features.2",
                 "--images", str(photos), "--k", "2", "--out", str(out), "--dry-run", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    (row,) = est["layers"]
    assert row["items"] == 5 and row["done"] == 0 and row["bytes"] > 0 and est["total"]["seconds"]["1"] > 0
    assert not out.exists()


_FLAGS = ["--model", "tinynet", "--weights", "random", "--layers", "features.3,fc", "--units", "0:2", "--seeds", "2",
          "--steps", "4", "--calibration-steps", "3"]


class _FakeGpuActor:
    """A SynthesisActor on the CPU that says it is on a GPU and reports `seconds_per_step` x steps as its own
    synthesis time, whatever the wall time was."""

    def __init__(self, net, seconds_per_step: float, **kwargs):
        from tasks.actor import SynthesisActor

        self.real = SynthesisActor(net, device="cpu", **kwargs)
        self.seconds_per_step = seconds_per_step
        self.steps: list[int] = []

    def ping(self) -> str:
        return "cuda:0"

    def run(self, batch):
        from dataclasses import replace

        self.steps.append(batch.steps)
        return replace(self.real.run(batch), seconds=self.seconds_per_step * batch.steps)


def _no_pool(*args, **kwargs):
    raise AssertionError("an actor was started")


def test_calibration_uses_the_actors_own_seconds_device_and_batch_size(tmp_path, capsys, monkeypatch):
    from pipelines import cluster
    from pipelines.dispatch import Inline
    from tasks.actor import SynthesisActor

    started = []

    def fake_start_pool(cls, args, kwargs, placement, log=print):
        assert cls is SynthesisActor
        started.append((placement, _FakeGpuActor(*args, 7.0, **kwargs)))
        return cluster.Pool([Inline(started[-1][1])], "cuda", "a fake cluster")

    monkeypatch.setattr(cluster, "start_pool", fake_start_pool)
    assert main(["plan", *_FLAGS, "--address", "auto", "--actors", "8", "--out", str(tmp_path / "o"), "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    ((placement, actor),) = started
    assert placement.address == "auto" and placement.actors == 1  # one actor, where the run's would be
    assert actor.steps == [2, 3, 2, 3]  # per layer: the warm-up, then --calibration-steps
    assert est["device"] == "cuda:0" and est["batch_size"] == 64  # the pool's device, not this CPU's
    for lay in est["layers"]:
        assert lay["seconds_per_batch_step"] == 7.0 and lay["batch_items"] == 4 and lay["bytes_per_item"] > 0
        assert lay["batches"] == 1 and lay["seconds_one_actor"] == 7.0 * 4


def test_a_calibration_file_gives_the_same_figures_and_starts_no_actor(tmp_path, capsys, monkeypatch):
    from pipelines import cluster

    flags = [*_FLAGS, "--out", str(tmp_path / "o"), "--json"]
    assert main(["plan", *flags]) == 0
    written = capsys.readouterr().out
    (tmp_path / "cal.json").write_text(written)
    monkeypatch.setattr(cluster, "start_pool", _no_pool)
    assert main(["atlas", *flags, "--dry-run", "--calibration", str(tmp_path / "cal.json")]) == 0
    first, again = json.loads(written), json.loads(capsys.readouterr().out)
    assert again["calibration_s"] == 0 and again["total"] == first["total"]
    assert (again["device"], again["batch_size"]) == (first["device"], first["batch_size"])
    assert again["layers"] == first["layers"]


def test_a_calibration_file_is_scaled_to_the_runs_batch_and_lacking_layers_are_uncalibrated(tmp_path, capsys,
                                                                                           monkeypatch):
    from pipelines import cluster

    cal = {"device": "cuda:0", "batch_size": 64,
           "layers": [{"layer": "fc", "seconds_per_batch_step": 0.01, "bytes_per_item": 100.0, "batch_items": 2}]}
    (tmp_path / "cal.json").write_text(json.dumps(cal))
    monkeypatch.setattr(cluster, "start_pool", _no_pool)
    assert main(["plan", *_FLAGS, "--out", str(tmp_path / "o"), "--json", "--calibration",
                 str(tmp_path / "cal.json")]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["device"] == "cuda:0" and est["batch_size"] == 64  # the file's device decides the batch size
    features, fc = est["layers"]
    assert features["seconds_per_batch_step"] is None and est["total"]["seconds"]["1"] is None
    assert fc["seconds_per_batch_step"] == pytest.approx(0.01 * 4 / 2) and fc["bytes"] == 400
    assert any("features.3" in n and "uncalibrated" in n for n in est["notes"])
    assert any("scaled linearly per item" in n and "fc 2 -> 4" in n for n in est["notes"])


@pytest.mark.parametrize("content", [None, "not json {", '{"device": "cpu", "layers": []}',
                                     ('{"device": "cpu", "batch_size": 10, "layers": [{"layer": "fc", '
                                      '"seconds_per_batch_step": "fast"}]}'), "[1, 2]"])
def test_a_bad_calibration_file_is_one_line(content, tmp_path, capsys, monkeypatch):
    from pipelines import cluster

    path = tmp_path / "cal.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(cluster, "start_pool", _no_pool)
    assert main(["plan", *_FLAGS, "--calibration", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--calibration {path}" in err[0]


@pytest.mark.integration
def test_plan_calibrates_on_a_ray_actor_where_the_run_would_place_it(tmp_path):
    """local-ray: the calibration actor is a Ray worker (results through ray.get), not this process."""
    from tests.helpers import run_cli

    proc = run_cli("plan", "--model", "fashion_cnn", "--weights", "random", "--layers", "classifier.6", "--units",
                   "0:2", "--seeds", "1", "--steps", "2", "--calibration-steps", "1", "--address", "local-ray",
                   "--device", "cpu", "--out", str(tmp_path / "never"), "--json", cwd=tmp_path)
    est = json.loads(proc.stdout)
    assert "actors: 1 on cpu, this machine only (--address local)" in proc.stderr
    assert est["device"] == "cpu" and est["batch_size"] == 10 and not (tmp_path / "never").exists()
    (layer,) = est["layers"]
    assert layer["seconds_per_batch_step"] > 0 and layer["bytes_per_item"] > 0 and layer["batch_items"] == 2
