"""Where a unit fires in its top-k images (pipelines/topk, tasks/topk.unit_maps, tasks/attribution.py): each
conv example's stored map has the example's activation as its maximum, the maps follow their examples
through every merge and record, and the overlays ring the right place (a planted red square)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from models.capture import Capture
from models.preprocess import Preprocessing
from models.registry import NetEntry, register
from pipelines.cli import main
from pipelines.photos import preprocessing_input
from pipelines.storage import Store
from pipelines.topk.overlays import overlay
from pipelines.topk.records import TopkShard
from pipelines.topk.topk_out import read_topk
from tasks.attribution import gradient_x_input
from tasks.topk import TopK, unit_maps


class SpotNet(nn.Module):
    """conv1x1 -> 'red' (unit 0: R - (G + B) / 2) and 'green' (unit 1); a stride-2 max pool; a linear head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 2, 1), nn.MaxPool2d(2))
        with torch.no_grad():
            self.features[0].weight.copy_(torch.tensor([[1.0, -0.5, -0.5], [0.0, 1.0, 0.0]]).view(2, 3, 1, 1))
            self.features[0].bias.zero_()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


register(NetEntry("spotnet", SpotNet, Preprocessing(size=(32, 32), mean=(0, 0, 0), std=(1, 1, 1), crop=1.0), None,
                  "a net whose unit 0 finds red squares", (("features", "0:2"),)))


def _photo(cy: int, cx: int, strength: float = 1.0) -> np.ndarray:
    img = np.full((32, 32, 3), 90, np.uint8)
    img[cy - 3:cy + 3, cx - 3:cx + 3] = (round(255 * strength), 40, 40)
    return img


def test_unit_maps_keep_the_maximum_and_follow_their_candidates_through_merges():
    act = torch.randn(5, 3, 60, 44, generator=torch.Generator().manual_seed(0))
    maps = unit_maps(act)
    assert maps.shape == (5, 3, 28, 28)
    torch.testing.assert_close(maps.flatten(2).amax(2), act.flatten(2).amax(2))
    assert unit_maps(act[..., :7, :7]).shape == (5, 3, 7, 7)  # small maps are kept as they are
    values = act.flatten(2).amax(2).numpy()
    parts = [TopK.of(values[i:i + 2], np.arange(i, min(i + 2, 5)), 3, maps=maps[i:i + 2].numpy())
             for i in range(0, 5, 2)]
    merged = parts[2].merge(parts[0]).merge(parts[1])
    whole = TopK.of(values, np.arange(5), 3, maps=maps.numpy())
    assert (merged.index == whole.index).all()
    for r in range(3):
        for u in range(3):
            np.testing.assert_array_equal(merged.map_of(r, u), maps[merged.index[r, u], u].numpy())
            assert np.nanmax(merged.map_of(r, u)) == merged.values[r, u]
    record = TopkShard({"l": (merged, _stats(values))}).to_table()
    back = TopkShard.from_table(record).layers["l"][0]
    np.testing.assert_array_equal(back.maps, merged.maps)


def _stats(values):
    from tasks.quantiles import UnitStats
    return UnitStats.of(values)


def _ring_centre(png: bytes) -> tuple[float, float]:
    """Where the overlay's cyan ring is (mean row, column of its pixels), in overlay pixels."""
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    ring = (img[..., 0] < 60) & (img[..., 1] > 200) & (img[..., 2] > 200)
    ys, xs = np.nonzero(ring)
    assert len(ys) > 8
    return ys.mean(), xs.mean()


def test_overlay_rings_the_mark_and_heats_the_map():
    view = np.full((32, 32, 3), 100, np.uint8)
    heat = np.zeros((16, 16), np.float32)
    heat[3, 12] = 5.0
    png = overlay(view, heat, (7.0, 25.0))
    cy, cx = _ring_centre(png)
    assert abs(cy - 7.0) < 1.5 and abs(cx - 25.0) < 1.5  # the overlay is view-sized here (32 < OVERLAY_SIZE)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert img[6:9, 23:27].sum(-1).max() > img[25:28, 4:8].sum(-1).max()  # hot where the map is


def test_topk_stores_each_conv_units_map_and_rings_the_planted_square(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    spots = [(8, 24, 1.0), (20, 10, 0.9), (26, 26, 0.8), (12, 12, 0.7)]
    for i, (cy, cx, s) in enumerate(spots):
        Image.fromarray(_photo(cy, cx, s)).save(folder / f"{i}.png")
    out, weights = tmp_path / "out", tmp_path / "spot.pt"
    torch.save(SpotNet().state_dict(), weights)
    assert main(["topk", "--model", "spotnet", "--weights", str(weights), "--layers", "features,fc",
                 "--images", str(folder), "--k", "3", "--attribution", "--out", str(out)]) == 0
    rows = read_topk(Store(str(out))).to_pylist()
    conv = sorted((r for r in rows if r["layer"] == "features" and r["unit"] == 0), key=lambda r: r["rank"])
    assert [r["source"].rsplit("/", 1)[1] for r in conv] == ["0.png", "1.png", "2.png"]
    for r, (cy, cx, _) in zip(conv, spots):
        amap = np.asarray(r["map"], np.float32).reshape(r["map_h"], r["map_w"])
        assert (r["map_h"], r["map_w"]) == (16, 16)
        assert float(amap.max()) == pytest.approx(r["activation"], rel=1e-6, abs=1e-6)
        my, mx = np.unravel_index(amap.argmax(), amap.shape)
        assert (my, mx) == (r["y"], r["x"]) and abs(2 * my + 1 - cy) <= 3 and abs(2 * mx + 1 - cx) <= 3
        oy, ox = _ring_centre((out / r["overlay"]).read_bytes())
        assert abs(oy - cy) <= 3 and abs(ox - cx) <= 3  # 32 px view, overlay at the same size
        attribution = np.asarray(Image.open(out / r["attribution"]).convert("L"), np.float32)
        ay, ax = np.unravel_index(attribution.argmax(), attribution.shape)
        assert abs(ay - cy) <= 5 and abs(ax - cx) <= 5
    fc = [r for r in rows if r["layer"] == "fc"]
    assert fc and all(r["map"] is None and r["overlay"] is None and r["attribution"] for r in fc)


def test_gradient_x_input_points_at_what_the_unit_sees():
    net = SpotNet().eval().requires_grad_(False)
    x = torch.from_numpy(np.stack([preprocessing_input(_photo(8, 20), Preprocessing(size=(32, 32), crop=1.0))]))
    with Capture(net, ["features"]) as cap:
        m = gradient_x_input(cap, x, [("features", 0, 4, 10)])
    assert m.shape == (1, 32, 32) and float(m.max()) == pytest.approx(1.0)
    y, xx = np.unravel_index(int(m[0].argmax()), (32, 32))
    assert abs(y - 8.5) <= 3 and abs(xx - 20.5) <= 3


def test_an_empty_shard_keeps_the_others_maps():
    values = np.arange(6, dtype=np.float32).reshape(3, 2)
    with_maps = TopK.of(values, np.arange(3), 2, maps=np.ones((3, 2, 4, 4), np.float32))
    empty = TopK.of(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), 2)
    for merged in (with_maps.merge(empty), empty.merge(with_maps)):
        assert merged.maps is not None and (merged.index[:, 0] == [2, 1]).all()
        np.testing.assert_array_equal(merged.maps, with_maps.maps)
