"""A conv and its activation as one oneDNN kernel (models/fused.py): the same outputs, captures and input
gradients as the unfused net, nothing fused where a captured pre-activation output would change, and the
synthesis actor's results unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.capture import Capture
from models.fused import FusedConv, fuse_activations, fusion_available
from models.inference import folded_copy
from models.units import Unit
from tests.test_inference import LAYERS, mobile_like

pytestmark = pytest.mark.skipif(not fusion_available(), reason="this torch build has no oneDNN")


def vgg_like() -> nn.Module:
    """Plain conv -> ReLU (VGG, AlexNet), with a strided and a grouped conv and an unfusable tail."""
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, stride=2, padding=1,
                                                                             groups=3),
                         nn.ReLU(), nn.Conv2d(6, 4, 1), nn.Tanh()).eval().requires_grad_(False)


def acts_and_grad(net: nn.Module, layers: list[str], unit) -> tuple[dict, torch.Tensor]:
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    with Capture(net, layers) as cap:
        a = cap(x.contiguous(memory_format=torch.channels_last))
    return {k: v.detach() for k, v in a.items()}, torch.autograd.grad(unit(a), x)[0]


def test_fused_blocks_give_the_same_captures_and_input_gradients():
    net, _ = mobile_like()
    plain, fused = folded_copy(net, LAYERS), folded_copy(net, LAYERS, fuse=True)
    # block 2 (conv-BN-ReLU6) is fused; block 0's conv and block 1's BN are captured, so those stay apart
    assert isinstance(dict(fused.named_modules())["2.0"], FusedConv)
    assert not isinstance(dict(fused.named_modules())["0.0"], FusedConv)
    assert not isinstance(dict(fused.named_modules())["1.conv.0.0"], FusedConv)
    unit = lambda a: a["2"][:, 1].sum() + a["5"][:, 2].sum()  # noqa: E731
    (want, gw), (got, gg) = acts_and_grad(plain, LAYERS, unit), acts_and_grad(fused, LAYERS, unit)
    for layer in LAYERS:
        torch.testing.assert_close(got[layer], want[layer], rtol=1e-5, atol=1e-5)
    assert (got["1.conv.0.1"] < 0).any()  # a captured (folded) BatchNorm still gives its pre-activation output
    torch.testing.assert_close(gg, gw, rtol=1e-4, atol=1e-6)
    assert gw.abs().max() > 1e-3


def test_relu_nets_fuse_each_conv_followed_by_an_activation_and_keep_the_rest():
    net = vgg_like()
    fused = folded_copy(net, [], fuse=True)
    kinds = [type(m).__name__ for m in fused]
    # the last conv has no activation to take in (Tanh is not fusable): it runs alone, as a FusedConv
    assert kinds == ["FusedConv", "Identity", "FusedConv", "Identity", "FusedConv", "Tanh"]
    assert [type(m.activation).__name__ for m in fused if isinstance(m, FusedConv)] == ["ReLU", "ReLU", "Identity"]
    layers = ["1", "3", "5"]  # the activation slots: now Identity, fed the fused output
    unit = lambda a: a["3"][:, :, 1, 2].sum() + a["5"].mean()  # noqa: E731
    (want, gw), (got, gg) = acts_and_grad(net, layers, unit), acts_and_grad(fused, layers, unit)
    for layer in layers:
        torch.testing.assert_close(got[layer], want[layer], rtol=1e-5, atol=1e-6)
    assert (want["1"] == 0).any() and (want["1"] > 0).any()  # the ReLU's mask is exercised
    torch.testing.assert_close(gg, gw, rtol=1e-4, atol=1e-7)


class _Branching(nn.Module):
    """conv-ReLU6 (a) feeding a fused conv (b), a skip connection and, through the capture, the objective:
    a's gradient is the sum of three, one of them the tagged gradient b's backward computed for it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.a = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU6())
        self.b = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.ReLU6(), nn.Conv2d(6, 6, 1))
        self.c = nn.Sequential(nn.Conv2d(6, 4, 1), nn.ReLU())
        self.a[0].weight.data *= 30  # pre-activations past 6 and below 0: both clips of ReLU6 in play
        self.eval().requires_grad_(False)

    def forward(self, x):
        a = self.a(x)
        return self.c(a + self.b(a))


class _Summed(nn.Module):
    def __init__(self, net: _Branching):
        super().__init__()
        self.d, self.a, self.c = nn.Sequential(nn.Conv2d(3, 6, 1)), net.a, net.c

    def forward(self, x):
        skip = self.d(x)
        return self.c(self.a(x) + skip)


def test_a_gradient_summed_from_several_consumers_is_masked_whole():
    """The activation's backward masks the incoming gradient in place only when it is the one the next fused
    conv computed for it alone; a gradient also fed by a skip connection and by the objective's capture must
    come out as in the unfused net."""
    net = _Branching()
    fused = folded_copy(net, [], fuse=True)
    assert all(isinstance(m, FusedConv) for m in (fused.a[0], fused.b[0], fused.b[2], fused.c[0]))
    layers = ["a.1", "c.1"]
    unit = lambda a: a["a.1"][:, 0].sum() + a["c.1"][:, 1].sum()  # noqa: E731
    (want, gw), (got, gg) = acts_and_grad(net, layers, unit), acts_and_grad(fused, layers, unit)
    assert (want["a.1"] == 6).any() and (want["a.1"] == 0).any()  # both clips of ReLU6 are exercised
    torch.testing.assert_close(gg, gw, rtol=1e-4, atol=1e-7)
    # a sum's backward hands the same gradient to both of its inputs: a (run first, being the later node)
    # must not mask the one that the skip's conv d reads after it
    sum_net = _Summed(net)
    (_, gw), (_, gg) = (acts_and_grad(n, ["c.1"], lambda a: a["c.1"][:, 1].sum())
                        for n in (sum_net, folded_copy(sum_net, [], fuse=True)))
    torch.testing.assert_close(gg, gw, rtol=1e-4, atol=1e-7)
    # a chain (no branching) goes the in-place way, twice over: still the unfused gradient
    chain = nn.Sequential(net.a, net.b).eval()
    (_, gw), (_, gg) = (acts_and_grad(n, ["1"], lambda a: a["1"][:, 2].sum())
                        for n in (chain, folded_copy(chain, [], fuse=True)))
    torch.testing.assert_close(gg, gw, rtol=1e-4, atol=1e-7)


def test_other_dtypes_run_unfused_through_the_same_module():
    net = vgg_like()
    fused = folded_copy(net, [], fuse=True).double()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(fused(x), net.double()(x))


def test_nothing_is_fused_where_the_conv_itself_is_kept():
    net = vgg_like()
    assert fuse_activations(net, keep={"0", "2"}) == 0


def test_the_synthesis_actor_gives_the_same_pictures_fused():
    """The actor fuses on CPUs (SynthesisActor.synthesis_net); a lucid run on the fused copy gives the pictures
    and activations of the same run on the folded copy alone, up to one 8-bit level."""
    from tasks.actor import Batch, NetSpec, SynthesisActor, WorkItem
    from tasks.image_am import ImageAMConfig

    actor = SynthesisActor(NetSpec("tinynet", weights="random"), device="cpu")
    net = actor.synthesis_net(["fc"])
    assert any(isinstance(m, FusedConv) for m in net.modules())
    cfg = ImageAMConfig.build("lucid", coarse=False, transforms="none")
    batch = Batch(tuple(WorkItem(Unit("fc", c), 0) for c in range(3)), cfg, 24)
    fused = actor.run(batch)
    actor._folded[frozenset()] = folded_copy(actor.target.net, ())
    plain = actor.run(batch)
    for f, p in zip(fused.results, plain.results):
        assert f.act_final > f.act_start  # the run does something
        assert abs(f.act_final - p.act_final) <= 1e-3 * max(1.0, abs(p.act_final))
        assert abs(f.image.astype(int) - p.image.astype(int)).max() <= 1
