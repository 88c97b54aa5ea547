"""End to end through the CLI, Ray and real MobileNetV2 weights (marked integration)."""

import os
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
import torch
from PIL import Image

from models.loading import load_net
from models.registry import resolve_model
from pipelines.photos import offline_photos, to_model_input
from pipelines.sink import PARTITIONING
from tests.helpers import assert_rerun_does_nothing, run_cli, unit_rows

pytestmark = pytest.mark.integration


def cli(*args, cwd):
    return run_cli(*args, cwd=cwd)


def units_table(out: Path):
    return unit_rows(str(out))


REQUIRED = {"model", "snapshot", "layer", "unit", "y", "x", "seed", "method", "objective", "activation_start",
            "activation_final", "steps", "image", "hyperparams"}


def test_atlas_writes_one_row_and_png_per_key_and_reruns_do_nothing(tmp_path):
    # 8 steps: the yosinski style (no random views) raises every unit in that few; the default lucid style
    # needs hundreds (its rise is checked on tiny nets in test_lucid.py and at 200 steps below)
    out = tmp_path / "atlas-out"
    args = ["atlas", "--model", "mobilenet_v2", "--layers", "features.3,classifier.1", "--units", "0:3",
            "--layer-units", "classifier.1=285,980", "--seeds", "2", "--steps", "8", "--batch-size", "4",
            "--style", "yosinski", "--out", str(out)]
    first = cli(*args, cwd=tmp_path)
    rows = units_table(out)
    keys = [(r["layer"], r["unit"], r["seed"]) for r in rows]
    expected = {(l, u, s) for l, us in (("features.3", (0, 1, 2)), ("classifier.1", (285, 980)))
                for u in us for s in (0, 1)}
    assert sorted(keys) == sorted(expected) and len(keys) == len(set(keys))
    assert REQUIRED <= set(rows[0])
    for r in rows:
        with Image.open(out / r["image"]) as img:
            assert img.format == "PNG" and img.size == (224, 224)
        if r["layer"] == "features.3":
            assert (r["y"], r["x"]) == (28, 28)
    rising = sum(r["activation_final"] > r["activation_start"] for r in rows)
    assert rising >= 0.95 * len(rows)
    acts = ds.dataset(str(out / "activations"), format="parquet", partitioning=PARTITIONING).to_table()
    assert acts.num_rows == len(rows)
    assert {len(v) for v in acts.column("activation").to_pylist()} == {24, 1000}
    assert "done: 10 items" in first.stdout

    assert_rerun_does_nothing(args, out, tmp_path)


def test_dgn_am_runs_through_ray(tmp_path):
    out = tmp_path / "o"
    cli("atlas", "--method", "dgn", "--generator", "tiny", "--generator-weights", "random", "--code-bound", "3",
        "--layers", "classifier.1", "--units", "1,2", "--seeds", "1", "--steps", "5", "--lr", "1",
        "--out", str(out), cwd=tmp_path)
    rows = units_table(out)
    assert len(rows) == 2 and {r["method"] for r in rows} == {"dgn"}
    assert all('"generator":"tiny"' in r["hyperparams"] for r in rows)


def test_image_am_beats_every_offline_photo(tmp_path):
    """The issue's acceptance command, with today's default (lucid) style: each class image out-scores the
    best real photo for that class, and its logit is that of the saved PNG."""
    classes = [285, 504, 948, 967, 980]
    out = tmp_path / "o"
    cli("atlas", "--model", "mobilenet_v2", "--layers", "classifier.1", "--units", ",".join(map(str, classes)),
        "--seeds", "1", "--method", "image", "--steps", "200", "--out", str(out), cwd=tmp_path)
    entry = resolve_model("mobilenet_v2")
    net, norm = load_net(entry).net, entry.preprocessing.module()
    photos = torch.tensor(np.stack([to_model_input(p, (224, 224)) for _, p in offline_photos()]))
    with torch.no_grad():
        best_photo = net(norm(photos)).max(0).values
    rows = {r["unit"]: r for r in units_table(out)}
    for c in classes:
        img = np.asarray(Image.open(out / rows[c]["image"]), np.float32).transpose(2, 0, 1) / 255
        with torch.no_grad():
            logit = net(norm(torch.tensor(img)[None]))[0, c].item()
        assert logit == pytest.approx(rows[c]["activation_final"], abs=1e-3)
        assert logit > best_photo[c].item(), (c, logit, best_photo[c].item())


def test_a_dead_cluster_named_by_the_environment_leaves_the_run_on_this_machine(tmp_path):
    """The default address is the cluster RAY_ADDRESS names (ray job submit sets it), but a RAY_ADDRESS left
    behind by a cluster that died must not make the run try to join it: the run says so and stays local."""
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:9"}  # nothing listens on the discard port
    r = run_cli("atlas", "--layers", "features.3", "--units", "0", "--seeds", "1", "--steps", "2",
                "--out", str(tmp_path / "o"), cwd=tmp_path, env=env, timeout=300)
    assert "RAY_ADDRESS=127.0.0.1:9 does not answer; running on this machine only" in r.stdout + r.stderr
    assert "this machine only" in r.stdout + r.stderr
    assert len(unit_rows(str(tmp_path / "o"))) == 1
