"""Top-k of real images, fast tier: the exact merge equals brute force (ties, k beyond a shard, any shard
order), per-unit maxima and their positions, receptive-field boxes of known conv stacks, the quantile
sketch's accuracy and exact merge, and shard records that round-trip."""

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from pipelines.topk.records import NearestShard, TopkShard
from tasks.quantiles import MIN_ABS, REL_ERROR, UnitStats
from tasks.receptive import Geometry, receptive_fields
from tasks.topk import NO_SOURCE, TopK, unit_maxima


def brute_force(values: np.ndarray, k: int) -> list[list[tuple[float, int]]]:
    """Per column: the k best (value, source index), value descending then index ascending."""
    return [sorted(((float(values[i, u]), i) for i in range(len(values))), key=lambda t: (-t[0], t[1]))[:k]
            for u in range(values.shape[1])]


def as_lists(top: TopK) -> list[list[tuple[float, int]]]:
    return [[(v, i) for _, v, i, _, _ in top.entries(u)] for u in range(top.columns)]


def assert_same_topk(got: list[list[tuple[float, int]]], want: list[list[tuple[float, int]]], rtol=1e-5) -> None:
    """Equal up to float rounding (activations of a batch of 2 through the folded inference copy against all
    images at once through the net as loaded: the kernels round differently on different CPUs): the values
    within `rtol` in order, the same sources in order except within a run of values that tie within `rtol`."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == len(w)
        np.testing.assert_allclose([v for v, _ in g], [v for v, _ in w], rtol=rtol)
        runs, start = [], 0
        for j in range(1, len(w) + 1):
            if j == len(w) or not np.isclose(w[j][0], w[j - 1][0], rtol=rtol, atol=0):
                runs.append((start, j))
                start = j
        for a, b in runs:
            assert sorted(i for _, i in g[a:b]) == sorted(i for _, i in w[a:b]), (g, w)


@pytest.mark.parametrize("k", [1, 3, 9, 40])
def test_sharded_merge_equals_brute_force_with_ties_and_k_beyond_a_shard(k):
    rng = np.random.default_rng(k)
    values = rng.integers(0, 5, size=(37, 6)).astype(np.float32)  # few distinct values: many ties
    values[:, 5] = 2.0  # a column of nothing but ties
    splits = np.split(np.arange(37), [1, 4, 5, 17, 30])  # shards of 1..13 images, all smaller than k=40
    parts = [TopK.of(values[s], s, k) for s in splits]
    for order in (range(len(parts)), reversed(range(len(parts))), rng.permutation(len(parts))):
        merged = TopK.empty(k, 6)
        for j in order:
            merged = merged.merge(parts[j])
        assert as_lists(merged) == brute_force(values, k)
    assert as_lists(TopK.of(values, np.arange(37), k)) == brute_force(values, k)


def test_fewer_candidates_than_k_are_padded_and_nan_ranks_last():
    values = np.array([[1.0, np.nan], [np.nan, 2.0]], np.float32)
    top = TopK.of(values, np.array([10, 11]), 4)
    assert top.k == 4 and (top.index[2:] == NO_SOURCE).all()
    assert [(v, i) for _, v, i, _, _ in top.entries(0)] == [(1.0, 10), (-np.inf, 11)]
    assert [i for _, _, i, _, _ in top.entries(1)] == [11, 10]
    empty = TopK.of(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), 3)  # a shard with no readable image
    assert empty.k == 3 and (empty.index == NO_SOURCE).all() and empty.merge(top).entries(0) == top.entries(0)


def test_positions_travel_with_their_candidates():
    values = np.array([[1.0], [3.0], [2.0]], np.float32)
    y, x = np.array([[5], [6], [7]]), np.array([[0], [1], [2]])
    a = TopK.of(values[:2], np.array([0, 1]), 2, y[:2], x[:2])
    b = TopK.of(values[2:], np.array([2]), 2, y[2:], x[2:])
    assert [(i, yy, xx) for _, _, i, yy, xx in a.merge(b).entries(0)] == [(1, 6, 1), (2, 7, 2)]


def test_unit_maxima_is_the_max_over_positions_first_position_on_ties():
    act = torch.zeros(2, 3, 4, 5)
    act[0, 0, 2, 3] = 7
    act[0, 1, 1, 1] = act[0, 1, 3, 4] = 5  # a tie: the first in row-major order wins
    act[1, 2] = -1
    act[1, 2, 0, 4] = -0.5
    v, y, x = unit_maxima(act)
    assert v[0, 0] == 7 and (y[0, 0], x[0, 0]) == (2, 3)
    assert v[0, 1] == 5 and (y[0, 1], x[0, 1]) == (1, 1)
    assert v[1, 2] == -0.5 and (y[1, 2], x[1, 2]) == (0, 4)
    fc = torch.randn(2, 4)
    v, y, x = unit_maxima(fc)
    assert torch.equal(v, fc) and y is None and x is None


class Stack(nn.Module):
    """conv 3x3 s1 p1 -> conv 3x3 s2 p1 -> maxpool 2 s2 -> conv 5x5 s1 p0 (dilation 2 in a branch) -> fc."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.c3 = nn.Conv2d(4, 4, 5)
        self.side = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.pool(torch.relu(self.c2(torch.relu(self.c1(x)))))
        x = x + self.side(x)  # a residual branch: the union of both fields
        x = self.c3(x)
        return self.fc(x.mean((2, 3)))


def test_receptive_fields_of_a_known_stack():
    geo = receptive_fields(Stack(), ["c1", "c2", "pool", "side", "c3", "fc"], torch.zeros(1, 3, 32, 32))
    # by hand: size r += (k_eff - 1) * jump, jump *= stride, start -= pad * jump
    assert geo["c1"] == Geometry((1, 1), (3, 3), (-1, -1))
    assert geo["c2"] == Geometry((2, 2), (5, 5), (-2, -2))
    assert geo["pool"] == Geometry((4, 4), (7, 7), (-2, -2))
    assert geo["side"] == Geometry((4, 4), (23, 23), (-10, -10))  # dilated 3x3 = 5 taps wide, pad 2
    assert geo["c3"] == Geometry((4, 4), (39, 39), (-10, -10))  # c3 on the union (side's field is the larger)
    assert geo["fc"] is None
    assert geo["c3"].box(0, 0, 32, 32) == (0, 0, 29, 29) and geo["c3"].box(1, 0, 32, 32) == (0, 0, 32, 29)


def test_boxes_cover_exactly_the_pixels_a_linear_stack_depends_on():
    """With positive weights and no nonlinearity, the gradient of one output position is non-zero exactly
    on its receptive field: the box must be its bounding box."""
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, stride=2, padding=1),
                        nn.AvgPool2d(3, stride=2, padding=1), nn.Conv2d(1, 1, 3, dilation=2, padding=2))
    for m in net:
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 1.0)
            nn.init.zeros_(m.bias)
    x = torch.ones(1, 1, 40, 40)
    geo = receptive_fields(net, ["3"], x)["3"]
    out_hw = net(x).shape[2:]
    for y, xx in [(0, 0), (4, 7), (out_hw[0] - 1, out_hw[1] - 1)]:
        inp = x.clone().requires_grad_(True)
        net(inp)[0, 0, y, xx].backward()
        rows, cols = torch.nonzero(inp.grad[0, 0], as_tuple=True)
        assert geo.box(y, xx, 40, 40) == (rows.min().item(), cols.min().item(), rows.max().item() + 1,
                                          cols.max().item() + 1)


def test_mobilenet_v2_fields_match_the_published_arithmetic():
    from torchvision.models import mobilenet_v2

    geo = receptive_fields(mobilenet_v2(), ["features.0", "features.3", "classifier.1"], torch.zeros(1, 3, 224, 224))
    assert geo["features.0"] == Geometry((2, 2), (3, 3), (-1, -1))
    assert geo["features.3"].jump == (4, 4) and geo["features.3"].size == (19, 19)
    assert geo["classifier.1"] is None


def test_quantiles_are_within_the_stated_error_and_merge_exactly():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 3, (500, 4)), rng.exponential(50, (500, 4)) - 5,
                             np.zeros((20, 4))]).astype(np.float32)
    values[:, 3] = np.abs(values[:, 3])
    whole = UnitStats.of(values)
    merged = UnitStats.empty(4)
    for s in np.array_split(values, [3, 200, 201, 900]):
        merged = merged.merge(UnitStats.of(s))
    np.testing.assert_array_equal(merged.hist, whole.hist)
    assert merged.count == 1020 and (merged.positive == (values > 0).sum(0)).all()
    np.testing.assert_allclose(merged.moments.mean, values.astype(np.float64).mean(0), rtol=1e-10)
    np.testing.assert_allclose(merged.moments.std, values.astype(np.float64).std(0), rtol=1e-9)
    np.testing.assert_array_equal(merged.minimum, values.min(0))
    qs = (0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0)
    est = merged.quantiles(qs)
    true = np.quantile(values.astype(np.float64), qs, axis=0, method="lower").T
    assert np.all(np.abs(est - true) <= REL_ERROR * np.abs(true) + MIN_ABS)
    assert est[:, 0].tolist() == values.min(0).tolist() and est[:, -1].tolist() == values.max(0).tolist()


def test_shard_records_round_trip():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(9, 5)).astype(np.float32)
    shard = TopkShard({"a.b": (TopK.of(v, np.arange(9) + 100, 3, rng.integers(0, 7, (9, 5)),
                                       rng.integers(0, 7, (9, 5))), UnitStats.of(v)),
                       "fc": (TopK.of(v[:, :2], np.arange(9), 12), UnitStats.of(v[:, :2]))})
    back = pickle.loads(pickle.dumps(shard))  # as Ray ships it: through its record table
    for layer, (top, st) in shard.layers.items():
        top2, st2 = back.layers[layer]
        for a, b in zip(top.arrays(), top2.arrays()):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(st.hist, st2.hist)
        np.testing.assert_array_equal(st.moments.m2, st2.moments.m2)
        assert st.count == st2.count
    near = NearestShard({"pixel": TopK.of(-v, np.arange(9), 2), "x.y": TopK.of(v, np.arange(9), 2)})
    back = NearestShard.from_table(near.to_table())
    assert set(back.spaces) == {"pixel", "x.y"}
    np.testing.assert_array_equal(back.spaces["pixel"].index, near.spaces["pixel"].index)


def test_worker_shards_merged_equal_brute_force_on_the_tiny_net(tmp_path):
    """Duplicated images tie exactly: the tie goes to the earlier path. k (5) exceeds every shard (2)."""
    from PIL import Image

    from models.capture import capture
    from pipelines.imagesets import list_image_set
    from pipelines.photos import to_model_input
    from pipelines.topk.shards import make_shards
    from pipelines.topk.worker import ImageWorker, TopkJob
    from tasks.actor import NetSpec

    rng = np.random.default_rng(3)
    for i in range(7):
        Image.fromarray(rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    for dup in ("0b.png", "3b.png"):
        (tmp_path / dup).write_bytes((tmp_path / f"{dup[0]}.png").read_bytes())
    (tmp_path / "bad.png").write_bytes(b"not a png")
    images = list_image_set(str(tmp_path), {})
    worker = ImageWorker(NetSpec("tinynet", weights="random"))
    layers = (("features.2", None), ("fc", (3, 1)))
    merged, read, skipped = None, 0, []
    for shard in make_shards(images, 2):
        r = worker.topk(TopkJob(shard, layers, 5, 2))
        merged = r.payload if merged is None else merged.merge(r.payload)
        read, skipped = read + r.read, skipped + r.skipped
    assert read == 9 and [s for s, _ in skipped] == [str(tmp_path / "bad.png")]

    ok = [i for i, s in enumerate(images.sources) if not s.uri.endswith("bad.png")]
    x = torch.tensor(np.stack([to_model_input(np.asarray(Image.open(images.sources[i].uri).convert("RGB")),
                                              (16, 16)) for i in ok]))
    acts = capture(worker.net.net, worker.net.to_input(x), ["features.2", "fc"])
    conv = acts["features.2"].flatten(2).max(2).values.numpy()
    fc = acts["fc"][:, [3, 1]].numpy()
    for layer, values in (("features.2", conv), ("fc", fc)):
        top, stats = merged.layers[layer]
        want = [[(v, ok[i]) for v, i in col] for col in brute_force(values, 5)]
        assert_same_topk(as_lists(top), want)
        assert stats.count == 9
        np.testing.assert_allclose(stats.moments.mean, values.mean(0), rtol=1e-5)
    ties = [col for col in as_lists(merged.layers["fc"][0]) if any(a[0] == b[0] for a, b in zip(col, col[1:]))]
    assert ties  # the duplicates really tie, and the earlier path comes first


def test_a_net_fx_cannot_trace_is_reported_not_guessed():
    from tasks.receptive import NotTraceable

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else -self.conv(x)  # data-dependent control flow

    with pytest.raises(NotTraceable):
        receptive_fields(Branchy(), ["conv"], torch.zeros(1, 3, 8, 8))
