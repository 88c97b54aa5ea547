"""The forward-only copy of a net (models/inference.py): BatchNorm folded, in-place activations back, and every
captured layer's reduction the same as on the net as loaded."""

from __future__ import annotations

import torch
from torch import nn

from models.capture import Capture
from models.frozen import FrozenBatchNorm, freeze_batchnorm
from models.inference import folded_copy, inference_copy
from models.loading import load_net
from models.registry import resolve_model


def block(cin: int, cout: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Sequential(block(c, c, groups=c), nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.conv(x)


def mobile_like() -> nn.Module:
    """MobileNetV2's pattern: conv-BN-ReLU6(in place) blocks and a residual depthwise block."""
    torch.manual_seed(1)
    net = nn.Sequential(block(3, 8), Residual(8), block(8, 6), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(6, 4), nn.ReLU(inplace=True))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics far from the identity, so an unfolded BN would show
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.2, 3)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    net.eval()
    inplace = [n for n, m in net.named_modules() if getattr(m, "inplace", False)]
    for n, m in net.named_modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    freeze_batchnorm(net)
    return net, inplace


LAYERS = ["0.0", "1.conv.0.1", "1", "2", "5"]  # a conv (its BN must stay), a folded BN, a block, a linear


def reduced(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad(), Capture(net, LAYERS, reduce=lambda _n, a: a.to(torch.float32, copy=True)) as cap:
        return cap(x)


def test_folded_in_place_copy_gives_every_captured_layer_as_the_loaded_net():
    net, inplace = mobile_like()
    x = torch.rand(3, 3, 12, 12)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = inference_copy(net, LAYERS, inplace)

    want, got = reduced(net, x), reduced(fast, x)
    for layer in LAYERS:
        torch.testing.assert_close(got[layer], want[layer], rtol=1e-5, atol=1e-5)
    assert (want["0.0"] < 0).any()  # the captured conv's own output, not its BN's or its ReLU's
    # what was folded and what was not: the captured conv keeps its BN; the others are gone
    kinds = {n: type(m).__name__ for n, m in fast.named_modules()}
    assert kinds["0.1"] == "FrozenBatchNorm" and kinds["1.conv.0.1"] == kinds["1.conv.2"] == kinds["2.1"] \
        == "Identity"
    assert all(m.inplace for n, m in fast.named_modules() if n in inplace)
    # the loaded net is untouched
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert not any(getattr(m, "inplace", False) for m in net.modules())
    assert sum(isinstance(m, FrozenBatchNorm) for m in net.modules()) == 4


def test_without_reduction_in_the_hook_in_place_activations_would_overwrite_a_capture():
    """Why the copy demands `reduce`: a stored BatchNorm output is clamped by the next, in-place, ReLU6."""
    net, inplace = mobile_like()
    fast = inference_copy(net, ["0.1"], inplace)
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad(), Capture(fast, ["0.1"], truncate=False) as cap:
        stored = cap(x)["0.1"]
    with torch.no_grad(), Capture(net, ["0.1"]) as cap:
        true = cap(x)["0.1"]
    assert (true < 0).any() and not (stored < 0).any()


def test_load_net_records_which_activations_the_builder_made_in_place():
    loaded = load_net(resolve_model("tinynet"), "random")
    assert loaded.inplace == ("features.1", "features.3")
    assert not any(getattr(m, "inplace", False) for m in loaded.net.modules())


def test_folded_copy_gives_the_same_activations_and_input_gradients_for_synthesis():
    """The synthesis actor optimizes on the folded copy (tasks/actor.SynthesisActor.synthesis_net): every captured
    layer and the gradient of a unit with respect to the input are those of the loaded net, up to rounding."""
    net, _ = mobile_like()
    fast = folded_copy(net, LAYERS)
    assert sum(isinstance(m, FrozenBatchNorm) for m in fast.modules()) == 1  # only the captured conv's BN stays
    grads, acts = [], []
    for n in (net, fast):
        x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        with Capture(n, LAYERS) as cap:
            a = cap(x)
        grads.append(torch.autograd.grad(a["2"][:, 1].sum() + a["5"][:, 2].sum(), x)[0])
        acts.append({k: v.detach() for k, v in a.items()})
    for layer in LAYERS:
        torch.testing.assert_close(acts[1][layer], acts[0][layer], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)
    assert grads[0].abs().max() > 1e-3


def test_the_actor_folds_once_for_every_layer_set_that_keeps_the_same_convolutions():
    from tasks.actor import NetSpec, SynthesisActor

    actor = SynthesisActor(NetSpec("tinynet", weights="random"))
    a, b = actor.synthesis_net(["fc"]), actor.synthesis_net(["features.1", "fc"])
    assert a is b  # neither set captures a convolution
    assert actor.synthesis_net(["features.0"]) is not a  # a captured conv is kept as it is: another copy
