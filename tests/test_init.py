"""`--init URI` (pipelines/init_photos.py): synthesis that starts from real photos. Image AM starts from the photo
itself and raises the unit above the photo's own activation (a caricature); DGN-AM starts from the encoder's
code of the photo, clipped to the bounds. The photo's digest is in the key; bad --init is one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from models.generators import GeneratorEntry, TinyGenerator
from models.registry import register
from models.units import Unit
from pipelines.cli import main
from pipelines.sink import read_units
from pipelines.storage import Store
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.dgn import DGNConfig
from tasks.image_am import ImageAMConfig

# a generator whose codes are tinynet's pooled features (6 numbers), so DGN-AM can start from a photo's code
register(GeneratorEntry("tiny-pool", lambda: TinyGenerator(6, 16), (6,), 64, bgr=False, mean=(0.5, 0.5, 0.5),
                        scale=1.0, description="test generator inverting tinynet's pool", encoder=("tinynet", "pool")))


def _photo(seed: int, size: int = 40) -> np.ndarray:
    """A structured uint8 photo: a bright square on a coloured gradient (not flat, not noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    img = np.stack([y, x, 1 - y], -1) * rng.uniform(0.3, 0.9, 3)
    a, b = rng.integers(4, size // 2, 2)
    img[a:a + 12, b:b + 12] = rng.uniform(0.6, 1.0, 3)
    return (img * 255).astype(np.uint8)


def _photos(folder, n: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(_photo(i)).save(folder / f"p{i}.png")
    return str(folder)


@pytest.mark.parametrize("style", ["lucid", "yosinski"])
def test_a_caricature_starts_at_the_photo_and_raises_the_unit_above_the_photos_own(style):
    actor = SynthesisActor(NetSpec("tinynet", weights="random"))
    photo = torch.from_numpy(_photo(0)[4:20, 4:20]).permute(2, 0, 1).float()[None] / 255  # 16 x 16, the net's
    cfg = ImageAMConfig.build(style, coarse=False, fourier_size=None) if style == "lucid" else \
        ImageAMConfig.build(style)
    start = actor.parameterization(cfg, [0], photo)
    rendered = start.render(start.params)
    assert (rendered - photo.clamp(0.01, 0.99)).abs().max() < 1e-4  # the photo itself (fourier: kept off 0 and 1)
    items = (WorkItem(Unit("fc", 1), 0), WorkItem(Unit("features.2", 2, 3, 3), 0))
    (r_fc, r_conv) = actor.run(Batch(items, cfg, 20, init=(photo[0].numpy(),) * 2)).results
    with torch.no_grad():
        own = actor.target.net(actor.model_input(photo))[0, 1].item()
    assert r_fc.act_start == pytest.approx(own, rel=1e-4, abs=1e-4)  # lucid: measured on the photo itself
    assert r_fc.act_final > r_fc.act_start and r_conv.act_final > r_conv.act_start


def test_dgn_from_a_photo_starts_at_the_encoders_code_of_it_clipped_to_the_bounds():
    actor = SynthesisActor(NetSpec("tinynet", weights="random", generator="tiny-pool", generator_weights="random"))
    photo = torch.from_numpy(_photo(1)[:16, :16]).permute(2, 0, 1).float()[None] / 255
    code = actor.encode(photo)
    with torch.no_grad():
        pooled = actor.target.net.pool(actor.target.net.features(actor.model_input(photo))).flatten(1)
    torch.testing.assert_close(code, pooled)
    cfg = DGNConfig(upper=float(code.median()), lower=0.0)
    start = actor.parameterization(cfg, [0], photo).params
    torch.testing.assert_close(start, code.clamp(0.0, float(code.median())))


def _atlas(out, *extra, seeds="2"):
    return main(["atlas", "--model", "tinynet", "--weights", "random", "--layers", "fc", "--units", "1",
                 "--seeds", seeds, "--steps", "4", "--out", str(out), *extra])


def test_the_photos_digest_is_in_the_key_and_each_seed_starts_from_its_own_photo(tmp_path):
    folder = _photos(tmp_path / "photos", 2)
    assert _atlas(tmp_path / "a", "--init", folder) == 0
    rows = sorted(read_units(Store(str(tmp_path / "a"))).to_pylist(), key=lambda r: r["seed"])
    digests = json.loads(rows[0]["hyperparams"])["init"]
    assert len(digests) == 2 and digests[0] != digests[1]
    start = np.asarray(Image.open(tmp_path / "a" / "inits" / f"{digests[1]}.png"))
    assert start.shape == (16, 16, 3)  # the photo as the net saw it, for the site
    assert _atlas(tmp_path / "a", "--init", folder) == 0  # the same photos: nothing to do
    Image.fromarray(_photo(7)).save(tmp_path / "photos" / "p1.png")  # an edited photo: new keys
    assert _atlas(tmp_path / "a", "--init", folder) == 0
    again = read_units(Store(str(tmp_path / "a"))).to_pylist()
    assert len(again) == 4 and len({r["hyperparams"] for r in again}) == 2
    one = tmp_path / "photos" / "p0.png"
    assert _atlas(tmp_path / "b", "--init", str(one)) == 0  # one photo starts every seed
    assert json.loads(read_units(Store(str(tmp_path / "b"))).to_pylist()[0]["hyperparams"])["init"] == \
        [digests[0]] * 2
    assert main(["atlas", "--model", "tinynet", "--weights", "random", "--layers", "fc", "--units", "1",
                 "--seeds", "1", "--steps", "4", "--method", "dgn", "--generator", "tiny-pool",
                 "--generator-weights", "random", "--code-bound", "3", "--init", str(one),
                 "--out", str(tmp_path / "c")]) == 0


def test_bad_init_is_one_line_and_exit_2(tmp_path, capsys):
    folder = _photos(tmp_path / "three", 3)
    assert _atlas(tmp_path / "o", "--init", folder) == 2
    err = capsys.readouterr().err.strip()
    assert "holds 3 photos for 2 seeds" in err and "--seeds 3" in err and len(err.splitlines()) == 1
    bad = tmp_path / "bad" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not a png at all")
    assert _atlas(tmp_path / "o", "--init", str(bad)) == 2
    err = capsys.readouterr().err.strip()
    assert "--init: cannot read" in err and len(err.splitlines()) == 1
    assert _atlas(tmp_path / "o", "--init", str(tmp_path / "missing")) == 2
    assert "--init" in capsys.readouterr().err
    assert main(["atlas", "--model", "tinynet", "--weights", "random", "--method", "dgn", "--generator", "tiny",
                 "--generator-weights", "random", "--init", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "names no encoder" in capsys.readouterr().err
    assert not (tmp_path / "o" / "units").exists()
