"""Caffe import: synthetic caffemodels in Caffe's layouts (new `layer` and legacy V1 `layers`) land in the
right parameters, exactly; mismatches name the layer; the real DeePSiM layouts match the authors' nets."""

from __future__ import annotations

import argparse

import fsspec
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.caffe_import import (NetParameter, V1LayerParameter, caffe_layout, import_caffemodel, read_caffemodel,
                                 read_prototxt, to_state_dict)
from models.errors import UserInputError
from models.generators import DeePSiM
from pipelines import import_caffe


class Small(nn.Module):
    """Caffe-named layers with non-square shapes, so any wrong transposition changes a shape."""

    def __init__(self):
        super().__init__()
        self.defc7 = nn.Linear(8, 16)
        self.conv6 = nn.Conv2d(3, 5, 3)
        self.deconv5 = nn.ConvTranspose2d(5, 4, 4, 2, 1)
        self.act = nn.LeakyReLU(0.3)


SMALL = "tests.test_caffe_import:Small"
# name -> (Caffe type, V1 type, Caffe blob shapes); Deconvolution stores (input channels, num_output, kh, kw)
SMALL_CAFFE = {
    "defc7": ("InnerProduct", "INNER_PRODUCT", [(16, 8), (16,)]),
    "conv6": ("Convolution", "CONVOLUTION", [(5, 3, 3, 3), (5,)]),
    "deconv5": ("Deconvolution", "DECONVOLUTION", [(5, 4, 4, 4), (4,)]),
}


def _values(spec: dict) -> dict[str, list[np.ndarray]]:
    """Distinct values across every blob (a global arange), so a blob in the wrong place never matches."""
    out, start = {}, 0
    for name, (_, _, shapes) in spec.items():
        out[name] = []
        for shape in shapes:
            n = int(np.prod(shape))
            out[name].append(np.arange(start, start + n, dtype=np.float32).reshape(shape))
            start += n
    return out


def _caffemodel(spec: dict, values: dict, *, legacy: bool = False, extra: bool = True) -> bytes:
    net = NetParameter(name="G")
    for name, (kind, v1_kind, _) in spec.items():
        if legacy:  # V1 layout: enum type, 4-D num/channels/height/width blobs, no `shape`
            layer = net.layers.add(name=name, type=V1LayerParameter.LayerType.Value(v1_kind))
        else:
            layer = net.layer.add(name=name, type=kind)
        for arr in values[name]:
            blob = layer.blobs.add()
            if legacy:
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - arr.ndim) + arr.shape
                blob.double_data.extend(arr.ravel().tolist())  # the double path, exact for these integers
            else:
                blob.shape.dim.extend(arr.shape)
                blob.data.extend(arr.ravel().tolist())
    if extra:  # a blob-less layer and a weighted layer with no module: both ignored
        if legacy:
            net.layers.add(name="relu", type=V1LayerParameter.LayerType.Value("RELU"))
        else:
            net.layer.add(name="relu", type="ReLU", bottom=["defc7"], top=["defc7"])
            blob = net.layer.add(name="encoder_fc", type="InnerProduct").blobs.add()
            blob.shape.dim.extend([2, 2])
            blob.data.extend([1.0, 2.0, 3.0, 4.0])
    return net.SerializeToString()


def _expected_torch(values: dict) -> dict[str, torch.Tensor]:
    # Caffe's layouts already are nn.Linear / nn.Conv2d / nn.ConvTranspose2d's; legacy 4-D blobs flatten
    ref = Small()
    return {f"{n}.{p}": torch.from_numpy(values[n][i]).reshape(getattr(getattr(ref, n), p).shape)
            for n in values for i, p in enumerate(("weight", "bias"))}


@pytest.mark.parametrize("legacy", [False, True], ids=["layer", "v1-layers"])
def test_blobs_land_in_the_right_parameters_exactly(legacy):
    if legacy:  # legacy files pad InnerProduct weights and every bias to 4-D
        spec = {"defc7": ("InnerProduct", "INNER_PRODUCT", [(1, 1, 16, 8), (1, 1, 1, 16)]),
                "conv6": ("Convolution", "CONVOLUTION", [(5, 3, 3, 3), (1, 1, 1, 5)]),
                "deconv5": ("Deconvolution", "DECONVOLUTION", [(5, 4, 4, 4), (1, 1, 1, 4)])}
    else:
        spec = SMALL_CAFFE
    values = _values(spec)
    layers = read_caffemodel(_caffemodel(spec, values, legacy=legacy))
    assert layers["deconv5"][0] == "Deconvolution" and layers["relu"] == ("ReLU" if not legacy else "RELU", [])
    net = Small()
    sd = to_state_dict(net, layers)
    expected = _expected_torch(values)
    assert sorted(sd) == sorted(expected) == sorted(net.state_dict())
    for key, want in expected.items():
        assert sd[key].dtype == torch.float32 and sd[key].shape == want.shape, key
        assert torch.equal(sd[key], want), key
    net.load_state_dict(sd, strict=True)
    assert torch.equal(net.deconv5.weight[1, 2, 3], expected["deconv5.weight"][1, 2, 3])


def test_transposed_inner_product_is_turned_back():
    net = NetParameter()
    layer = net.layer.add(name="fc", type="InnerProduct")
    layer.inner_product_param.transpose = True
    blob = layer.blobs.add()
    blob.shape.dim.extend([3, 2])  # (in, out) when transposed
    blob.data.extend(range(6))
    (kind, (w,)) = read_caffemodel(net.SerializeToString())["fc"]
    assert kind == "InnerProduct" and np.array_equal(w, np.arange(6, dtype=np.float32).reshape(3, 2).T)


def test_caffe_deconvolution_layout_needs_no_transposition():
    # Caffe's Deconvolution forward is Convolution's backward-data with the same weight blob; conv_transpose2d
    # with that blob as is must therefore be the adjoint of conv2d: <conv(z), x> == <deconv(x), z>.
    torch.manual_seed(0)
    w = torch.randn(5, 4, 4, 4, dtype=torch.float64)  # Deconvolution: 5 inputs -> num_output 4
    x = torch.randn(1, 5, 6, 6, dtype=torch.float64)
    y = F.conv_transpose2d(x, w, stride=2, padding=1)
    z = torch.randn_like(y)
    assert torch.allclose((F.conv2d(z, w, stride=2, padding=1) * x).sum(), (y * z).sum())


@pytest.mark.parametrize("change, match", [
    (lambda s: s.update(deconv5=("Deconvolution", "DECONVOLUTION", [(4, 5, 4, 4), (4,)])),
     r"layer 'deconv5' blob 0 \(weight\) has shape \(4, 5, 4, 4\) but module 'deconv5' .* needs \(5, 4, 4, 4\)"),
    (lambda s: s.update(defc7=("InnerProduct", "INNER_PRODUCT", [(16, 8), (8,)])),
     r"layer 'defc7' blob 1 \(bias\) has shape \(8,\) but .* needs \(16,\)"),
    (lambda s: s.pop("conv6"), r"caffemodel has no layer 'conv6' for module 'conv6' \(Conv2d\)"),
    (lambda s: s.update(conv6=("Deconvolution", "DECONVOLUTION", [(5, 3, 3, 3), (5,)])),
     r"layer 'conv6' is 'Deconvolution' but module 'conv6' \(Conv2d\) needs 'Convolution'"),
    (lambda s: s.update(conv6=("Convolution", "CONVOLUTION", [(5, 3, 3, 3)])), r"layer 'conv6' has 1 blobs"),
], ids=["deconv-transposed", "bias-shape", "missing-layer", "wrong-type", "no-bias"])
def test_mismatches_name_the_layer(change, match):
    spec = dict(SMALL_CAFFE)
    change(spec)
    layers = read_caffemodel(_caffemodel(spec, _values(spec)))
    with pytest.raises(UserInputError, match=match):
        to_state_dict(Small(), layers)


def test_damaged_blobs_and_non_caffemodels_are_refused():
    net = NetParameter()
    blob = net.layer.add(name="conv6", type="Convolution").blobs.add()
    blob.shape.dim.extend([5, 3, 3, 3])
    blob.data.extend([0.0] * 7)
    with pytest.raises(UserInputError, match=r"'conv6' blob 0 holds 7 values but its shape says \(5, 3, 3, 3\)"):
        read_caffemodel(net.SerializeToString())
    with pytest.raises(UserInputError, match="not a .caffemodel|holds no layers"):
        read_caffemodel(b'layer { name: "conv6" }')


PROTOTXT = """
name: "generator"
input: "feat"
input_shape { dim: 1 dim: 8 }
layer { name: "defc7" type: "InnerProduct" bottom: "feat" top: "defc7"
  param { lr_mult: 1 } inner_product_param { num_output: 16 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "relu" type: "ReLU" bottom: "defc7" top: "defc7" relu_param { negative_slope: 0.3 } }
layer { name: "conv6" type: "%s" bottom: "x" top: "conv6" convolution_param { num_output: 5 kernel_size: 3 } }
layers { name: "deconv5" type: DECONVOLUTION bottom: "conv6" top: "deconv5"
  convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 } blobs_lr: 1 }
"""


def test_prototxt_with_unknown_params_parses_and_cross_checks_types():
    types = read_prototxt(PROTOTXT % "Convolution")
    assert types == {"defc7": "InnerProduct", "relu": "ReLU", "conv6": "Convolution", "deconv5": "Deconvolution"}
    values = _values(SMALL_CAFFE)
    layers = read_caffemodel(_caffemodel(SMALL_CAFFE, values))
    assert sorted(to_state_dict(Small(), layers, types)) == sorted(Small().state_dict())
    with pytest.raises(UserInputError, match=r"prototxt layer 'conv6' is 'Deconvolution' but module 'conv6' "
                                             r"\(Conv2d\) needs 'Convolution'"):
        to_state_dict(Small(), layers, read_prototxt(PROTOTXT % "Deconvolution"))
    with pytest.raises(UserInputError, match="cannot parse the prototxt"):
        read_prototxt("layer { name: ")


def test_import_through_any_fsspec_uri():
    values = _values(SMALL_CAFFE)
    with fsspec.open("memory://caffe-test/small.caffemodel", "wb") as f:
        f.write(_caffemodel(SMALL_CAFFE, values))
    with fsspec.open("memory://caffe-test/small.prototxt", "w") as f:
        f.write(PROTOTXT % "Convolution")
    sd = import_caffemodel("memory://caffe-test/small.caffemodel", SMALL, "memory://caffe-test/small.prototxt")
    expected = _expected_torch(values)
    assert all(torch.equal(sd[k], v) for k, v in expected.items()) and sorted(sd) == sorted(expected)
    with pytest.raises(UserInputError, match=r"caffemodel 'memory://caffe-test/nope.caffemodel' not found"):
        import_caffemodel("memory://caffe-test/nope.caffemodel", SMALL)


# The authors' DeePSiM generator prototxts, as Caffe blob shapes: InnerProduct (num_output, input),
# Convolution (num_output, input, k, k), Deconvolution (input, num_output, k, k); every layer has a bias.
_DECONVS = [("deconv5", "Deconvolution", None, 256, 4), ("conv5_1", "Deconvolution", 256, 512, 3),
            ("deconv4", "Deconvolution", 512, 256, 4), ("conv4_1", "Deconvolution", 256, 256, 3),
            ("deconv3", "Deconvolution", 256, 128, 4), ("conv3_1", "Deconvolution", 128, 128, 3),
            ("deconv2", "Deconvolution", 128, 64, 4), ("deconv1", "Deconvolution", 64, 32, 4),
            ("deconv0", "Deconvolution", 32, 3, 4)]


def _authors_layout(variant: str) -> list[tuple[str, str, list[tuple[int, ...]]]]:
    if variant == "pool5":
        head = [("conv6", "Convolution", [(512, 256, 3, 3), (512,)]),
                ("conv7", "Convolution", [(512, 512, 3, 3), (512,)]),
                ("conv8", "Convolution", [(512, 512, 3, 3), (512,)])]
        first = 512
    else:
        head = [(n, "InnerProduct", [(4096, 4096), (4096,)]) for n in ("defc7", "defc6", "defc5")]
        first = 256  # defc5's 4096 outputs reshaped to 256 x 4 x 4
    tail = [(n, t, [(cin or first, cout, k, k), (cout,)]) for n, t, cin, cout, k in _DECONVS]
    return head + tail


@pytest.mark.parametrize("variant", ["fc6", "fc7", "pool5"])
def test_deepsim_architectures_match_the_caffe_layouts(variant):
    with torch.device("meta"):  # shapes only: the fc nets hold 200 MB of weights
        net = DeePSiM(variant)
    got = [(w.name, w.type, list(w.shapes)) for w in caffe_layout(net)]
    assert got == _authors_layout(variant)


@pytest.fixture(scope="module")
def pool5_caffemodel(tmp_path_factory):
    """A full-size DeePSiM pool5 caffemodel (~51 MB) with distinct values in every blob, and its values."""
    spec = {name: (kind, None, shapes) for name, kind, shapes in _authors_layout("pool5")}
    values = _values(spec)  # ~12.7 M values, all exact in float32 (< 2**24)
    path = tmp_path_factory.mktemp("caffe") / "generator.caffemodel"
    path.write_bytes(_caffemodel(spec, values, extra=False))
    return str(path), values


def test_cli_converts_a_full_pool5_caffemodel_that_loads_strictly(pool5_caffemodel, tmp_path, capsys):
    uri, values = pool5_caffemodel
    parser = argparse.ArgumentParser(prog="neuron-atlas")
    import_caffe.add_subcommand(parser.add_subparsers(dest="command"))
    out = tmp_path / "weights" / "deepsim-pool5.pt"
    args = parser.parse_args(["import-caffe", "--caffemodel", uri, "--generator", "deepsim-pool5",
                              "--out", str(out), "--storage-option", "key = a=b"])
    assert args.storage_option == [("key", "a=b")]
    args.storage_option = []  # local files take no options; the flag's parsing is what is checked above
    assert import_caffe.run(args) == 0
    assert f"wrote {out}: 24 tensors for deepsim-pool5" in capsys.readouterr().out
    sd = torch.load(out, weights_only=True)
    net = DeePSiM("pool5")
    net.load_state_dict(sd, strict=True)
    for name, blobs in values.items():
        assert torch.equal(getattr(net, name).weight.detach(), torch.from_numpy(blobs[0])), name
        assert torch.equal(getattr(net, name).bias.detach(), torch.from_numpy(blobs[1])), name
    with pytest.raises(UserInputError, match="is a folder"):
        import_caffe.run(parser.parse_args(["import-caffe", "--caffemodel", uri, "--out", str(tmp_path)]))
    with pytest.raises(SystemExit):
        parser.parse_args(["import-caffe", "--caffemodel", uri, "--out", str(out), "--storage-option", "novalue"])
