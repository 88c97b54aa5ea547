"""Diversity (tasks/diversity.py): a unit's seeds optimized as one group, pushed apart in Gram-matrix style,
each group on its own whatever else shares the batch, whole groups in every batch and on resume."""

from __future__ import annotations

import glob
import itertools
import json
import shutil

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from models.units import Unit
from pipelines.cli import main
from pipelines.keys import ItemKey
from pipelines.runner import make_batches, whole_groups
from pipelines.sink import read_dataset, read_units
from pipelines.storage import Store
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.diversity import gram_cosine, groups_of
from tasks.image_am import ImageAMConfig

LUCID = ImageAMConfig.build("lucid", coarse=False)


def _gram_cos_direct(f: torch.Tensor, i: int, j: int) -> float:
    gi, gj = (f[k].flatten(1) @ f[k].flatten(1).T for k in (i, j))
    return float((gi * gj).sum() / (gi.norm() * gj.norm()))


@pytest.mark.parametrize("shape", [(5, 8, 2, 2), (5, 2, 4, 4)])  # more channels than positions, and fewer
def test_gram_cosine_is_the_mean_cosine_of_gram_matrices_within_each_group(shape):
    acts = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    got = gram_cosine(acts, [[0, 2, 3], [1], [4]])
    want0 = (_gram_cos_direct(acts, 0, 2) + _gram_cos_direct(acts, 0, 3)) / 2
    assert got[0].item() == pytest.approx(want0, rel=1e-5)
    assert got[1].item() == got[4].item() == 0.0  # alone in their groups
    assert groups_of(["a", "b", "a", "a", "c"]) == [[0, 2, 3], [1], [4]]


def _images(results) -> torch.Tensor:
    return torch.stack([torch.from_numpy(r.image).int() for r in results])


def test_a_units_images_depend_on_its_own_group_only():
    actor = SynthesisActor(NetSpec("tinynet", weights="random"))
    a = [WorkItem(Unit("fc", 1), s) for s in range(3)]
    b = [WorkItem(Unit("fc", 3), s) for s in range(3)]
    div = (1.0, None)
    mixed = actor.run(Batch(tuple(a[:2] + b + a[2:]), LUCID, 16, diversity=div)).results
    alone = actor.run(Batch(tuple(a), LUCID, 16, diversity=div)).results
    mixed_a = [mixed[0], mixed[1], mixed[5]]
    assert (_images(mixed_a) - _images(alone)).abs().max() <= 1
    assert [r.act_final for r in mixed_a] == pytest.approx([r.act_final for r in alone], rel=1e-3, abs=1e-3)
    independent = actor.run(Batch(tuple(a), LUCID, 16)).results
    assert (_images(independent) != _images(alone)).any()  # the penalty did act on the group


def test_diversity_pulls_the_seeds_styles_apart_and_keeps_raising_the_activation():
    actor = SynthesisActor(NetSpec("tinynet", weights="random"))
    items = tuple(WorkItem(Unit("features.2", 2), s) for s in range(4))

    def spread(results) -> float:
        x = torch.stack([torch.from_numpy(r.image).permute(2, 0, 1).float() / 255 for r in results])
        with torch.no_grad():
            f = actor.target.net.features(actor.model_input(x))
        sims = gram_cosine(f, [list(range(4))])
        return float(1 - sims.mean())

    plain = actor.run(Batch(items, LUCID, 40)).results
    diverse = actor.run(Batch(items, LUCID, 40, diversity=(4.0, None))).results
    assert spread(diverse) > 1.2 * spread(plain)
    assert all(r.act_final > r.act_start for r in diverse)


def _key(unit: int, seed: int) -> ItemKey:
    return ItemKey("m", "s", "fc", unit, None, None, seed, "image", "{}")


def test_batches_hold_whole_units_and_are_even_otherwise():
    items = [(_key(u, s), None) for u in range(5) for s in range(3)]
    batches = make_batches(items, 4, whole_units=True)
    for batch in batches:
        units = [k.unit for k, _ in batch]
        assert all(units.count(u) == 3 for u in units)  # every unit with all its seeds
    assert sorted(k for b in batches for k, _ in b) == sorted(k for k, _ in items)
    assert [len(b) for b in make_batches(items[:10], 4)] == [3, 4, 3]  # not 4, 4, 2
    big = make_batches([(_key(0, s), None) for s in range(6)], 4, whole_units=True)
    assert [len(b) for b in big] == [6]
    todo, rewrite = whole_groups(items, [items[4], items[13]])  # unit 1 seed 1, unit 4 seed 1
    assert [k for k, _ in todo] == [k for k, _ in items if k.unit in (1, 4)]
    assert rewrite == {k for k, _ in todo if k.seed != 1}


def _atlas(out, *extra):
    return main(["atlas", "--model", "tinynet", "--weights", "random", "--layers", "fc", "--units", "1,3",
                 "--seeds", "3", "--steps", "8", "--diversity", "1", "--out", str(out), *extra])


def _drop_rows(out, dataset: str, unit: int, seed: int) -> None:
    for path in glob.glob(f"{out}/{dataset}/**/*.parquet", recursive=True):
        t = pq.read_table(path)
        keep = pc.invert(pc.and_(pc.equal(t["unit"], unit), pc.equal(t["seed"], seed)))
        pq.write_table(t.filter(keep), path)


def test_a_resumed_diverse_run_recomputes_the_group_and_writes_each_key_once(tmp_path):
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    assert _atlas(first) == 0
    rows = read_units(Store(str(first))).to_pylist()
    hp = json.loads(rows[0]["hyperparams"])
    assert hp["diversity"] == {"weight": 1.0, "layer": "auto", "group": 3}
    shutil.copytree(first, resumed)
    for dataset in ("units", "activations"):
        _drop_rows(resumed, dataset, 3, 1)  # as if the run died before unit 3's batch was written... in part
    assert _atlas(resumed) == 0
    again = read_units(Store(str(resumed))).to_pylist()
    keys = [(r["unit"], r["seed"]) for r in again]
    assert sorted(keys) == [(u, s) for u, s in itertools.product((1, 3), range(3))]  # each key exactly once
    assert len(read_dataset(Store(str(resumed)), "activations")) == 6
    redone = next(r for r in again if (r["unit"], r["seed"]) == (3, 1))
    original = next(r for r in rows if (r["unit"], r["seed"]) == (3, 1))
    pictures = [np.asarray(Image.open(f"{d}/{r['image']}"), np.int16) for d, r in ((first, original),
                                                                                    (resumed, redone))]
    assert np.abs(pictures[0] - pictures[1]).max() <= 1  # the seed's image as in the uninterrupted run


def test_bad_diversity_flags_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["atlas", "--model", "tinynet", "--diversity", "much", "--out", str(tmp_path)])
    assert e.value.code == 2 and "'much' is not WEIGHT[:LAYER]" in capsys.readouterr().err
    assert _atlas(tmp_path / "a", "--diversity", "0") == 2
    assert "must be a positive weight" in capsys.readouterr().err
    assert _atlas(tmp_path / "b", "--diversity", "1:fc") == 2
    assert "--diversity 1:fc: that layer has no spatial maps" in capsys.readouterr().err
    assert _atlas(tmp_path / "c", "--diversity", "1:nope") == 2
    assert "unknown layer 'nope'" in capsys.readouterr().err
