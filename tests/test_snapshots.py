"""Snapshot sweeps, fast tier: step parsing and labels, --pattern, --every/--steps, the completeness rule, the
polling loop on a fake clock, the tracking table and pictures, actors loading a snapshot's weights once per
group of batches, and bad input exiting 2 with one line."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from models.errors import UserInputError
from models.units import Unit
from pipelines.cli import main
from pipelines.keys import ItemKey
from pipelines.snapshots.checkpoints import (Listed, StepRange, StepSelection, compile_pattern, find_checkpoints,
                                             parse_step, parse_step_range, snapshot_label)
from pipelines.snapshots.completeness import Completeness
from pipelines.snapshots.follow import Round, watch
from pipelines.snapshots.snapshots_cmd import _split_steps
from pipelines.snapshots.tracking import SnapshotInfo, Tracker
from pipelines.storage import Store
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.image_am import ImageAMConfig
from tests.conftest import tiny_net


@pytest.mark.parametrize("rel, step", [("ckpt_000120.pt", 120), ("run3/epoch3-step1500.pth", 1500),
                                       ("model-7.ckpt", 7), ("w.12.bin", 12), ("ckpt.pt", None),
                                       ("ckpt_100.pt.done", None), ("ckpt_100.pt.json", None),
                                       ("ckpt_100.txt", None), ("notes_5.md", None)])
def test_default_step_is_the_last_integer_of_a_checkpoint_file_name(rel, step):
    assert parse_step(rel) == step


def test_pattern_step_group_matches_the_path_under_the_prefix():
    p = compile_pattern(r"checkpoint-(?P<step>\d+)/model\.bin")
    assert parse_step("checkpoint-2500/model.bin", p) == 2500
    assert parse_step("checkpoint-2500/optimizer.bin", p) is None
    assert parse_step("checkpoint-2500/model.bin.done", p) is None  # markers never are checkpoints
    assert parse_step("it_3_v2.pt", compile_pattern(r"it_(?P<step>\d+)_")) == 3
    with pytest.raises(UserInputError, match="no named group 'step'"):
        compile_pattern(r"ckpt_(\d+)")
    with pytest.raises(UserInputError, match="is not a regular expression"):
        compile_pattern(r"ckpt_(?P<step>\d+")


def test_labels_are_zero_padded_so_they_sort_in_step_order():
    steps = [5, 100, 20, 100000, 0]
    assert sorted(snapshot_label(s) for s in steps) == [snapshot_label(s) for s in sorted(steps)]
    assert snapshot_label(1200) == "000001200"


def test_every_and_steps_select_training_steps():
    assert [s for s in range(0, 60, 5) if StepSelection(every=10).keeps(s)] == [0, 10, 20, 30, 40, 50]
    r = parse_step_range("100:500:100")
    assert [s for s in range(0, 700, 50) if StepSelection(steps=r).keeps(s)] == [100, 200, 300, 400]
    assert parse_step_range("1000:") == StepRange(1000, None, 1)
    assert parse_step_range(":300") == StepRange(0, 300, 1)
    assert parse_step_range("0::500") == StepRange(0, None, 500)
    for bad in ("5", "a:b", "10:5", "0:10:0", "1:2:3:4"):
        with pytest.raises(ValueError):
            parse_step_range(bad)
    with pytest.raises(UserInputError, match="--every 0 must be at least 1"):
        StepSelection(every=0)
    with pytest.raises(UserInputError, match="not both"):
        StepSelection(every=2, steps=r)
    assert _split_steps([64, r]) == (64, r) and _split_steps(["0:10"]) == (None, StepRange(0, 10, 1))
    assert _split_steps(None) == (None, None) and _split_steps(32) == (32, None)


def listing(*names, size=10, stamp="1"):
    return {n: Listed(n, size, stamp) for n in names}


def test_checkpoints_are_sorted_by_step_and_clashes_and_stepless_files_reported():
    found, no_step, clashes = find_checkpoints(
        listing("b_100.pt", "a_20.pt", "c_3.pth", "last.pt", "a_20.pt.done", "a_20.pt.json", "log.txt", "z_100.pt"),
        "s3://bkt/run", None)
    assert [c.step for c in found] == [3, 20, 100]
    assert [c.uri for c in found] == ["s3://bkt/run/c_3.pth", "s3://bkt/run/a_20.pt", "s3://bkt/run/b_100.pt"]
    assert no_step == ["last.pt"]
    assert [(d.rel, k.rel) for d, k in clashes] == [("z_100.pt", "b_100.pt")]


def test_marker_rule_never_reads_an_unmarked_checkpoint_once_markers_are_in_use():
    c = Completeness(settle_s=5)
    files = listing("a_1.pt", "a_1.pt.done", "a_2.pt")
    found, _, _ = find_checkpoints(files, "/r", None)
    for now in (0, 100, 1000):  # a_2 is still; without its marker it is never complete
        split = c.split(found, files, now)
        assert split.markers and [x.step for x in split.complete] == [1] and [x.step for x in split.pending] == [2]
    files["a_2.done"] = Listed("a_2.done", 0, "2")  # <stem>.done works too
    assert [x.step for x in c.split(find_checkpoints(files, "/r", None)[0], files, 1001).complete] == [1, 2]


def test_stability_rule_needs_the_same_size_and_stamp_at_two_polls_settle_apart():
    c = Completeness(settle_s=5)

    def poll(now, size, stamp):
        files = listing("a_1.pt", size=size, stamp=stamp)
        return c.split(find_checkpoints(files, "/r", None)[0], files, now)

    assert poll(0, 10, "t0").pending  # first sighting
    assert poll(6, 20, "t1").pending  # grew: the clock starts again
    assert poll(9, 20, "t1").pending  # same, but only 3 s later
    assert poll(11, 20, "t1").complete  # same for 5 s: complete
    assert poll(50, 0, "t2").pending and poll(100, 0, "t2").pending  # an empty file is never complete


class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, s):
        self.slept.append(s)
        self.now += s

    def clock(self):
        return self.now


def test_follow_until_idle_stops_after_that_long_without_activity():
    t = FakeTime()
    script = iter([Round(processed=1), Round(), Round(changed=True), Round(), Round(), Round(), Round()])
    rounds = watch(lambda: next(script), follow=True, interval=2, until_idle=5, log=lambda m: None,
                   sleep=t.sleep, clock=t.clock)
    # activity at t=0 and t=4 (a changed listing); idle from 4, so the last poll is at 9
    assert rounds == 6 and t.now == 9 and t.slept == [2, 2, 2, 2, 1]


def test_once_looks_again_one_interval_later_when_checkpoints_may_still_be_written():
    t, lines = FakeTime(), []
    script = iter([Round(pending=2), Round(processed=1, pending=1)])
    assert watch(lambda: next(script), follow=False, interval=30, sleep=t.sleep, clock=t.clock,
                 log=lines.append) == 2
    assert t.slept == [30] and "next run takes them" in lines[-1]
    assert watch(lambda: Round(processed=3), follow=False, interval=30, sleep=t.sleep, clock=t.clock,
                 log=lines.append) == 1


def test_tracking_table_filmstrips_and_plots(tmp_path):
    store = Store(str(tmp_path))
    tr = Tracker(store, "tiny", "image", '{"steps":3}', tile=16)
    infos = {}
    for step in (0, 50, 100):
        label = snapshot_label(step)
        infos[label] = SnapshotInfo(step, f"/c/ckpt_{step}.pt", {"val_accuracy": step / 100} if step else None)
        for unit in (1, 3):
            for seed in (0, 1):
                key = ItemKey("tiny", label, "fc", unit, None, None, seed, "image", '{"steps":3}')
                image = torch.full((8, 8, 3), step + unit, dtype=torch.uint8).numpy()
                tr.add(key, 0.0, float(step + unit + seed), image)
    assert tr.refresh(infos)
    table = pq.read_table(tmp_path / tr.dir / "steps.parquet").to_pylist()
    assert len(table) == 12
    assert [(r["unit"], r["seed"], r["step"]) for r in table[:4]] == [(1, 0, 0), (1, 0, 50), (1, 0, 100), (1, 1, 0)]
    assert [r["val_accuracy"] for r in table[:3]] == [None, 0.5, 1.0]
    assert json.loads(table[1]["metrics"]) == {"val_accuracy": 0.5}
    assert table[0]["image"] == "images/tiny/000000000/fc/1_s0_image-" + ItemKey(
        "tiny", "", "", 0, None, None, 0, "image", '{"steps":3}').hp_digest + ".png"
    strip = Image.open(tmp_path / table[0]["filmstrip"])
    assert strip.size == (3 * 16, 2 * (16 + 14 + 18))  # three snapshots, two seeds with their titles
    assert Image.open(tmp_path / table[0]["plot"]).size == (640, 360)
    assert not tr.refresh(infos)  # nothing changed: nothing written
    again = Tracker(store, "tiny", "image", '{"steps":3}', tile=16)
    for k, row in tr._rows.items():
        again._rows[k] = row
    assert not again.refresh(infos)  # a new process sees the same table on storage


def test_actor_loads_a_snapshots_weights_once_per_group_of_batches(tmp_path):
    paths = []
    for i in range(2):
        state = tiny_net().state_dict()  # (tiny_net seeds the global RNG itself)
        torch.manual_seed(10 + i)
        path = tmp_path / f"ckpt_{i}.pt"
        torch.save({k: torch.randn_like(v) for k, v in state.items()}, path)
        paths.append(str(path))
    actor = SynthesisActor(NetSpec("tinynet", weights="built"))
    cfg = ImageAMConfig.from_preset("none")

    def batch(uri, units=(1, 3)):
        return Batch(tuple(WorkItem(Unit("fc", u), 0) for u in units), cfg, 3, weights=uri)

    results = [actor.run(batch(u)) for u in (paths[0], paths[0], paths[1], paths[1], None)]
    assert actor.weight_loads == 2
    assert results[0].load_seconds > 0 and results[1].load_seconds == 0 and results[4].load_seconds == 0
    fresh = SynthesisActor(NetSpec("tinynet", weights=paths[1])).run(batch(None))
    assert [r.act_final for r in fresh.results] == [r.act_final for r in results[2].results]
    assert [r.act_final for r in results[0].results] != [r.act_final for r in results[2].results]
    gone = actor.run(batch(str(tmp_path / "deleted_by_the_trainer.pt")))  # rotated away since the driver read it
    assert gone.results == [] and "not found" in gone.error and actor.weights == paths[1]


@pytest.mark.parametrize("args, message", [
    (["--checkpoints", ""], "--checkpoints is missing or empty"),
    ([], "--checkpoints is missing or empty"),
    (["--checkpoints", "{missing}"], "no checkpoints under --checkpoints"),
    (["--checkpoints", "{ckpts}", "--pattern", r"ckpt_(\d+)"], "has no named group 'step'"),
    (["--checkpoints", "{ckpts}", "--every", "0"], "--every 0 must be at least 1"),
    (["--checkpoints", "{ckpts}", "--every", "2", "--steps", "0:10"], "not both"),
    (["--checkpoints", "{ckpts}", "--weights", "{ckpts}/ckpt_1.pt"], "drop --weights"),
    (["--checkpoints", "{ckpts}", "--steps", "3", "--steps", "4"], "given twice"),
    (["--checkpoints", "{ckpts}", "--layers", "nope"], "unknown layer 'nope'"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    torch.save(tiny_net().state_dict(), ckpts / "ckpt_1.pt")
    out = tmp_path / "out"
    argv = ["snapshots", "--model", "tests.selfloading_net:ONetLike", "--input-size", "48", "--layers", "dense5",
            "--out", str(out)] + [a.format(ckpts=ckpts, missing=tmp_path / "nothing") for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neuron-atlas: error: ") and message in err[0], err
    assert not out.exists()


def test_checkpoints_and_steps_may_come_from_a_config_file(tmp_path):
    from pipelines.cli import build_parser, _apply_config

    config = tmp_path / "run.toml"
    config.write_text('checkpoints = "s3://bucket/run/ckpts"\nevery = 1000\nsteps = 64\n')
    parser = build_parser()
    argv = ["snapshots", "--config", str(config)]
    _apply_config(parser, argv)
    args = parser.parse_args(argv)
    assert (args.checkpoints, args.every, _split_steps(args.steps)) == ("s3://bucket/run/ckpts", 1000, (64, None))
    both = ["snapshots", "--config", str(config), "--steps", "0:5000"]  # the range joins the configured count
    _apply_config(parser, both)
    assert _split_steps(parser.parse_args(both).steps) == (64, StepRange(0, 5000, 1))
    other = ["snapshots", "--config", str(config), "--steps", "32"]  # the command line's count wins
    assert _split_steps(parser.parse_args(other).steps) == (32, None)


def test_bad_steps_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["snapshots", "--checkpoints", "x", "--steps", "ten"])
    assert e.value.code == 2 and "training steps" in capsys.readouterr().err


def test_filmstrip_frames_of_an_earlier_run_are_read_from_images(tmp_path):
    # a resumed run has no image in memory for keys written before it started
    store = Store(str(tmp_path))
    tr = Tracker(store, "tiny", "image", "{}", tile=16)
    key = ItemKey("tiny", snapshot_label(1), "fc", 0, None, None, 0, "image", "{}")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    store.write_bytes(key.image_path, buf.getvalue())
    tr.add(key, 0.0, 1.0)  # no image in memory
    assert tr.refresh({snapshot_label(1): SnapshotInfo(1, "/c/1.pt")})
    assert Image.open(tmp_path / tr.filmstrip_path("fc", 0, None, None)).getpixel((8, 18 + 8)) == (200, 10, 10)
