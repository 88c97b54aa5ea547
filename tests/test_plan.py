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
