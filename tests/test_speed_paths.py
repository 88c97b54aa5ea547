"""The fast paths of image AM keep its results: subnormal flushing, progressive resolution (coarse views early
on), views computed per item, and runs whose one actor lives in the driver's process (no Ray)."""

import pytest
import ray
import torch
from torch import nn

from models.errors import UserInputError
from models.preprocess import Preprocessing
from models.registry import NetEntry, register
from models.units import Unit
from pipelines.cli import main
from pipelines.dispatch import Inline, dispatch
from pipelines.cluster import runs_inline
from pipelines.sink import read_units
from pipelines.storage import Store
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.image_am import ImageAMConfig
from tests.test_lucid import LUCID, run


class FixedHead(nn.Module):
    """A net whose classifier takes exactly a 16 x 16 input: it cannot see coarse views."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 16 * 16, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


register(NetEntry("fixedhead", FixedHead, Preprocessing(size=(16, 16)), None, "fixed-size head", (("fc", "0:2"),)))


def test_flushing_subnormals_changes_no_result(tiny):
    items = [(("fc", 1), 0), (("features.2", 2, 4, 4), 3)]
    was = torch.set_flush_denormal(False) and False
    try:
        plain = run(tiny, items, LUCID)
        assert torch.set_flush_denormal(True)
        flushed = run(tiny, items, LUCID)
    finally:
        torch.set_flush_denormal(was)
    assert (plain.images.int() - flushed.images.int()).abs().max() <= 1
    assert torch.allclose(plain.act_final, flushed.act_final, rtol=1e-4, atol=1e-4)


def test_coarse_views_are_smaller_for_the_first_steps_only():
    cfg = ImageAMConfig.build("lucid", transforms="none", coarse=(0.5, 0.25))
    assert cfg.coarse_size((224, 224)) == (112, 112) and cfg.coarse_size((16, 16)) == (8, 8)
    views = cfg.views([0, 1], (16, 16), steps=8)
    x = torch.rand(2, 3, 16, 16)
    assert [tuple(views(x, t).shape[-2:]) for t in range(8)] == [(8, 8)] * 2 + [(16, 16)] * 6
    assert torch.allclose(views(x, 5), x, atol=1e-5)  # no transforms: full-size views are the render itself
    assert cfg.views([0], (16, 16)) is None  # without a step count (positions, fixed heads): no coarse steps
    assert ImageAMConfig.build("lucid", coarse=False).views([0], (16, 16), steps=8)(x[:1], 0).shape[-1] == 16
    with pytest.raises(UserInputError, match="--coarse 1.5:0.5 needs a scale between 0 and 1"):
        ImageAMConfig.build("lucid", coarse=(1.5, 0.5))


def test_coarse_runs_raise_activation_and_leave_each_item_to_its_own_seed():
    actor = SynthesisActor(NetSpec("tinynet", weights="random"))
    items = (WorkItem(Unit("fc", 1), 0), WorkItem(Unit("fc", 3), 7), WorkItem(Unit("fc", 1), 2))
    assert actor._coarse_allowed(Batch(items, LUCID, 20))
    batched = actor.run(Batch(items, LUCID, 20)).results
    assert all(r.act_final > r.act_start for r in batched)
    alone = actor.run(Batch(items[1:2], LUCID, 20)).results[0]
    assert (torch.from_numpy(alone.image).int() - torch.from_numpy(batched[1].image).int()).abs().max() <= 1
    assert alone.act_final == pytest.approx(batched[1].act_final, rel=1e-3, abs=1e-3)
    coarse_free = actor.run(Batch(items[1:2], ImageAMConfig.build("lucid", coarse=False), 20)).results[0]
    assert (alone.image != coarse_free.image).any()  # the coarse steps did run


def test_no_coarse_views_for_positions_or_for_nets_that_cannot_take_them():
    actor = SynthesisActor(NetSpec("tinynet", weights="random"))
    positional = (WorkItem(Unit("features.2", 1, 3, 3), 0), WorkItem(Unit("fc", 1), 0))
    assert not actor._coarse_allowed(Batch(positional, LUCID, 20))
    fixed = SynthesisActor(NetSpec("fixedhead", weights="random"))
    batch = Batch((WorkItem(Unit("fc", 1), 0),), LUCID, 12)
    assert fixed._coarse_allowed(batch) == "fixed"  # coarse views, upsampled to the one size it takes
    (r,) = fixed.run(batch).results  # it runs
    assert r.act_final > r.act_start


def test_inline_dispatch_runs_every_job_once_in_order():
    class Doubler:
        def run(self, x):
            return 2 * x

    seen = []
    dispatch([Inline(Doubler())], [1, 2, 3], lambda a, j: a.run.remote(j), lambda j, v: seen.append((j, v)))
    assert seen == [(1, 2), (2, 4), (3, 6)]
    assert runs_inline("local", None) == (torch.cuda.device_count() <= 1) and runs_inline("inline", 4)
    assert not runs_inline("local", 2) and not runs_inline("local-ray", None) and not runs_inline("auto", None)


def test_a_local_one_actor_run_needs_no_ray(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["atlas", "--model", "tinynet", "--weights", "random", "--layers", "fc", "--units", "0:3", "--seeds", "2",
            "--steps", "6", "--out", str(out)]
    assert main(args) == 0
    assert not ray.is_initialized()
    rows = read_units(Store(str(out))).to_pylist()
    assert sorted((r["unit"], r["seed"]) for r in rows) == [(u, s) for u in range(3) for s in range(2)]
    assert main(args) == 0 and "nothing to do" in capsys.readouterr().out


def test_bad_coarse_flags_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["atlas", "--model", "tinynet", "--coarse", "half", "--out", str(tmp_path)])
    assert e.value.code == 2 and "'half' is not SCALE[:FRACTION]" in capsys.readouterr().err
    assert main(["atlas", "--model", "tinynet", "--weights", "random", "--coarse", "2", "--out", str(tmp_path)]) == 2
    assert "--coarse 2.0:0.5 needs a scale between 0 and 1" in capsys.readouterr().err
