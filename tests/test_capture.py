import pytest
import torch

from models.capture import capture
from models.errors import UserInputError
from models.loading import load_net
from tests.conftest import TINY_ENTRY


def test_conv_position_addresses_the_right_element(tiny):
    x = torch.rand(2, 3, 16, 16)
    acts = capture(tiny, x, ["features.2"])
    full = tiny.features[2](tiny.features[1](tiny.features[0](x)))
    assert acts["features.2"].shape == (2, 6, 8, 8)
    assert torch.equal(acts["features.2"][1, 4, 3, 5], full[1, 4, 3, 5])


def test_truncation_stops_after_the_deepest_needed_layer(tiny):
    capture(tiny, torch.rand(1, 3, 16, 16), ["features.0", "features.2"])
    assert tiny.after.calls == 0
    capture(tiny, torch.rand(1, 3, 16, 16), ["fc"])
    assert tiny.after.calls == 1
    capture(tiny, torch.rand(1, 3, 16, 16), ["features.0"], truncate=False)
    assert tiny.after.calls == 2


def test_hooks_are_removed_even_after_errors(tiny):
    capture(tiny, torch.rand(1, 3, 16, 16), ["features.0", "fc"])
    with pytest.raises(RuntimeError):
        capture(tiny, torch.rand(1, 5, 16, 16), ["fc"])  # wrong channel count: conv raises
    assert all(not m._forward_hooks for m in tiny.modules())


def test_unknown_layer_names_the_discovery_command(tiny):
    with pytest.raises(UserInputError, match="neuron-atlas layers --model tinynet"):
        capture(tiny, torch.rand(1, 3, 16, 16), ["features.9"], model_name="tinynet")


def test_captured_conv_output_is_not_overwritten_by_an_inplace_relu():
    net = load_net(TINY_ENTRY, "random").net  # load_net switches in-place activations off
    x = torch.randn(1, 3, 16, 16)
    pre = capture(net, x, ["features.0", "fc"])["features.0"]
    assert (pre < 0).any(), "the conv output before ReLU must keep its negative values"


def test_capture_block_keeps_hooks_for_many_calls_and_removes_them(tiny):
    from models.capture import Capture

    with Capture(tiny, ["features.2"]) as cap:
        first = cap(torch.ones(1, 3, 16, 16))
        second = cap(torch.zeros(1, 3, 16, 16))
        assert len(tiny.features[2]._forward_hooks) == 1
    assert not tiny.features[2]._forward_hooks
    assert not torch.equal(first["features.2"], second["features.2"])
    assert tiny.after.calls == 0
    with pytest.raises(RuntimeError, match="inside its `with` block"):
        cap(torch.ones(1, 3, 16, 16))


def test_frozen_batchnorm_keeps_names_and_outputs():
    from torch import nn

    from models.frozen import FrozenBatchNorm, freeze_batchnorm

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    bn = net[1]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    net.eval()
    x = torch.randn(2, 3, 8, 8)
    before = capture(net, x, ["1"])["1"]
    assert freeze_batchnorm(net) == 1 and isinstance(net[1], FrozenBatchNorm)
    assert torch.allclose(capture(net, x, ["1"])["1"], before, atol=1e-5)
