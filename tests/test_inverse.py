"""Inverse-set sampling on the tiny net + tiny generator: every kept sample is in range when its saved
8-bit image is measured again, intersections hold for every constraint, the diversity term does its job,
and unreachable ranges stop with what was found."""

import numpy as np
import pytest
import torch

from models.capture import Capture, capture
from models.errors import UserInputError
from models.units import Unit
from tasks.dgn import code_clipper, fit_to, initial_codes
from tasks.inverse import Constraint, InverseConfig, inverse_set, mean_pairwise_distance, quantize_st
from tasks.objectives import unit


class Sampler:
    """The tiny net + a linear generator (code [B, 8] -> 16x16 images that really depend on the code),
    wired the way SynthesisActor.inverse wires the real nets."""

    def __init__(self, net):
        torch.manual_seed(0)
        lin = torch.nn.Linear(8, 3 * 16 * 16)
        torch.nn.init.normal_(lin.weight, std=0.1)
        self.g = torch.nn.Sequential(lin, torch.nn.Unflatten(1, (3, 16, 16))).eval().requires_grad_(False)
        self.net = net

    def __call__(self, constraints, seed=0, **cfg):
        cfg = {"k": 4, "n": 24, "seed_steps": 60, "max_outer": 4, "lr": 0.05, "beta": 0.05, **cfg}
        units = [unit(c.unit.layer, c.unit.channel, c.unit.y, c.unit.x) for c in constraints]
        layers = list(dict.fromkeys([c.unit.layer for c in constraints] + ["features.2"]))
        clip = code_clipper((8,), torch.device("cpu"), None, 3.0, -3.0)
        init = initial_codes((8,), [seed * 1000 + i for i in range(cfg["k"])], 1.0, torch.device("cpu"))

        def render(c):
            return quantize_st(fit_to(self.g(c) + 0.5, (16, 16)))

        with Capture(self.net, layers) as cap:
            def probe(x):
                acts = cap(x)
                return torch.stack([u(acts) for u in units], 1), acts["features.2"].flatten(1)
            return inverse_set(render, probe, init, clip, list(constraints), InverseConfig(**cfg))

    def spread(self, u: Unit) -> np.ndarray:
        """The unit's activation over 256 random codes: ranges inside it are reachable."""
        return self([Constraint(u, -1e6, 1e6)], k=256, n=256).activations[:, 0].numpy()


@pytest.fixture
def sampler(tiny):
    return Sampler(tiny)


def remeasure(net, images: torch.Tensor, constraints) -> np.ndarray:
    """A fresh forward pass of the saved uint8 images, independent of the sampler's code path."""
    x = images.permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        acts = capture(net, x, {c.unit.layer for c in constraints})
    cols = []
    for c in constraints:
        a = acts[c.unit.layer]
        cols.append(a[:, c.unit.channel, c.unit.y, c.unit.x] if c.unit.y is not None else a[:, c.unit.channel])
    return torch.stack(cols, 1).numpy()


def test_every_kept_sample_is_in_range_when_measured_again(sampler, tiny):
    a = sampler.spread(Unit("fc", 1))
    z1, z2 = float(np.quantile(a, 0.9)), float(np.quantile(a, 0.9)) + 0.5 * float(a.std())
    c = Constraint(Unit("fc", 1), z1, z2)
    r = sampler([c])
    assert r.status == "complete" and len(r.images) == 24
    again = remeasure(tiny, r.images, [c])[:, 0]
    assert ((again >= z1) & (again <= z2)).all(), (z1, z2, again)
    np.testing.assert_allclose(again, r.activations[:, 0].numpy(), rtol=1e-4, atol=1e-4)
    assert r.seed_steps >= 1 and r.sampling_steps >= (24 - 4) / 4
    assert r.diversity > 0


def test_intersection_of_units_in_different_layers(sampler, tiny):
    a_fc = sampler.spread(Unit("fc", 3))
    a_conv = sampler.spread(Unit("features.2", 0, 4, 4))
    cs = [Constraint(Unit("fc", 3), float(np.quantile(a_fc, 0.6)), float(np.quantile(a_fc, 0.6) + a_fc.std())),
          Constraint(Unit("features.2", 0, 4, 4), float(np.quantile(a_conv, 0.6)),
                     float(np.quantile(a_conv, 0.6) + a_conv.std()))]
    r = sampler(cs, n=16)
    assert r.status == "complete"
    again = remeasure(tiny, r.images, cs)
    for j, c in enumerate(cs):
        assert ((again[:, j] >= c.z1) & (again[:, j] <= c.z2)).all(), (str(c), again[:, j])


def test_diversity_term_spreads_samples_and_ablations_run(sampler, tiny):
    a = sampler.spread(Unit("fc", 1))
    c = Constraint(Unit("fc", 1), float(np.quantile(a, 0.3)), float(np.quantile(a, 0.3) + 2 * a.std()))
    with_div = sampler([c], diversity_weight=5.0)
    without = sampler([c], diversity="none")
    on_codes = sampler([c], diversity="code", diversity_weight=5.0)
    assert with_div.status == without.status == on_codes.status == "complete"
    assert with_div.diversity > without.diversity
    for r in (without, on_codes):
        again = remeasure(tiny, r.images, [c])[:, 0]
        assert ((again >= c.z1) & (again <= c.z2)).all()


def test_unreachable_range_stops_and_reports_the_closest_value(sampler, tiny):
    a = sampler.spread(Unit("fc", 1))
    z1 = float(a.max() + 1000 * (a.std() + 1))
    r = sampler([Constraint(Unit("fc", 1), z1, z1 + 1)], max_outer=2, seed_steps=5)
    assert r.status == "seeds-out-of-reach" and len(r.images) == 0 and r.seed_iterations == 2
    assert float(r.best[0]) < z1


def test_bad_ranges_and_sizes_are_user_errors():
    with pytest.raises(UserInputError, match="z1 = 3 must be below z2 = 2"):
        Constraint(Unit("fc", 1), 3.0, 2.0)
    with pytest.raises(UserInputError, match="--n 5 must be at least --k 10"):
        InverseConfig(k=10, n=5)
    with pytest.raises(UserInputError, match="unknown --diversity"):
        InverseConfig(diversity="pixels")


def test_mean_pairwise_distance_is_the_mean_over_pairs():
    pts = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert mean_pairwise_distance(pts) == pytest.approx((5 + 0 + 5) / 3)
