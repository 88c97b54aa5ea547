"""Nearest real images of synthesized ones, fast tier on the tiny net: the worker's sharded search, merged,
equals a brute-force search in pixel space and in a layer's code space; --same-class keeps a query's
neighbours inside its class; the top-level blocks of torchvision nets are the paper's spaces."""

import numpy as np
import torch
from PIL import Image

from models.capture import capture
from pipelines.imagesets import list_image_set
from pipelines.photos import to_model_input
from pipelines.topk.nearest_run import top_level_blocks
from pipelines.topk.shards import make_shards
from pipelines.topk.worker import PIXEL, ImageWorker, NearestJob, Queries, _class_mask, label_classes
from tasks.actor import NetSpec
from tasks.topk import TopK


def make_sets(tmp_path):
    rng = np.random.default_rng(0)
    real = tmp_path / "real"
    for i in range(9):
        folder = real / str(i % 2 * 2 + 1)  # classes 1 and 3
        folder.mkdir(parents=True, exist_ok=True)
        h, w = rng.integers(16, 40, 2)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    atlas = tmp_path / "atlas"
    (atlas / "images").mkdir(parents=True)
    paths = []
    for q in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(atlas / "images" / f"{q}.png")
        paths.append(f"images/{q}.png")
    return str(real), str(atlas), tuple(paths)


def brute_force(worker, real_set, atlas, paths, space, classes, k):
    real = torch.tensor(np.stack([to_model_input(np.asarray(Image.open(s.uri).convert("RGB")), (16, 16))
                                  for s in real_set.sources]))
    query = torch.tensor(np.stack([np.asarray(Image.open(f"{atlas}/{p}"), np.float32).transpose(2, 0, 1) / 255
                                   for p in paths]))

    def codes(x):
        if space == PIXEL:
            return x.flatten(1).double()
        return capture(worker.net.net, worker.net.to_input(x), [space])[space].flatten(1).double()

    d = torch.cdist(codes(query), codes(real)).numpy()  # [Q, N]
    labels = [int(s.label) for s in real_set.sources]
    out = []
    for q in range(len(paths)):
        pool = [i for i in range(len(labels)) if classes[q] is None or labels[i] == classes[q]]
        out.append(sorted(((d[q, i], i) for i in pool), key=lambda t: (t[0], t[1]))[:k])
    return out


def test_sharded_nearest_equals_brute_force_and_same_class_restricts(tmp_path):
    real, atlas, paths = make_sets(tmp_path)
    real_set = list_image_set(real, {})
    worker = ImageWorker(NetSpec("tinynet", weights="random"), Queries(atlas, paths))
    spaces = (PIXEL, "features.2")
    for classes in [(), (None, 3, 1)]:
        merged = {s: TopK.empty(3, len(paths)) for s in spaces}
        for shard in make_shards(real_set, 4):  # shards of 4, 4, 1 images
            result = worker.nearest(NearestJob(shard, spaces, 3, 3, classes,
                                               label_classes([s.label for s in real_set.sources])))
            assert result.read == len(shard.sources) and not result.skipped
            merged = {s: merged[s].merge(result.payload.spaces[s]) for s in spaces}
        for s in spaces:
            want = brute_force(worker, real_set, atlas, paths, s, classes or (None,) * 3, 3)
            for q in range(len(paths)):
                got = [(-v, i) for _, v, i, _, _ in merged[s].entries(q)]
                assert [i for _, i in got] == [i for _, i in want[q]], (s, classes, q)
                np.testing.assert_allclose([d for d, _ in got], [d for d, _ in want[q]], rtol=1e-6)
        if classes:
            labels = [s.label for s in real_set.sources]
            assert {labels[i] for _, _, i, _, _ in merged[PIXEL].entries(1)} == {"3"}
            assert {labels[i] for _, _, i, _, _ in merged[PIXEL].entries(2)} == {"1"}


def test_class_indices_of_labels_are_the_integers_or_imagefolders_sorted_names():
    assert label_classes(["7", "285", None]) == {"7": 7, "285": 285}
    assert label_classes(["n02", "n01", None, "n03", "n01"]) == {"n01": 0, "n02": 1, "n03": 2}
    allowed = _class_mask((None, 1), ["n02", "n01", None], 2, label_classes(["n02", "n01"]))
    assert allowed.tolist() == [[True, True], [True, False], [True, False]]


def test_top_level_blocks_are_the_papers_eight_caffenet_spaces():
    from torchvision.models import alexnet, mobilenet_v2

    from models.layers import trace_layers

    net = alexnet().eval()
    assert top_level_blocks(net, trace_layers(net, torch.zeros(1, 3, 224, 224))) == [
        "features.0", "features.3", "features.6", "features.8", "features.10", "classifier.1", "classifier.4",
        "classifier.6"]
    net = mobilenet_v2().eval()
    blocks = top_level_blocks(net, trace_layers(net, torch.zeros(1, 3, 224, 224)))
    assert blocks == [f"features.{i}" for i in range(19)] + ["classifier.1"]
