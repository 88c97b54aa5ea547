"""Activation layouts (models/layout.py): a unit is a feature channel whether a layer's output is a channel-first
map, a channel-last map (Swin, ConvNeXt), a token sequence (ViT: class token + patch grid) or a vector.

Checked on tiny nets built from torchvision's own ViT, Swin and ConvNeXt classes (tests/transformer_nets.py):
the layer table, unit addressing (`12@cls`, `12@1,2`, the centre patch token by default), objectives against an
independent forward hook on the raw output, the activation vectors, keys and file names, top-k maps over a
patch grid, and the layout override.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from models.capture import Capture
from models.errors import UserInputError
from models.layers import layers_json
from models.layout import PREFIX_ROW, Layout, parse_layout
from models.loading import load_net
from models.preprocess import Preprocessing
from models.registry import NetEntry, register, resolve_model
from models.units import Unit, parse_units, resolve_units
from pipelines.cli import main
from pipelines.keys import ItemKey
from pipelines.sink import read_units
from pipelines.storage import Store
from pipelines.topk.topk_out import read_topk
from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
from tasks.image_am import ImageAMConfig
from tasks.objectives import ObjectiveSpec, channel, per_item, position_vector, unit

VIT, SWIN, CONVNEXT, TOKENS = (f"tests.transformer_nets:{n}" for n in ("tiny_vit", "tiny_swin", "tiny_convnext",
                                                                       "tiny_token_net"))
VIT_MLP = "encoder.layers.encoder_layer_1.mlp.0"


def _net(model: str, size: int = 16, layouts=None):
    return load_net(resolve_model(model, input_size=size, layouts=layouts))


def _raw(net, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The module's own output, by a forward hook that knows nothing of layouts."""
    seen = {}
    handle = dict(net.net.named_modules())[layer].register_forward_hook(lambda _m, _i, o: seen.setdefault("o", o))
    try:
        with torch.no_grad():
            net.net(net.to_input(x))
    finally:
        handle.remove()
    out = seen["o"]
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("model, layer, kind, units, positions", [
    (VIT, VIT_MLP, "tokens", 32, "17 tokens = cls + 4x4"),
    (VIT, "encoder.layers.encoder_layer_0.self_attention", "tokens", 16, "17 tokens = cls + 4x4"),  # a tuple
    (VIT, "encoder.layers.encoder_layer_0.mlp.1", "tokens", 32, "17 tokens = cls + 4x4"),  # GELU
    (VIT, "conv_proj", "channels_first", 16, "4x4"),
    (VIT, "heads.head", "vector", 5, "-"),
    (SWIN, "features.1.0.mlp.0", "channels_last", 32, "4x4"),
    (SWIN, "features.1.0", "channels_last", 8, "4x4"),
    (SWIN, "permute", "channels_first", 16, "2x2"),
    (CONVNEXT, "features.1.0.block.3", "channels_last", 32, "4x4"),
    (CONVNEXT, "features.1.0.block.1", "channels_last", 8, "4x4"),  # the Permute into channels-last
    (CONVNEXT, "features.1.0.block", "channels_first", 8, "4x4"),  # ... and back
    (TOKENS, "blocks.0.fc1", "tokens", 24, "12 tokens = cls + p1 + p2 + 3x3"),
])
def test_layers_show_channels_as_units_and_positions_in_every_layout(model, layer, kind, units, positions):
    info = _net(model, 12 if model == TOKENS else 16).layers[layer]
    assert (info.reading.kind, info.units, info.positions) == (kind, units, positions)


def test_layers_json_and_table_carry_the_layout(capsys):
    assert main(["layers", "--model", VIT, "--input-size", "16", "--json"]) == 0
    rows = {r["layer"]: r for r in json.loads(capsys.readouterr().out)}
    mlp = rows[VIT_MLP]
    assert mlp["layout"] == {"kind": "tokens", "prefix": ["cls"], "grid": [4, 4]}
    assert (mlp["units"], mlp["spatial"], mlp["shape"], mlp["raw_shape"]) == (32, [4, 4], [32, 4, 4], [17, 32])
    assert main(["layers", "--model", SWIN, "--input-size", "16"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("features.1.0.mlp.0 "))
    assert line.split()[-3:] == ["channels_last", "32", "4x4"]
    assert main(["layers", "--model", VIT, "--input-size", "16", "--layout", f"{VIT_MLP}=tokens:0", "--json"]) == 0
    forced = next(r for r in json.loads(capsys.readouterr().out) if r["layer"] == VIT_MLP)
    assert forced["layout"] == {"kind": "tokens", "prefix": [], "grid": [1, 17]}
    with pytest.raises(SystemExit) as bad:
        main(["layers", "--model", VIT, "--input-size", "16", "--layout", f"{VIT_MLP}=rows"])
    assert bad.value.code == 2 and "malformed --layout" in capsys.readouterr().err


def test_units_address_patch_tokens_prefix_tokens_and_default_to_the_centre_token():
    info = _net(VIT).layers[VIT_MLP]
    assert resolve_units(parse_units("3"), info, VIT) == [Unit(VIT_MLP, 3, 2, 2)]
    assert resolve_units(parse_units("3@1,2,4@cls"), info, VIT) == [Unit(VIT_MLP, 3, 1, 2),
                                                                   Unit(VIT_MLP, 4, PREFIX_ROW, 0)]
    assert str(Unit(VIT_MLP, 4, PREFIX_ROW, 0)) == f"{VIT_MLP}:4@cls"
    with pytest.raises(UserInputError, match="out of range"):
        resolve_units(parse_units("3@4,0"), info, VIT)
    with pytest.raises(UserInputError, match="no token 'p1'.*cls"):
        resolve_units(parse_units("3@p1"), info, VIT)
    tokens = _net(TOKENS, 12).layers["blocks.0.fc1"]
    assert resolve_units(parse_units("0@p2"), tokens, TOKENS) == [Unit("blocks.0.fc1", 0, PREFIX_ROW, 2)]
    conv = _net(VIT).layers["conv_proj"]
    with pytest.raises(UserInputError, match="no prefix tokens"):
        resolve_units(parse_units("1@cls"), conv, VIT)


@pytest.mark.parametrize("model, layer", [(VIT, VIT_MLP), (SWIN, "features.1.0.mlp.0"),
                                          (CONVNEXT, "features.1.0.block.3"), (TOKENS, "blocks.1.fc1")])
def test_objectives_and_vectors_read_the_channel_an_independent_hook_sees(model, layer):
    size = 12 if model == TOKENS else 16
    net = _net(model, size)
    info = net.layers[layer]
    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    raw = _raw(net, layer, x)
    rows, cols = info.spatial
    if info.reading.kind == "tokens":
        p = info.prefix
        patch = raw[:, p:]  # [B, rows * cols, C]
        at = lambda b, c, y, x_: raw[b, p + y * cols + x_, c]  # noqa: E731
    else:
        patch = raw.flatten(1, 2)  # channels-last [B, H * W, C]
        at = lambda b, c, y, x_: raw[b, y, x_, c]  # noqa: E731
    with torch.no_grad(), Capture(net.net, [layer], layouts=net.layouts) as cap:
        acts = cap(net.to_input(x))
    obj = per_item([channel(layer, 5), unit(layer, 6, 1, 2), unit(layer, 7)])
    got = obj(acts)
    torch.testing.assert_close(got[0], patch[0, :, 5].mean())
    torch.testing.assert_close(got[1], at(1, 6, 1, 2))
    torch.testing.assert_close(channel(layer, 3)(acts), patch[:, :, 3].mean(1))
    torch.testing.assert_close(position_vector(acts, layer, 2, 0, 1), torch.stack(
        [at(2, c, 0, 1) for c in range(info.units)]))
    if info.prefix:
        torch.testing.assert_close(unit(layer, 4, PREFIX_ROW, 0)(acts), raw[:, 0, 4])
        torch.testing.assert_close(per_item([unit(layer, 4, PREFIX_ROW, info.prefix - 1)] * 3)(acts),
                                   raw[:, info.prefix - 1, 4])
        torch.testing.assert_close(position_vector(acts, layer, 1, PREFIX_ROW, 0), raw[1, 0])


# at 16 px, the lucid style's jitter moves a 4 px patch net's whole field: its best image rises on the tiny
# ConvNeXt but the final, unjittered one need not; the pixel style (yosinski) shows that net rising
@pytest.mark.parametrize("model, layer, style", [(VIT, VIT_MLP, "lucid"), (SWIN, "features.1.0.mlp.0", "lucid"),
                                                 (CONVNEXT, "features.1.0.block.3", "yosinski")])
def test_channel_objective_rises_on_every_layout_and_fixed_size_vit_takes_coarse_views(model, layer, style):
    spec = NetSpec(model, input_size=16)
    actor = SynthesisActor(spec)
    cfg = ImageAMConfig.build(style)
    items = tuple(WorkItem(Unit(layer, c), 0) for c in (1, 2))
    batch = Batch(items, cfg, 48, objective=ObjectiveSpec("channel"))
    if model == VIT:
        assert actor._coarse_allowed(batch) == "fixed"  # it asserts 16 px; coarse views are upsampled to it
    results = actor.run(batch).results
    assert all(r.act_final > r.act_start for r in results), [(r.act_start, r.act_final) for r in results]
    assert all(r.activation.shape == (actor.target.layers[layer].units,) for r in results)


def test_keys_name_a_prefix_token_in_the_file_name():
    key = ItemKey("m", "s", VIT_MLP, 4, PREFIX_ROW, 0, 0, "image", "{}")
    assert key.image_path.endswith("/4_cls_s0_image-" + key.hp_digest + ".png")
    assert ItemKey("m", "s", VIT_MLP, 4, 1, 2, 0, "image", "{}").image_path.split("/")[-1].startswith("4_1_2_s0")


def test_layout_override_and_its_errors():
    forced = _net(VIT, layouts=((VIT_MLP, "tokens:0"),)).layers[VIT_MLP]
    assert (forced.prefix, forced.spatial, forced.positions) == (0, (1, 17), "17 tokens = 1x17")
    as_vector = _net(VIT, layouts=(("heads.head", "vector"),)).layers["heads.head"]
    assert as_vector.reading.kind == "vector"
    with pytest.raises(UserInputError, match="does not fit"):
        _net(VIT, layouts=((VIT_MLP, "channels_last"),))
    with pytest.raises(UserInputError, match="no layer"):
        _net(VIT, layouts=(("nope", "tokens"),))
    with pytest.raises(UserInputError, match="malformed --layout"):
        parse_layout("blocks.0=rows")
    assert parse_layout("a.b=tokens:2") == ("a.b", "tokens:2")
    assert Layout("tokens", 1, (2, 2)).canonical_shape((5, 7)) == (7, 2, 2)


class TokenSpotNet(nn.Module):
    """4 px patches of a 32 px image -> 8 x 8 tokens after a zero class token; token channel 0 is 'redness'."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 2, 4, 4)
        with torch.no_grad():
            self.patch.weight.zero_()
            self.patch.weight[0, 0], self.patch.weight[0, 1:] = 1 / 16, -1 / 32
            self.patch.weight[1, 1] = 1 / 16
            self.patch.bias.zero_()
        self.mix = nn.Linear(2, 2)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(2))
            self.mix.bias.zero_()
        self.norm = nn.LayerNorm(2)
        self.head = nn.Linear(2, 2)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([torch.zeros(len(x), 1, 2), t], 1)
        return self.head(self.norm(self.mix(t))[:, 0])


register(NetEntry("tokenspotnet", TokenSpotNet, Preprocessing(size=(32, 32), mean=(0, 0, 0), std=(1, 1, 1), crop=1.0),
                  None, "a token net whose unit 0 finds red squares", (("mix", "0:2"),)))


def test_topk_maps_lie_over_the_patch_grid(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    spots = [(6, 26), (18, 10), (26, 22)]
    for i, (cy, cx) in enumerate(spots):
        img = np.full((32, 32, 3), 90, np.uint8)
        img[cy - 3:cy + 3, cx - 3:cx + 3] = (255 - 40 * i, 40, 40)
        Image.fromarray(img).save(folder / f"{i}.png")
    out = tmp_path / "out"
    weights = tmp_path / "w.pt"
    torch.save(TokenSpotNet().state_dict(), weights)
    assert main(["topk", "--model", "tokenspotnet", "--weights", str(weights), "--layers", "mix", "--units", "0",
                 "--images", str(folder), "--k", "3", "--out", str(out)]) == 0
    rows = sorted((r for r in read_topk(Store(str(out))).to_pylist() if r["unit"] == 0), key=lambda r: r["rank"])
    assert [r["source"].rsplit("/", 1)[1] for r in rows] == ["0.png", "1.png", "2.png"]
    for r, (cy, cx) in zip(rows, spots):
        amap = np.asarray(r["map"], np.float32).reshape(r["map_h"], r["map_w"])
        assert (r["map_h"], r["map_w"]) == (8, 8)
        assert float(amap.max()) == pytest.approx(r["activation"], rel=1e-5, abs=1e-5)
        assert (r["y"], r["x"]) == (cy // 4, cx // 4)


@pytest.mark.integration
def test_a_fixed_size_vit_runs_in_every_style_with_no_extra_flag(tmp_path):
    """torchvision's ViT asserts its input size: lucid (coarse views upsampled), yosinski, DGN-AM, --diversity
    and --init all feed it exactly 16 px, and a class-token unit lands with its own key."""
    from skimage import data

    photo = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()).save(photo)
    model = ["--model", VIT, "--input-size", "16"]
    for i, extra in enumerate((["--steps", "3"], ["--style", "yosinski", "--steps", "3"],
                               ["--method", "dgn", "--steps", "3"],
                               ["--diversity", "0.5", "--seeds", "2", "--steps", "3"],
                               ["--init", str(photo), "--steps", "3"])):
        out = tmp_path / f"out{i}"
        assert main(["atlas", *model, "--layers", VIT_MLP, "--units", "0,1@cls", *extra, "--out", str(out)]) == 0, extra
        rows = read_units(Store(str(out))).to_pylist()
        assert {(r["unit"], r["y"], r["x"]) for r in rows} == {(0, 2, 2), (1, PREFIX_ROW, 0)}
        assert any(r["image"].split("/")[-1].startswith("1_cls_s0_") for r in rows)
    assert main(["report", str(tmp_path / "out0")]) == 0
    pages = "".join(p.read_text() for p in (tmp_path / "out0" / "site").rglob("*.html"))
    assert "at the cls token" in pages and "at (2, 2)" in pages
    # inverse sets render through the same fit_to; on this net they take minutes in a Ray actor behind the
    # 224 px demo prior (checked by hand, README 'Transformers'), so they are not run here
