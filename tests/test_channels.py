"""1-channel (greyscale) nets through every path: image AM (pixel and fourier), transforms, DGN-AM with a
1-channel generator, top-k, the PNG writer and the preprocessing flags."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from models.capture import capture
from models.errors import UserInputError
from models.loading import load_net
from models.preprocess import Preprocessing
from models.registry import NetEntry, register, resolve_model
from pipelines.sink import png_bytes
from tasks.dgn import DGNConfig, dgn_parameterization
from tasks.image_am import ImageAMConfig, image_parameterization
from tasks.loop import optimize
from tasks.objectives import per_item, unit
from tasks.transforms import parse_transforms

GREY = Preprocessing(size=(16, 16), mean=(0.3,), std=(0.3,), crop=1.0)


class GreyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, 2, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def grey_net() -> nn.Module:
    torch.manual_seed(0)
    return GreyNet()


register(NetEntry("greynet", grey_net, GREY, None, "1-channel test net", (("fc", "0:2"),)))


class GreyGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(8, 16 * 4 * 4)
        self.up = nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.LeakyReLU(0.3),
                                nn.ConvTranspose2d(8, 1, 4, 2, 1))

    def forward(self, code):
        return self.up(torch.relu(self.fc(code)).view(-1, 16, 4, 4))


def _forward(net):
    norm = GREY.module()
    return lambda layers: (lambda x: capture(net, norm(x), layers))


@pytest.fixture
def grey():
    return grey_net().eval().requires_grad_(False)


@pytest.mark.parametrize("style", ["yosinski", "lucid"])
def test_image_am_on_a_1_channel_net_raises_activation_with_greyscale_images(grey, style):
    items = [("fc", 1), ("fc", 3), ("features.2", 2, 4, 4)]
    cfg = ImageAMConfig.build(style)
    param = image_parameterization(cfg, [0, 1, 2], GREY.size, GREY.mean01, torch.device("cpu"))
    assert param.render(param.params).shape == (3, 1, 16, 16)
    obj = per_item([unit(*u) for u in items])
    r = optimize(param, obj, _forward(grey)(obj.layers), 40, cfg.rule, views=cfg.views([0, 1, 2], GREY.size))
    assert (r.act_final > r.act_start).all()
    assert r.images.dtype == torch.uint8 and r.images.shape == (3, 16, 16, 1)


def test_transforms_keep_the_channel_count_and_pad_grey():
    views = parse_transforms("standard").views([0, 1])
    x = torch.zeros(2, 1, 16, 16)
    v = views(x, 0)
    assert v.shape == (2, 1, 16, 16)
    assert torch.isclose(v.max(), torch.tensor(0.5), atol=1e-5)  # out-of-image pixels are grey 0.5


def test_dgn_am_with_a_1_channel_generator_raises_activation_and_holds_bounds(grey):
    g = GreyGenerator().eval().requires_grad_(False)
    cfg = DGNConfig(lr=1.0, lr_end=0.05, upper=2.0)
    param = dgn_parameterization(cfg, g, lambda raw: raw + 0.5, (8,), [0, 1], GREY.size, torch.device("cpu"))
    obj = per_item([unit("fc", 0), unit("fc", 2)])
    r = optimize(param, obj, _forward(grey)(obj.layers), 40, cfg.rule)
    assert (r.act_final > r.act_start).all()
    assert r.images.shape == (2, 16, 16, 1)
    codes = param.params.detach()
    assert float(codes.min()) >= 0.0 and float(codes.max()) <= 2.0


def test_a_1_channel_generator_entry_renders_one_channel():
    entry = resolve_model("fashion-fc")
    assert entry.channels == 1
    raw = torch.zeros(2, 1, 28, 28)
    assert torch.allclose(entry.to_image01(raw), torch.full_like(raw, 0.5))


def test_png_writer_saves_greyscale_for_one_channel_and_rgb_for_three():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    with Image.open(io.BytesIO(png_bytes(grey))) as img:
        assert img.mode == "L" and np.array_equal(np.asarray(img), grey[..., 0])
    rgb = np.zeros((3, 4, 3), np.uint8)
    with Image.open(io.BytesIO(png_bytes(rgb))) as img:
        assert img.mode == "RGB"


def test_topk_on_a_1_channel_net_sees_the_grey_photos(tmp_path):
    from pipelines.imagesets import list_image_set
    from pipelines.photos import preprocessing_input
    from pipelines.topk.shards import make_shards
    from pipelines.topk.worker import ImageWorker, TopkJob
    from tasks.actor import NetSpec

    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), "L").save(tmp_path / f"{i}.png")
    images = list_image_set(str(tmp_path), {})
    worker = ImageWorker(NetSpec("greynet", weights="random"))
    (shard,) = make_shards(images, 8)
    r = worker.topk(TopkJob(shard, (("fc", (0, 1)),), 2, 4))
    top, _ = r.payload.layers["fc"]
    x = torch.tensor(np.stack([preprocessing_input(np.asarray(Image.open(s.uri).convert("RGB")), GREY)
                               for s in images.sources]))
    assert x.shape == (5, 1, 16, 16)
    fc = capture(worker.net.net, worker.net.to_input(x), ["fc"])["fc"][:, [0, 1]].numpy()
    for col, unit_index in enumerate((0, 1)):
        best = int(np.argmax(fc[:, col]))
        assert int(top.index[0, col]) == best
        np.testing.assert_allclose(top.values[0, col], fc[best, col], rtol=1e-5)


def test_preprocessing_input_of_a_grey_photo_is_exact():
    from pipelines.photos import to_model_input

    grey = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    x = to_model_input(np.repeat(grey[..., None], 3, 2), (28, 28), channels=1, crop=1.0)
    assert x.shape == (1, 28, 28)
    np.testing.assert_array_equal((x[0] * 255).round().astype(np.uint8), grey)


def test_channels_flag_sets_the_input_and_a_misfit_is_one_line():
    entry = resolve_model("tests.selfloading_net:onet_retrained", channels=1)
    assert entry.preprocessing.channels == 1 and len(entry.preprocessing.std) == 1
    with pytest.raises(UserInputError, match="does not run on a 1x"):
        load_net(entry)
    with pytest.raises(UserInputError, match="--mean gives 3 values for 1 input channel"):
        resolve_model("tests.selfloading_net:onet_retrained", channels=1, mean=(0.1, 0.2, 0.3))
    with pytest.raises(UserInputError, match="--bgr applies to 3-channel"):
        resolve_model("greynet", bgr=True)
