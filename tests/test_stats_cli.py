"""`neuron-atlas stats` end to end (Ray shards, exact merge) and DGN-AM keeping every code inside the
bounds it wrote, after every step."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from models.capture import Capture
from models.registry import resolve_model
from models.units import Unit
from pipelines.cli import main
from pipelines.photos import offline_photos, to_model_input
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.dgn import DGNConfig
from tasks.loop import optimize
from tasks.stats import encode
from tests.helpers import run_cli

pytestmark = pytest.mark.integration


def test_stats_merge_exactly_and_dgn_codes_stay_inside_the_bounds(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    photos = [img for _, img in offline_photos(faces=False)[:6]]
    for i, img in enumerate(photos):
        Image.fromarray(img).save(images / f"{i}.png")
    out = tmp_path / "stats"
    proc = run_cli("stats", "--generator", "mnv2-pool", "--images", str(images), "--out", str(out),
                   "--shard-size", "2", cwd=tmp_path)  # 3 shards merged by the driver
    assert "6 images, 1280 units" in proc.stdout

    entry = resolve_model("mobilenet_v2")
    actor = SynthesisActor(NetSpec("mobilenet_v2", generator="mnv2-pool", generator_weights="random"))
    x = torch.tensor(np.stack([to_model_input(img, entry.preprocessing.size) for img in photos]))
    codes = encode(actor.target.net, actor.model_input, x, "classifier.0")
    table = pq.read_table(out / "stats.parquet").to_pydict()
    np.testing.assert_allclose(table["mean"], codes.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table["std"], codes.std(0), rtol=1e-4, atol=1e-6)
    assert set(table["count"]) == {6}
    upper = np.load(out / "bounds.npy")
    np.testing.assert_allclose(upper, codes.mean(0) + 3 * codes.std(0), rtol=1e-4, atol=1e-5)

    actor.code_upper = upper
    batch = Batch((WorkItem(Unit("classifier.1", 980), 0), WorkItem(Unit("features.10", 3, 7, 7), 1)),
                  DGNConfig(), 12)
    param, objective = actor.setup(batch)
    hi = torch.tensor(upper)
    checked = []

    def inside(_t):
        assert (param.params >= 0).all() and (param.params <= hi).all()
        checked.append(1)

    with Capture(actor.target.net, objective.layers) as cap:
        optimize(param, objective, lambda im: cap(actor.model_input(im)), batch.steps, batch.config.rule,
                 progress=inside)
    assert len(checked) == 12


def test_stats_bad_input(tmp_path, capsys):
    assert main(["stats", "--model", "mobilenet_v2", "--layer", "nope", "--images", "offline",
                 "--out", str(tmp_path / "o")]) == 2
    assert "unknown layer 'nope'" in capsys.readouterr().err
    assert main(["stats", "--generator", "tiny", "--images", "offline"]) == 2
    assert "names no encoder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["stats", "--generator", "mnv2-pool", "--images", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no .jpg/.jpeg/.png images" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
